/**
 * watch_drift on a real nats-server and the real system: a peel applies a tree, then a manual
 * edit of a watched file (or a stopped init-script service) is repaired at once from the cache,
 * re-running only the drifted state and what reacts to it; the repair is stored like a scheduled
 * run and announced by a drift/repaired event; with the server down it works the same, and the
 * return and event go out when the server is back.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issuePeelCredsFile } from "../src/auth/auth-dir.js";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import type { PeelReturn } from "../src/jobs/wire.js";
import type { DriftRepair } from "../src/peel/drift/watcher.js";
import { Peel } from "../src/peel/peel.js";
import { run } from "../src/util/exec.js";
import { asMaster, storedEvents } from "./support/events.js";
import { type RestartableNats, startRestartableNats } from "./support/nats-restart.js";
import { publishTestTree } from "./support/state-tree.js";
import { nextEvent, waitFor } from "./support/wait.js";

const ID = "drift-01";
const isRoot = process.getuid?.() === 0;
const svc = `zt-drift-${randomBytes(3).toString("hex")}`;
const script = `/etc/init.d/${svc}`;

let nats: RestartableNats;
let work: string;
let peel: Peel;
const logs: string[] = [];
const context = () => logs.join("\n");

type Drifted = DriftRepair & { ret: PeelReturn };

function initScript(pidfile: string): string {
  return `#!/bin/sh
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
}

const driftEvents = () => storedEvents(nats, `${ID}/drift/**`, 800);

beforeAll(async () => {
  nats = await startRestartableNats();
  work = await mkdtemp(join(tmpdir(), "zester-drift-"));
  if (isRoot) await writeFile(script, initScript(join(work, "svc.pid")), { mode: 0o755 });
  const files: Record<string, string> = {
    "motd.zy": [
      "motd:",
      "  file.managed:",
      `    - name: ${work}/motd`,
      "    - contents: managed by zester",
      "    - watch_drift: true",
      "motd_seen:",
      "  cmd.run:",
      `    - name: echo seen >> ${work}/reactions`,
      "    - onchanges:",
      "      - file: motd",
      "other:",
      "  file.managed:",
      `    - name: ${work}/other`,
      "    - contents: not watched",
      "",
    ].join("\n"),
  };
  if (isRoot) {
    files["svc.zy"] = [`${svc}:`, "  service.running:", "    - watch_drift: true", ""].join("\n");
  }
  await asMaster(nats, async (nc) => {
    await bootstrap(nc);
    await publishTestTree(nc, 1, files);
  });
  peel = new Peel({
    id: ID,
    servers: nats.url,
    credsFile: await issuePeelCredsFile(nats.authDir, ID),
    caFile: nats.caFile,
    authDir: nats.authDir,
    cacheDir: join(work, "cache"),
    customFactsDir: join(work, "no-facts"),
    trustedMasters: new Set(),
    connectRetryMs: 300,
    logger: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
  });
  await peel.start();
  await peel.waitConnected();
  await waitFor("the tree", async () => (await peel.states.currentRev()) === 1);
}, 60_000);

afterAll(async () => {
  await peel?.stop().catch(() => {});
  await nats?.stop();
  if (isRoot) {
    await run([script, "stop"]).catch(() => undefined);
    await rm(script, { force: true });
  }
  if (work) await rm(work, { recursive: true, force: true });
});

describe("watch_drift", () => {
  it("repairs a hand-edited file at once, re-running only it and what reacts to it", async () => {
    const first = await peel.applyLocal({ sls: ["motd"] });
    expect(first.success, JSON.stringify(first.results)).toBe(true);
    await waitFor("the watch", () => existsSync(join(work, "cache", "drift.json")), { context });
    await new Promise((r) => setTimeout(r, 300));
    expect((await readFile(join(work, "reactions"), "utf8")).trim().split("\n")).toHaveLength(1);

    const repaired = nextEvent<Drifted>(peel, "drift", 15_000);
    await writeFile(join(work, "motd"), "edited by hand\n");
    await writeFile(join(work, "other"), "also edited, not watched\n");
    const d = await repaired;
    expect(await readFile(join(work, "motd"), "utf8")).toBe("managed by zester\n");
    expect(await readFile(join(work, "other"), "utf8")).toBe("also edited, not watched\n");
    expect(d.states).toEqual(["file.managed:motd"]);
    expect(d.ret.origin).toBe("schedule");
    expect(d.ret.results?.map((r) => [r.name, r.changed])).toEqual([
      ["file.managed:motd", true],
      [`cmd.run:motd_seen`, true],
    ]);
    // Stored like a scheduled run, announced by an event.
    const stored = await asMaster(nats, async (nc) =>
      (await openKv(nc, "job-returns")).get(`${d.ret.jid}.${ID}`),
    );
    expect(stored?.operation).toBe("PUT");
    await waitFor("the drift event", async () => (await driftEvents()).length === 1, { context });
    const [ev] = await driftEvents();
    expect(ev).toMatchObject({ tag: "drift/repaired", origin: ID });
    expect(ev!.data).toMatchObject({
      jid: d.ret.jid,
      success: true,
      states: ["file.managed:motd"],
      changed: 2,
    });
  });

  it("repairs nothing when a watch fires without a change (same content written again)", async () => {
    const before = (await driftEvents()).length;
    let drifted = false;
    const on = () => {
      drifted = true;
    };
    peel.on("drift", on);
    await writeFile(join(work, "motd"), "managed by zester\n");
    await new Promise((r) => setTimeout(r, 1_000));
    peel.off("drift", on);
    expect(drifted).toBe(false);
    expect((await driftEvents()).length).toBe(before);
  });

  it("repairs while NATS is down; the return and the event go out when it is back", async () => {
    await nats.halt();
    await waitFor("disconnected", () => logs.some((l) => /disconnected from NATS/.test(l)), { context });
    const repaired = nextEvent<Drifted>(peel, "drift", 15_000);
    await writeFile(join(work, "motd"), "offline edit\n");
    const d = await repaired;
    expect(d.ret.success).toBe(true);
    expect(await readFile(join(work, "motd"), "utf8")).toBe("managed by zester\n");
    await nats.start();
    await peel.waitConnected(30_000).catch(() => {});
    await waitFor(
      "the kept return stored",
      async () =>
        asMaster(
          nats,
          async (nc) =>
            (await (await openKv(nc, "job-returns")).get(`${d.ret.jid}.${ID}`))?.operation === "PUT",
        ),
      { context, ms: 40_000, ignoreErrors: true },
    );
    await waitFor(
      "the kept event stored",
      async () => (await driftEvents()).some((e) => e.data.jid === d.ret.jid),
      {
        context,
        ms: 30_000,
        ignoreErrors: true,
      },
    );
  }, 90_000);

  it.skipIf(!isRoot)(
    "restarts a watched init-script service that was stopped by hand",
    async () => {
      const first = await peel.applyLocal({ sls: ["svc"] });
      expect(first.success, JSON.stringify(first.results)).toBe(true);
      expect((await run([script, "status"])).retcode).toBe(0);
      await waitFor(
        "the service watch",
        async () => (await readFile(join(work, "cache", "drift.json"), "utf8")).includes(svc),
        { context },
      );
      const repaired = nextEvent<Drifted>(peel, "drift", 15_000);
      await run([script, "stop"]);
      const d = await repaired;
      expect(d.states).toEqual([`service.running:${svc}`]);
      expect(d.ret.success, JSON.stringify(d.ret.results)).toBe(true);
      expect((await run([script, "status"])).retcode).toBe(0);
    },
    30_000,
  );

  it("a watch_drift that is not a boolean is a compile error at its line", async () => {
    const dir = join(work, "badtree");
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, "bad.zy"),
      "x:\n  file.managed:\n    - name: /tmp/x\n    - watch_drift: yes please\n",
    );
    const { compileTarget } = await import("../src/state/engine.js");
    await expect(compileTarget({ kind: "sls", refs: ["bad"] }, { statesDir: dir })).rejects.toThrow(
      /bad\.zy:4:\d+: .*watch_drift must be true or false, got "yes please"/,
    );
  });
});
