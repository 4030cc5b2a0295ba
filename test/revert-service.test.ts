/**
 * state.revert for services on the real system (root): a SysV init script of our own, started
 * and enabled by a run, is stopped and disabled again by the revert (rc links as before); a
 * service changed again since the run is refused until force=true.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../src/util/exec.js";
import { requireBuilt } from "./support/built.js";
import { type CliResult, runCli } from "./support/cli.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester.js");
const NAME = "zester-revert-svc";
const SCRIPT = `/etc/init.d/${NAME}`;
const isRoot = process.getuid?.() === 0;
let tmp: string;
let skip: string | undefined;

const script = (pidfile: string) => `#!/bin/sh
### BEGIN INIT INFO
# Provides:          ${NAME}
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: zester revert test daemon
### END INIT INFO
PIDFILE=${pidfile}
running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
case "$1" in
  start) running && exit 0; sleep 3600 </dev/null >/dev/null 2>&1 & echo $! >"$PIDFILE" ;;
  stop) if running; then kill "$(cat "$PIDFILE")"; fi; rm -f "$PIDFILE" ;;
  restart) "$0" stop; "$0" start ;;
  status) running && exit 0; exit 3 ;;
  *) exit 2 ;;
esac
exit 0
`;

async function rcLinks(): Promise<string[]> {
  const found: string[] = [];
  for (const lvl of ["0", "1", "2", "3", "4", "5", "6", "S"]) {
    const files = await readdir(`/etc/rc${lvl}.d`).catch(() => [] as string[]);
    for (const f of files) if (f.endsWith(NAME)) found.push(`rc${lvl}.d/${f}`);
  }
  return found.sort();
}

const running = async () => (await run([SCRIPT, "status"])).retcode === 0;

function zester(...args: string[]): Promise<CliResult> {
  return runCli(
    BIN,
    ["local", "--no-cache", "--revert-dir", join(tmp, "revert"), "--format", "json", ...args],
    {
      env: { NO_COLOR: "1" },
    },
  );
}

function first(r: CliResult): { result: boolean; changed: boolean; comment: string } {
  try {
    return (JSON.parse(r.stdout) as { results: never[] }[])[0]!.results[0]!;
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

beforeAll(async () => {
  requireBuilt(BIN);
  if (!isRoot) skip = "not root";
  else if ((await readdir("/run/systemd/system").catch(() => undefined)) !== undefined)
    skip = "systemd is running here: this test drives a SysV script";
  else if ((await run(["sh", "-c", "command -v update-rc.d"])).retcode !== 0) skip = "no update-rc.d";
  if (skip) {
    console.warn(`revert-service: skipped: ${skip}`);
    return;
  }
  tmp = await mkdtemp(join(tmpdir(), "zester-revert-svc-"));
  await writeFile(SCRIPT, script(join(tmp, "pid")), { mode: 0o755 });
});

afterAll(async () => {
  if (skip) return;
  await run([SCRIPT, "stop"]).catch(() => undefined);
  await run(["update-rc.d", "-f", NAME, "remove"]).catch(() => undefined);
  for (const l of await rcLinks()) await rm(join("/etc", l), { force: true });
  await rm(SCRIPT, { force: true });
  await rm(tmp, { recursive: true, force: true });
});

describe("state.revert, service family (SysV init script)", () => {
  it("a start and enable are reverted: stopped, no start links; a change since is refused, force reverts", async (t) => {
    if (skip) return t.skip();
    expect(await running()).toBe(false);
    const linksBefore = await rcLinks();
    expect(linksBefore).toEqual([]);
    const applied = await zester("service.running", NAME, "enable=true");
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    const id = (JSON.parse(applied.stdout) as { revert: { run: string } }[])[0]!.revert.run;
    expect(await running()).toBe(true);
    expect(await rcLinks()).not.toEqual(linksBefore);

    const dry = await zester("--test", "state.revert", id);
    expect(dry.code).toBe(0);
    expect(await running()).toBe(true);

    const r = await zester("state.revert", id);
    expect(r.code, r.stdout).toBe(0);
    expect(first(r).comment).toBe(`Service ${NAME} stopped and disabled as before the run`);
    expect(await running()).toBe(false);
    // Disabled at boot again: no start links (a SysV disable leaves K links, as Salt's does).
    expect((await rcLinks()).filter((l) => /\/S\d/.test(l))).toEqual([]);

    // Started again by a run, then enabled by hand: not as the run left it.
    const again = await zester("service.running", NAME);
    const id2 = (JSON.parse(again.stdout) as { revert: { run: string } }[])[0]!.revert.run;
    expect((await run(["update-rc.d", NAME, "enable"])).retcode).toBe(0);
    const refused = await zester("state.revert", id2);
    expect(refused.code).toBe(2);
    expect(first(refused).comment).toMatch(
      /^refused: service zester-revert-svc changed since the run \(enabled false → true\)/,
    );
    const forced = await zester("state.revert", id2, "force=true");
    expect(forced.code, forced.stdout).toBe(0);
    expect(await running()).toBe(false);
    expect((await rcLinks()).filter((l) => /\/S\d/.test(l))).toEqual([]);
    expect(await readFile(SCRIPT, "utf8")).toContain(NAME);
  });
});
