/**
 * state.revert for crontabs, hosts files and sysctls on the real system: applied, reverted,
 * as before (crontab text or no crontab, file bytes, the live kernel value); a change since the
 * run is refused until force=true.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../src/util/exec.js";
import { requireBuilt } from "./support/built.js";
import { type CliResult, runCli } from "./support/cli.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester.js");
const isRoot = process.getuid?.() === 0;
const CRON_USER = "zrv-cron";
// Not vm.swappiness: modules-sysctl.test.ts changes that one, possibly at the same time.
const KEY = "net.ipv4.ip_default_ttl";
const PROC = "/proc/sys/net/ipv4/ip_default_ttl";
let tmp: string;
let states: string;

function zester(...args: string[]): Promise<CliResult> {
  return runCli(
    BIN,
    [
      "local",
      "--states-dir",
      states,
      "--no-cache",
      "--revert-dir",
      join(tmp, "revert"),
      "--format",
      "json",
      ...args,
    ],
    {
      env: { NO_COLOR: "1" },
    },
  );
}

type Res = { name: string; result: boolean; comment: string; changed: boolean; diff?: string };
function parse(r: CliResult): { results: Res[]; revert?: { run: string } } {
  try {
    return (JSON.parse(r.stdout) as never[])[0]!;
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

async function apply(...args: string[]): Promise<string> {
  const r = await zester(...args);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return parse(r).revert!.run;
}

const crontab = async () => {
  const r = await run(["crontab", "-l", "-u", CRON_USER]);
  return r.retcode === 0 ? r.stdout : null;
};

/** Other test files change the account files at the same time: useradd may find them locked. */
async function addCronUser(): Promise<number> {
  let code = -1;
  for (let i = 0; i < 20 && code !== 0; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 250));
    code = (await run(["useradd", "-M", CRON_USER])).retcode;
  }
  return code;
}

/** userdel leaves a user's crontab behind: remove it first. */
async function dropCronUser(): Promise<void> {
  await run(["crontab", "-r", "-u", CRON_USER]);
  await run(["userdel", "-r", CRON_USER]);
}

beforeAll(async () => {
  requireBuilt(BIN);
  tmp = await mkdtemp(join(tmpdir(), "zester-revert-sys-"));
  states = join(tmp, "states");
  await mkdir(states);
});

afterAll(async () => {
  if (isRoot) await dropCronUser();
  await rm(tmp, { recursive: true, force: true });
});

describe("state.revert, host family", () => {
  it("restores the hosts file's bytes; refuses after an edit, force reverts", async () => {
    const hosts = join(tmp, "hosts");
    const before = "127.0.0.1 localhost\n# keep this comment\n10.0.0.1 old.example\n";
    await writeFile(hosts, before);
    const id = await apply("host.present", "db.example", "ip=10.0.0.9", `hosts_file=${hosts}`);
    expect(await readFile(hosts, "utf8")).toContain("db.example");
    const r = await zester("state.revert", id);
    expect(r.code, r.stdout).toBe(0);
    expect(await readFile(hosts, "utf8")).toBe(before);

    const id2 = await apply("host.absent", "old.example", "ip=10.0.0.1", `hosts_file=${hosts}`);
    await writeFile(hosts, `${await readFile(hosts, "utf8")}10.0.0.7 new.example\n`);
    const refused = await zester("state.revert", id2);
    expect(refused.code).toBe(2);
    expect(parse(refused).results[0]!.comment).toContain(
      `refused: file ${hosts} changed since the run (content`,
    );
    expect((await zester("state.revert", id2, "force=true")).code).toBe(0);
    expect(await readFile(hosts, "utf8")).toBe(before);
  });
});

describe.runIf(isRoot)("state.revert, cron family (a real user's crontab)", () => {
  it("removes a crontab the run created, restores one it edited, refuses after an edit", async () => {
    await dropCronUser();
    expect(await addCronUser()).toBe(0);
    expect(await crontab()).toBeNull();
    const id = await apply(
      "cron.present",
      "/usr/bin/true nightly",
      `user=${CRON_USER}`,
      "minute=5",
      "hour=3",
    );
    expect(await crontab()).toContain("/usr/bin/true nightly");
    const r = await zester("state.revert", id);
    expect(r.code, r.stdout).toBe(0);
    expect(parse(r).results[0]!.comment).toBe(`Crontab of ${CRON_USER} removed (the run created it)`);
    expect(await crontab()).toBeNull();

    const text = "MAILTO=ops\n# nightly report\n0 1 * * * /usr/bin/report\n";
    await run(["crontab", "-u", CRON_USER, "-"], { input: text });
    const original = await crontab();
    const id2 = await apply("cron.absent", "/usr/bin/report", `user=${CRON_USER}`);
    expect(await crontab()).not.toContain("/usr/bin/report");
    const dry = await zester("--test", "state.revert", id2);
    expect(parse(dry).results[0]!.diff).toContain("+0 1 * * * /usr/bin/report");
    expect((await zester("state.revert", id2)).code).toBe(0);
    expect(await crontab()).toBe(original);

    const id3 = await apply("cron.present", "/usr/bin/other", `user=${CRON_USER}`);
    await run(["crontab", "-u", CRON_USER, "-"], { input: `${await crontab()}* * * * * /usr/bin/by-hand\n` });
    const refused = await zester("state.revert", id3);
    expect(refused.code).toBe(2);
    expect(parse(refused).results[0]!.comment).toMatch(/^refused: crontab zrv-cron changed since the run/);
    expect((await zester("state.revert", id3, "force=true")).code).toBe(0);
    expect(await crontab()).toBe(original);
  });
});

// Writing the current value back is harmless and tells whether this sandbox lets us change sysctls.
const ttl = (await readFile(PROC, "utf8").catch(() => "")).trim();
const writable =
  isRoot &&
  ttl !== "" &&
  (await writeFile(PROC, ttl).then(
    () => true,
    () => false,
  ));
if (!writable) console.warn(`revert-system: skipping the sysctl test: ${PROC} is not writable here`);

describe.runIf(writable)("state.revert, sysctl family", () => {
  it("restores the live value and removes the config file the run created", async () => {
    const config = join(tmp, "sysctl.d", "90-zester.conf");
    await mkdir(join(tmp, "sysctl.d"));
    const other = String(Number(ttl) === 64 ? 65 : 64);
    try {
      const id = await apply("sysctl.present", KEY, `value=${other}`, `config=${config}`);
      expect((await readFile(PROC, "utf8")).trim()).toBe(other);
      expect(await readFile(config, "utf8")).toContain(`${KEY} = ${other}`);
      const r = await zester("state.revert", id);
      expect(r.code, r.stdout).toBe(0);
      expect((await readFile(PROC, "utf8")).trim()).toBe(ttl);
      await expect(stat(config)).rejects.toThrow(/ENOENT/);
    } finally {
      await writeFile(PROC, ttl);
    }
  });
});
