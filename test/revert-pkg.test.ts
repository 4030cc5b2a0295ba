/**
 * state.revert for packages on the real system (root, apt/dpkg): a dummy package built with
 * dpkg-deb in two versions, served by a local apt repository. Upgrade, install and removal are
 * each applied and reverted, and dpkg's database is as before; a package changed again since
 * the run is refused until force=true.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../src/util/exec.js";
import { requireBuilt } from "./support/built.js";
import { type CliResult, runCli } from "./support/cli.js";
import { holdPackageTestLock } from "./support/package-lock.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester.js");
const PKG = "zester-revert-probe";
const LIST = `/etc/apt/sources.list.d/${PKG}.list`;

let tmp: string;
let skip: string | undefined;

async function need(argv: string[]): Promise<void> {
  const r = await run(argv);
  if (r.retcode !== 0) throw new Error(`${argv.join(" ")} failed: ${r.stderr || r.stdout}`);
}

async function buildDeb(version: string): Promise<void> {
  const root = join(tmp, `build-${version}`);
  await mkdir(join(root, "DEBIAN"), { recursive: true });
  await mkdir(join(root, "usr/share", PKG), { recursive: true });
  await writeFile(
    join(root, "DEBIAN/control"),
    `Package: ${PKG}\nVersion: ${version}\nArchitecture: all\nMaintainer: Zester tests <tests@zester.invalid>\nDescription: revert test package\n`,
  );
  await writeFile(join(root, "usr/share", PKG, "VERSION"), `${version}\n`);
  await need([
    "dpkg-deb",
    "--build",
    "--root-owner-group",
    root,
    join(tmp, "repo", `${PKG}_${version}_all.deb`),
  ]);
}

async function installed(): Promise<string | null> {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query field syntax, not a JS template.
  const r = await run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Version}", PKG]);
  if (r.retcode !== 0) return null;
  const [status, version] = r.stdout.trim().split(/\s+/);
  return status === "ii" ? (version ?? null) : null;
}

async function purge(): Promise<void> {
  await run(["dpkg", "--purge", PKG]);
}

function zester(...args: string[]): Promise<CliResult> {
  return runCli(
    BIN,
    ["local", "--no-cache", "--revert-dir", join(tmp, "revert"), "--format", "json", ...args],
    {
      env: { NO_COLOR: "1" },
    },
  );
}

type Result = { name: string; result: boolean; changed: boolean; comment: string; pending?: boolean };
function parse(r: CliResult): { results: Result[]; revert?: { run: string }; error: string | null } {
  try {
    return (JSON.parse(r.stdout) as never[])[0]!;
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

async function applied(...args: string[]): Promise<string> {
  const r = await zester(...args);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  const id = parse(r).revert?.run;
  expect(id, r.stdout).toBeDefined();
  return id!;
}

let releasePackageLock: (() => Promise<void>) | undefined;

beforeAll(async () => {
  requireBuilt(BIN);
  if (process.getuid?.() !== 0) skip = "not root";
  else if (
    (await run(["sh", "-c", "command -v dpkg-deb && command -v dpkg-scanpackages && command -v apt-get"]))
      .retcode !== 0
  )
    skip = "dpkg-deb, dpkg-scanpackages or apt-get missing";
  if (skip) {
    console.warn(`revert-pkg: skipped: ${skip}`);
    return;
  }
  releasePackageLock = await holdPackageTestLock();
  tmp = await mkdtemp(join(tmpdir(), "zester-revert-pkg-"));
  // apt reads the repository as its sandbox user (_apt): the directories must be world-readable.
  await chmod(tmp, 0o755);
  await mkdir(join(tmp, "repo"), { mode: 0o755 });
  await buildDeb("1.0");
  await buildDeb("2.0");
  await need(["sh", "-c", `cd ${tmp}/repo && dpkg-scanpackages --multiversion . /dev/null > Packages`]);
  await writeFile(LIST, `deb [trusted=yes] file:${tmp}/repo ./\n`);
  // Only this source: the machine's other lists stay as they are (and no network is needed).
  await need([
    "apt-get",
    "update",
    "-o",
    `Dir::Etc::sourcelist=${LIST}`,
    "-o",
    "Dir::Etc::sourceparts=-",
    "-o",
    "APT::Get::List-Cleanup=0",
  ]);
  await purge();
}, 600_000);

afterAll(async () => {
  if (skip) return;
  try {
    await purge();
    await rm(LIST, { force: true });
    await run(["sh", "-c", `rm -f /var/lib/apt/lists/*${tmp.replace(/\//g, "_")}*`]);
    await rm(tmp, { recursive: true, force: true });
  } finally {
    await releasePackageLock?.();
  }
});

describe("state.revert, pkg family (apt, a local .deb repository)", { timeout: 180_000 }, () => {
  it("an upgrade is reverted to the previous version (a downgrade)", async (t) => {
    if (skip) return t.skip();
    await need(["apt-get", "install", "-y", `${PKG}=1.0`]);
    expect(await installed()).toBe("1.0");
    const id = await applied("pkg.installed", PKG, "version='2.0'");
    expect(await installed()).toBe("2.0");

    const dry = await zester("--test", "state.revert", id);
    expect(dry.code, dry.stdout).toBe(0);
    expect(parse(dry).results[0]!.pending).toBe(true);
    expect(await installed()).toBe("2.0");

    const r = await zester("state.revert", id);
    expect(r.code, r.stdout).toBe(0);
    expect(parse(r).results[0]!.comment).toContain(`Package ${PKG} back at 1.0`);
    expect(await installed()).toBe("1.0");
    expect(await readFile(`/usr/share/${PKG}/VERSION`, "utf8")).toBe("1.0\n");
  });

  it("an install is reverted by removing the package; a removal by reinstalling its version", async (t) => {
    if (skip) return t.skip();
    await purge();
    const id = await applied("pkg.installed", PKG);
    expect(await installed()).toBe("2.0");
    expect((await zester("state.revert", id)).code).toBe(0);
    expect(await installed()).toBeNull();

    await need(["apt-get", "install", "-y", `${PKG}=1.0`]);
    const gone = await applied("pkg.removed", PKG);
    expect(await installed()).toBeNull();
    const back = await zester("state.revert", gone);
    expect(back.code, back.stdout).toBe(0);
    expect(await installed()).toBe("1.0");
  });

  it("refuses a package changed again since the run; force=true reverts it", async (t) => {
    if (skip) return t.skip();
    await purge();
    const id = await applied("pkg.installed", PKG, "version='1.0'");
    await need(["apt-get", "install", "-y", `${PKG}=2.0`]);
    const r = await zester("state.revert", id);
    expect(r.code).toBe(2);
    expect(parse(r).results[0]!.comment).toMatch(
      /^refused: pkg zester-revert-probe changed since the run \(version 1\.0 → 2\.0\)/,
    );
    expect(await installed()).toBe("2.0");
    const forced = await zester("state.revert", id, "force=true");
    expect(forced.code, forced.stdout).toBe(0);
    expect(await installed()).toBeNull();
  });
});
