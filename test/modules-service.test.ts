/**
 * A real SysV init script in /etc/init.d (temp name zt-<random>) that runs a sleep-based daemon with
 * a pidfile. Everything it creates (script, rc links, daemon, pidfile) is removed afterwards.
 */
import { randomBytes } from "node:crypto";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { family, serviceBackend } from "../src/modules/service.js";
import { run } from "../src/util/exec.js";
import { moduleContext, runState, runWatch, tempDir } from "./support/module-context.js";

const state = (n: string) => family.states[n]!;
const exec = (n: string) => family.exec![n]!;
const name = `zt-${randomBytes(4).toString("hex")}`;
const script = `/etc/init.d/${name}`;
const facts = { init: "sysvinit" };
const ctx = (test = false) => moduleContext({ test, facts, id: name });
let dir = "";
let cleanupDir: () => Promise<void> = async () => {};

const isRoot = process.getuid?.() === 0;

function initScript(pidfile: string, log: string): string {
  return `#!/bin/sh
### BEGIN INIT INFO
# Provides:          ${name}
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: zester test daemon
### END INIT INFO
PIDFILE=${pidfile}
LOG=${log}
running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
case "$1" in
  start) echo start >>"$LOG"; running && exit 0
         sleep 3600 </dev/null >/dev/null 2>&1 & echo $! >"$PIDFILE" ;;
  stop)  echo stop >>"$LOG"; if running; then kill "$(cat "$PIDFILE")"; fi; rm -f "$PIDFILE" ;;
  restart) "$0" stop; "$0" start ;;
  reload) echo reload >>"$LOG"; running || exit 7 ;;
  status) running && exit 0; exit 3 ;;
  *) echo "usage" >&2; exit 2 ;;
esac
exit 0
`;
}

async function rcLinksFor(): Promise<string[]> {
  const found: string[] = [];
  for (const lvl of ["0", "1", "2", "3", "4", "5", "6", "S"]) {
    const files = await readdir(`/etc/rc${lvl}.d`).catch(() => [] as string[]);
    for (const f of files) if (f.endsWith(name)) found.push(`rc${lvl}.d/${f}`);
  }
  return found;
}

beforeAll(async () => {
  if (!isRoot) return;
  ({ dir, cleanup: cleanupDir } = await tempDir("zester-svc-"));
  await writeFile(script, initScript(join(dir, "pid"), join(dir, "log")), { mode: 0o755 });
});

afterAll(async () => {
  if (!isRoot) return;
  await run([script, "stop"]).catch(() => undefined);
  await run(["update-rc.d", "-f", name, "remove"]).catch(() => undefined);
  for (const l of await rcLinksFor()) await rm(join("/etc", l), { force: true });
  await rm(script, { force: true });
  await cleanupDir();
});

const log = async () =>
  (await readFile(join(dir, "log"), "utf8").catch(() => "")).trim().split("\n").filter(Boolean);
const pid = async () => (await readFile(join(dir, "pid"), "utf8").catch(() => "")).trim();

describe.runIf(isRoot)("service with a real SysV init script", () => {
  it("picks sysvinit from the init fact and probes when the fact is unknown", async () => {
    expect((await serviceBackend({ facts })).name).toBe("sysvinit");
    const probed = (await serviceBackend({ facts: {} })).name;
    const booted = await readFile("/proc/1/comm", "utf8").catch(() => "");
    console.log(`init probe: pid 1 is ${booted.trim()}, backend ${probed}`);
    expect(["systemd", "sysvinit"]).toContain(probed);
  });

  it("fails clearly for a service that does not exist", async () => {
    const r = await runState(state("running"), { name: `${name}-missing` }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/not available/);
  });

  it("running + enable: test mode, start, idempotent, drift repaired; watch restarts or reloads", async () => {
    const dry = await runState(state("running"), { enable: true }, ctx(true));
    expect(dry.result, dry.comment).toBe(true);
    expect(dry.pending).toBe(true);
    expect(dry.changes).toEqual({ running: { old: false, new: true }, enabled: { old: false, new: true } });
    expect(await log()).toEqual([]);
    expect(await rcLinksFor()).toEqual([]);

    const first = await runState(state("running"), { enable: true }, ctx());
    expect(first.result, first.comment).toBe(true);
    expect(first.changes).toEqual({ running: { old: false, new: true }, enabled: { old: false, new: true } });
    expect(await exec("status").run({ name }, ctx())).toBe(true);
    expect((await rcLinksFor()).some((l) => l.startsWith("rc2.d/S"))).toBe(true);

    const again = await runState(state("running"), { enable: true }, ctx());
    expect(again.changed).toBe(false);
    expect(again.comment).toMatch(/already running and enabled/);

    // Drift: the daemon dies; the next run starts it again.
    await run([script, "stop"]);
    const repaired = await runState(state("running"), {}, ctx());
    expect(repaired.changes).toEqual({ running: { old: false, new: true } });
    const before = await pid();

    const restarted = await runWatch(state("running"), {}, ctx());
    expect(restarted.result, restarted.comment).toBe(true);
    expect(restarted.changes).toEqual({ restarted: true });
    expect(await pid()).not.toBe(before);
    const afterRestart = await pid();

    const reloaded = await runWatch(state("running"), { reload: true }, ctx());
    expect(reloaded.changes).toEqual({ reloaded: true });
    expect(await pid()).toBe(afterRestart);
    expect((await log()).at(-1)).toBe("reload");

    const dryWatch = await runWatch(state("running"), {}, ctx(true));
    expect(dryWatch.pending).toBe(true);
    expect(await pid()).toBe(afterRestart);
  });

  it("dead + disabled, enabled/disabled alone, exec start/stop", async () => {
    const dead = await runState(state("dead"), { enable: false }, ctx());
    expect(dead.result, dead.comment).toBe(true);
    expect(dead.changes).toEqual({ running: { old: true, new: false }, enabled: { old: true, new: false } });
    expect(await exec("status").run({ name }, ctx())).toBe(false);
    expect((await rcLinksFor()).some((l) => /^rc[2-5]\.d\/S/.test(l))).toBe(false);
    expect((await runState(state("dead"), { enable: false }, ctx())).changed).toBe(false);

    const en = await runState(state("enabled"), {}, ctx());
    expect(en.changes).toEqual({ enabled: { old: false, new: true } });
    expect(await exec("status").run({ name }, ctx())).toBe(false);
    expect((await runState(state("enabled"), {}, ctx())).changed).toBe(false);
    const dis = await runState(state("disabled"), {}, ctx());
    expect(dis.changes).toEqual({ enabled: { old: true, new: false } });

    expect(await exec("start").run({ name }, ctx())).toBe(true);
    expect(await exec("status").run({ name }, ctx())).toBe(true);
    expect(await exec("stop").run({ name }, ctx())).toBe(true);
    expect(await exec("status").run({ name }, ctx())).toBe(false);
  });

  it("a start that does not leave the daemon running fails the state", async () => {
    const broken = `${name}-b`;
    const path = `/etc/init.d/${broken}`;
    await writeFile(path, '#!/bin/sh\ncase "$1" in status) exit 3;; *) exit 0;; esac\n', { mode: 0o755 });
    try {
      const r = await runState(state("running"), { name: broken }, moduleContext({ facts, id: broken }));
      expect(r.result).toBe(false);
      expect(r.comment).toMatch(/not running/);
    } finally {
      await rm(path, { force: true });
    }
  });
});

const systemdBooted = (await run(["test", "-d", "/run/systemd/system"])).retcode === 0;
if (!systemdBooted) console.warn("skipping the real masking test: this machine was not booted with systemd");

describe("service.masked / service.unmasked", () => {
  it("without systemd they fail as Salt's do (masking is only in its systemd module)", async () => {
    for (const fn of ["masked", "unmasked"]) {
      const r = await runState(state(fn), { name: "docker" }, ctx(true));
      expect(r).toMatchObject({ result: false, comment: "Service masking not available on this minion" });
    }
  });

  it.skipIf(!systemdBooted || !isRoot)(
    "masks and unmasks a real unit (needs a systemd-booted machine)",
    async () => {
      const sd = moduleContext({ facts: { init: "systemd" }, id: name });
      const unit = `${name}-m.service`;
      const path = `/etc/systemd/system/${unit}`;
      await writeFile(path, "[Service]\nExecStart=/bin/true\n");
      try {
        await run(["systemctl", "daemon-reload"]);
        const m = await runState(state("masked"), { name: unit }, sd);
        expect(m.result, m.comment).toBe(true);
        expect((await run(["systemctl", "is-enabled", unit])).stdout.trim()).toBe("masked");
        expect((await runState(state("masked"), { name: unit }, sd)).changed).toBe(false);
        const u = await runState(state("unmasked"), { name: unit }, sd);
        expect(u.changes).toEqual({ [unit]: "unmasked" });
      } finally {
        await run(["systemctl", "unmask", unit]);
        await rm(path, { force: true });
        await run(["systemctl", "daemon-reload"]);
      }
    },
  );
});
