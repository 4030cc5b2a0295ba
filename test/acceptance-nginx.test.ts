/**
 * Acceptance: the examples/nginx tree converges a real nginx on this machine through the built
 * CLI, exactly as an operator would run it. Installs nginx from Debian, serves the templated page,
 * proves idempotence, drift detection in test mode, drift repair with a restart, and the deploy
 * account. Everything it adds to the machine is removed again in afterAll.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { type CliResult, runCli } from "./support/cli.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester.js");
const TREE = join(ROOT, "examples/nginx");
const USER = "zt-deploy";
const HOME = `/home/${USER}`;
const SITE_FILE = "/etc/nginx/sites-available/zester-demo";
const PID_FILE = "/run/nginx.pid";
const ARCHIVES = "/var/cache/apt/archives";
const APT_ENV = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
/** Paths the run may create; the ones absent before the test are removed after it. */
const CREATED_PATHS = [
  "/etc/nginx",
  "/var/www",
  "/var/log/nginx",
  "/var/lib/nginx",
  PID_FILE,
  HOME,
  `/var/mail/${USER}`,
];
const EXPECTED_IDS = [
  "nginx_pkg",
  "nginx_conf",
  "nginx_site",
  "nginx_site_enabled",
  "nginx_default_site",
  "nginx_docroot",
  "nginx_index",
  "nginx",
  "deploy_user",
  "deploy_key",
];

interface StateResult {
  id: string;
  result: boolean;
  changed: boolean;
  comment: string;
  changes: Record<string, unknown>;
  diff?: string;
  pending?: boolean;
}
interface PeelRun {
  success: boolean;
  status: string;
  results: StateResult[];
  summary: { changed: number; failed: number; total: number };
}
interface Cli extends CliResult {
  run: PeelRun;
}

function sh(argv: string[]): { code: number; stdout: string } {
  try {
    return {
      code: 0,
      stdout: execFileSync(argv[0]!, argv.slice(1), { stdio: "pipe", env: APT_ENV }).toString(),
    };
  } catch (err) {
    const e = err as { status?: number; stdout?: Buffer };
    return { code: e.status ?? 1, stdout: e.stdout?.toString() ?? "" };
  }
}

function dpkgInstalled(): Set<string> {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query field syntax, not a JS template.
  const out = sh(["dpkg-query", "-W", "-f", "${Package}\\t${db:Status-Abbrev}\\n"]).stdout;
  const names = new Set<string>();
  for (const line of out.split("\n")) {
    const [name, status = ""] = line.split("\t");
    // Anything dpkg still has files for, config-only leftovers included.
    if (name && /^.[iUFhWtc]/.test(status)) names.add(name.split(":")[0]!);
  }
  return names;
}

function debFiles(): Set<string> {
  return existsSync(ARCHIVES) ? new Set(readdirSync(ARCHIVES).filter((f) => f.endsWith(".deb"))) : new Set();
}

/** Why this machine cannot run the test, or undefined when it can. */
function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "not root: installing nginx and adding users needs root";
  if (sh(["sh", "-c", "command -v apt-get && command -v dpkg-query"]).code !== 0) return "no apt/dpkg here";
  // An nginx that is already here belongs to someone: the tree would overwrite its config and
  // the cleanup would purge it.
  if (dpkgInstalled().has("nginx") || dpkgInstalled().has("nginx-common"))
    return "nginx is already installed; refusing to overwrite and purge it";
  if (sh(["getent", "passwd", USER]).code === 0) return `user ${USER} already exists`;
  const sim = sh(["apt-get", "-s", "-q", "install", "nginx"]);
  if (sim.code !== 0 || !/^Inst nginx /m.test(sim.stdout))
    return "apt cannot install nginx here (no candidate)";
  // A candidate is not enough offline: fetch what is not cached yet (the cleanup deletes new
  // .debs). Another apt download holds the archives lock without waiting, hence the retries.
  if (!/^'\w+:\/\//m.test(sh(["apt-get", "--print-uris", "-q", "install", "nginx"]).stdout)) return undefined;
  let fetched = { code: 1, stdout: "" };
  for (let attempt = 0; attempt < 3 && fetched.code !== 0; attempt++) {
    if (attempt > 0) sh(["sleep", "5"]);
    fetched = sh(["apt-get", "-q", "-y", "--download-only", "install", "nginx"]);
  }
  if (fetched.code !== 0)
    return `apt cannot download nginx here:\n${fetched.stdout.trim().split("\n").slice(-3).join("\n")}`;
  return undefined;
}

const DEBS_BEFORE = debFiles();
const SKIP = skipReason();
if (SKIP) console.log(`skip acceptance-nginx: ${SKIP}`);

let tmp = "";
let settingsFile = "";
let settings: { nginx: Record<string, unknown>; deploy: Record<string, unknown> };
let port = 0;
let pkgsBefore = new Set<string>();
const aptPlan = new Set<string>();
const existedBefore = new Map<string, boolean>();

async function zester(...args: string[]): Promise<Cli> {
  const argv = ["local", "state.apply", "--states-dir", TREE, "--settings-file", settingsFile];
  argv.push("--cache-dir", join(tmp, "cache"), "--format", "json", ...args);
  const r = await runCli(BIN, argv, { env: { NO_COLOR: "1" }, maxBuffer: 64 * 1024 * 1024 });
  try {
    return { ...r, run: (JSON.parse(r.stdout) as PeelRun[])[0]! };
  } catch {
    throw new Error(`zester did not print JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
}

function byId(run: PeelRun): Map<string, StateResult> {
  return new Map(run.results.map((r) => [r.id, r]));
}

function changedIds(run: PeelRun): string[] {
  return run.results
    .filter((r) => r.changed)
    .map((r) => r.id)
    .sort();
}

/** Every state succeeded; a failure shows its comment instead of a bare `false`. */
function expectAllSucceeded(run: PeelRun): void {
  expect(run.results.map((r) => r.id).sort()).toEqual([...EXPECTED_IDS].sort());
  const failed = run.results.filter((r) => !r.result).map((r) => `${r.id}: ${r.comment}`);
  expect(failed).toEqual([]);
}

async function nginxPid(): Promise<number> {
  return Number((await readFile(PID_FILE, "utf8")).trim());
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The page, retried briefly: the init script returns before every worker accepts. */
async function fetchPage(): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      return { status: res.status, body: await res.text() };
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe.skipIf(SKIP !== undefined)("examples/nginx converges a real nginx", () => {
  beforeAll(async () => {
    if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npm run build\` first`);
    pkgsBefore = dpkgInstalled();
    // Only what apt would pull in for nginx is ever purged, so packages other tests install
    // at the same time are left alone.
    for (const m of sh(["apt-get", "-s", "-q", "install", "nginx"]).stdout.matchAll(/^Inst (\S+)/gm)) {
      aptPlan.add(m[1]!);
    }
    for (const p of CREATED_PATHS) existedBefore.set(p, existsSync(p));

    tmp = await mkdtemp(join(tmpdir(), "zester-nginx-"));
    settings = parse(await readFile(join(TREE, "settings.yaml"), "utf8"));
    settings.deploy.user = USER;
    settings.deploy.home = HOME;
    port = Number(settings.nginx.port);
    settingsFile = join(tmp, "settings.yaml");
    await writeFile(settingsFile, stringify(settings));
  });

  afterAll(async () => {
    // Debian's policy-rc.d may stop the package scripts from stopping nginx: stop it ourselves.
    if (existsSync("/etc/init.d/nginx")) sh(["/etc/init.d/nginx", "stop"]);
    if (existsSync(PID_FILE)) {
      const pid = await nginxPid().catch(() => 0);
      if (pid > 0 && alive(pid)) process.kill(pid, "SIGQUIT");
    }
    const now = dpkgInstalled();
    const added = [...now].filter((p) => !pkgsBefore.has(p) && aptPlan.has(p));
    if (added.length > 0) {
      const purge = sh(["apt-get", "-q", "-y", "-o", "DPkg::Lock::Timeout=120", "purge", "--", ...added]);
      if (purge.code !== 0) console.log(`acceptance-nginx cleanup: apt-get purge failed:\n${purge.stdout}`);
    }
    if (sh(["getent", "passwd", USER]).code === 0) sh(["userdel", "-r", USER]);
    for (const [p, existed] of existedBefore) if (!existed) await rm(p, { recursive: true, force: true });
    for (const f of debFiles()) if (!DEBS_BEFORE.has(f)) await rm(join(ARCHIVES, f), { force: true });
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }, 120_000);

  it("first apply installs and configures everything", async () => {
    const r = await zester();
    expect(r.code, r.stderr).toBe(0);
    expect(r.run).toMatchObject({ success: true, status: "success" });
    expectAllSucceeded(r.run);
    // A fresh machine: every state had work to do (the package ships a default site to remove).
    expect(changedIds(r.run)).toEqual([...EXPECTED_IDS].sort());

    const s = byId(r.run);
    expect(s.get("nginx_pkg")?.changes.nginx).toMatchObject({ old: "" });
    expect(s.get("nginx_site")?.diff).toContain(`+    listen 127.0.0.1:${port};`);
    expect(s.get("nginx_default_site")?.changes).toEqual({ removed: "/etc/nginx/sites-enabled/default" });
    expect(s.get("nginx")?.changed).toBe(true);

    const conf = await readFile("/etc/nginx/nginx.conf", "utf8");
    const workers = cpus().length * Number(settings.nginx.workers_per_cpu);
    expect(conf).toContain(`worker_processes ${workers};`);
    expect(existsSync("/etc/nginx/sites-enabled/default")).toBe(false);
    expect(alive(await nginxPid())).toBe(true);
  }, 110_000);

  it("nginx answers on its port with the templated page", async () => {
    const page = await fetchPage();
    expect(page.status).toBe(200);
    expect(page.body).toContain(`<h1>${String(settings.nginx.greeting)}</h1>`);
    expect(page.body).toContain(`<title>${String(settings.nginx.site)}</title>`);
    expect(page.body).toContain(`${cpus().length * Number(settings.nginx.workers_per_cpu)} worker(s)`);
  });

  it("creates the deploy user with its authorized key", async () => {
    const pw = sh(["getent", "passwd", USER]);
    expect(pw.code).toBe(0);
    const [, , uid, , , home, shell] = pw.stdout.trim().split(":");
    expect(home).toBe(HOME);
    expect(shell).toBe(settings.deploy.shell);
    const keys = join(HOME, ".ssh/authorized_keys");
    expect(await readFile(keys, "utf8")).toContain(String(settings.deploy.ssh_key));
    const st = await stat(keys);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(Number(uid));
    expect((await stat(join(HOME, ".ssh"))).mode & 0o777).toBe(0o700);
  });

  it("second apply changes nothing", async () => {
    const pid = await nginxPid();
    const r = await zester();
    expect(r.code, r.stderr).toBe(0);
    expectAllSucceeded(r.run);
    expect(changedIds(r.run)).toEqual([]);
    expect(r.run.summary.changed).toBe(0);
    expect(await nginxPid()).toBe(pid);
  }, 60_000);

  it("test mode reports drift in the site config and changes nothing", async () => {
    const pid = await nginxPid();
    const original = await readFile(SITE_FILE, "utf8");
    const drifted = original.replace(`listen 127.0.0.1:${port};`, `listen 127.0.0.1:${port + 1};`);
    expect(drifted).not.toBe(original);
    await writeFile(SITE_FILE, drifted);

    const r = await zester("--test");
    expect(r.code, r.stderr).toBe(0);
    expectAllSucceeded(r.run);
    const pending = r.run.results
      .filter((x) => x.pending)
      .map((x) => x.id)
      .sort();
    expect(pending).toEqual(["nginx", "nginx_site"]);
    const s = byId(r.run);
    expect(s.get("nginx_site")?.diff).toContain(`-    listen 127.0.0.1:${port + 1};`);
    expect(s.get("nginx_site")?.diff).toContain(`+    listen 127.0.0.1:${port};`);
    expect(s.get("nginx")?.changes).toMatchObject({ restarted: true });

    expect(await readFile(SITE_FILE, "utf8")).toBe(drifted);
    expect(await nginxPid()).toBe(pid);
    expect(alive(pid)).toBe(true);
  }, 60_000);

  it("a real apply repairs the drift and restarts nginx", async () => {
    const pid = await nginxPid();
    const r = await zester();
    expect(r.code, r.stderr).toBe(0);
    expectAllSucceeded(r.run);
    expect(changedIds(r.run)).toEqual(["nginx", "nginx_site"]);
    expect(byId(r.run).get("nginx")?.changes).toMatchObject({ restarted: true });

    expect(await readFile(SITE_FILE, "utf8")).toContain(`listen 127.0.0.1:${port};`);
    const newPid = await nginxPid();
    expect(newPid).not.toBe(pid);
    expect(alive(newPid)).toBe(true);
    expect(alive(pid)).toBe(false);
    expect((await fetchPage()).status).toBe(200);
  }, 60_000);
});
