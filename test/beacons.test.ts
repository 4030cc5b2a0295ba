/**
 * Beacons on a real nats-server and the real system: settings published by a real Master, a
 * real Peel watching a real init-script service, real files, a real (tmpfs) disk and real dpkg
 * package changes, events read back from the bus as the reactor would see them.
 */
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decode, encode } from "../src/bus/codec.js";
import { subjects } from "../src/bus/names.js";
import { parseEvent, type ZesterEvent } from "../src/events/index.js";
import { JobStore } from "../src/jobs/store.js";
import type { DispatchReply, PeelReturn } from "../src/jobs/wire.js";
import type { Master } from "../src/master/index.js";
import { beaconsConfig } from "../src/peel/beacons/config.js";
import { BEACON_ALIASES, BEACON_MODULES } from "../src/peel/beacons/registry.js";
import type { BeaconStatus } from "../src/peel/beacons/runner.js";
import { Peel } from "../src/peel/peel.js";
import { run } from "../src/util/exec.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

const ID = "bcn-01";
const isRoot = process.getuid?.() === 0;
const svc = `zt-bcn-${randomBytes(3).toString("hex")}`;
const script = `/etc/init.d/${svc}`;
const debName = `zester-bcn-${randomBytes(3).toString("hex")}`;

let nats: StartedNats;
let work: string;
let settingsDir: string;
let master: Master;
let admin: NatsConnection;
let store: JobStore;
let peel: Peel;
let tmpfs: string | undefined;
const events: ZesterEvent[] = [];
const logs: string[] = [];
const context = () => `${logs.join("\n")}\nevents:\n${events.map((e) => JSON.stringify(e)).join("\n")}`;

function initScript(pidfile: string): string {
  return `#!/bin/sh
PIDFILE=${pidfile}
running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
case "$1" in
  start) running && exit 0; sleep 3600 </dev/null >/dev/null 2>&1 & echo $! >"$PIDFILE" ;;
  stop) if running; then kill "$(cat "$PIDFILE")"; fi; rm -f "$PIDFILE" ;;
  status) running && exit 0; exit 3 ;;
  *) exit 2 ;;
esac
exit 0
`;
}

async function writeBeacons(yaml: string): Promise<void> {
  await writeFile(join(settingsDir, "top.zy"), "base:\n  '*':\n    - beacons\n");
  await writeFile(join(settingsDir, "beacons.zy"), yaml);
}

async function publishBeacons(yaml: string): Promise<void> {
  await writeBeacons(yaml);
  await master.publishSettings();
}

async function dispatch(fun: string, args: unknown[] = []): Promise<PeelReturn> {
  const reply = await admin.request(
    subjects.dispatch,
    encode({ target: ID, fun, args, kwargs: {}, timeout_s: 30 }),
    { timeout: 10_000 },
  );
  const d = decode<DispatchReply>(reply.data);
  expect(d.error, d.error).toBeUndefined();
  return waitFor(`${fun} return`, async () => (await store.returnsOf(d.jid!, [ID])).get(ID));
}

const of = (name: string) => events.filter((e) => e.tag === `beacon/${ID}/${name}`);

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-beacons-"));
  settingsDir = join(work, "settings");
  const statesDir = join(work, "states");
  await mkdir(settingsDir, { recursive: true });
  await mkdir(statesDir, { recursive: true });
  await writeFile(join(work, "watched.conf"), "one\n");
  await writeFile(
    join(statesDir, "touch.zy"),
    `touched:\n  file.managed:\n    - name: ${work}/watched.conf\n    - contents: from a state run\n`,
  );
  if (isRoot) await writeFile(script, initScript(join(work, "svc.pid")), { mode: 0o755 });
  await writeBeacons("beacons: {}\n");
  master = await startTestMaster(nats, {
    id: "master-bcn",
    statesDir,
    settingsDir,
    publishIntervalMs: 3_600_000,
    log: (m) => logs.push(`master: ${m}`),
  });
  admin = await nats.connectAs("admin");
  store = await JobStore.open(admin);
  admin.subscribe(`zester.event.${ID}.beacon.>`, {
    callback: (err, msg) => {
      if (!err) events.push(parseEvent(msg.subject, msg.data));
    },
  });
  await admin.flush();
  peel = new Peel({
    id: ID,
    servers: nats.url,
    credsFile: await nats.credsFile(ID),
    caFile: nats.caFile,
    authDir: nats.authDir,
    cacheDir: join(work, "cache"),
    customFactsDir: join(work, "no-facts"),
    trustedMasters: new Set([master.publicKey]),
    settingsFetchTimeoutMs: 2_000,
    logger: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
  });
  await peel.start();
  await peel.waitConnected();
}, 90_000);

afterAll(async () => {
  await peel?.stop().catch(() => {});
  await master?.stop();
  await admin?.close().catch(() => {});
  await nats?.stop();
  if (isRoot) {
    await run([script, "stop"]).catch(() => undefined);
    await rm(script, { force: true });
    await run(["dpkg", "-r", debName]).catch(() => undefined);
  }
  if (tmpfs) await run(["umount", tmpfs]).catch(() => undefined);
  if (work) await rm(work, { recursive: true, force: true });
});

describe("beacons: configuration", () => {
  const cfg = (beacons: unknown) => beaconsConfig({ beacons }, BEACON_MODULES, BEACON_ALIASES);

  it("reads Salt's list form and the plain mapping form to the same beacon", () => {
    const list = cfg({ service: [{ services: { nginx: { onchangeonly: true } } }, { interval: 10 }] });
    const map = cfg({ service: { services: { nginx: { onchangeonly: true } }, interval: 10 } });
    expect(list).toEqual(map);
    expect(list.beacons).toEqual([
      {
        name: "service",
        module: "service",
        intervalMs: 10_000,
        disableDuringStateRun: false,
        options: { services: { nginx: { onchangeonly: true } } },
      },
    ]);
  });

  it("maps Salt's names, beacon_module, enabled: false, and names what is wrong", () => {
    const c = cfg({
      diskusage: [{ "/": "90%" }],
      second_disk: { beacon_module: "disk", "/var": 80 },
      off: { beacon_module: "load", enabled: false },
      servce: { services: {} },
      bad: { beacon_module: "inotify", interval: "soon" },
    });
    expect(c.beacons.map((b) => [b.name, b.module])).toEqual([
      ["diskusage", "disk"],
      ["second_disk", "disk"],
    ]);
    expect(c.errors).toEqual([
      expect.stringMatching(/beacons\.servce: unknown beacon module "servce" \(did you mean "service"\?\)/),
      expect.stringMatching(/beacons\.bad\.interval: "soon" is not a duration/),
    ]);
  });
});

describe.skipIf(!isRoot)("beacons on the real system (root)", () => {
  it("service: transitions of a real init-script service, with onchangeonly", async () => {
    await publishBeacons(
      `beacons:\n  service:\n    - services:\n        ${svc}: {onchangeonly: true}\n    - interval: 0.3\n`,
    );
    await waitFor("the first state", async () => of("service").length >= 1, { context });
    expect(of("service")[0]!.data).toEqual({ service: svc, running: false, previous: null });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(of("service")).toHaveLength(1);
    await run([script, "start"]);
    await waitFor("started", async () => of("service").length >= 2, { context });
    expect(of("service")[1]!.data).toEqual({ service: svc, running: true, previous: false });
    await run([script, "stop"]);
    await waitFor("stopped", async () => of("service").length >= 3, { context });
    expect(of("service")[2]!.data).toEqual({ service: svc, running: false, previous: true });
    expect(of("service")[2]!.origin).toBe(ID);
  });

  it("inotify: a real edit of a watched file; beacons.list shows it; settings changes apply at once", async () => {
    await publishBeacons(`beacons:\n  inotify:\n    files:\n      ${work}/watched.conf: {mask: [modify]}\n`);
    await waitFor("the inotify beacon running", async () =>
      ((await dispatch("beacons.list")).return as BeaconStatus[]).some((b) => b.name === "inotify"),
    );
    await writeFile(join(work, "watched.conf"), "two\n");
    await waitFor("the modify event", async () => of("inotify").length >= 1, { context });
    expect(of("inotify")[0]!.data).toEqual({ path: `${work}/watched.conf`, change: "IN_MODIFY" });
    const list = (await dispatch("beacons.list")).return as BeaconStatus[];
    // The service beacon is gone with the new settings.
    expect(list.map((b) => b.name)).toEqual(["inotify"]);
    expect(list[0]).toMatchObject({
      module: "inotify",
      interval_s: null,
      events: of("inotify").length,
      error: null,
    });
    expect(list[0]!.last_event?.data).toEqual({ path: `${work}/watched.conf`, change: "IN_MODIFY" });
  });

  it("disable_during_state_run: a state run's own change is not reported, a manual one is", async () => {
    await publishBeacons(
      `beacons:\n  inotify:\n    files:\n      ${work}/watched.conf: {}\n    disable_during_state_run: true\n`,
    );
    await waitFor("reconfigured", async () =>
      ((await dispatch("beacons.list")).return as BeaconStatus[]).some((b) => b.disable_during_state_run),
    );
    const before = of("inotify").length;
    const r = await dispatch("state.apply", ["touch"]);
    expect(r.summary?.changed, JSON.stringify(r.results)).toBe(1);
    await new Promise((res) => setTimeout(res, 1_500));
    expect(of("inotify")).toHaveLength(before);
    await writeFile(join(work, "watched.conf"), "by hand\n");
    await waitFor("the manual edit", async () => of("inotify").length > before, { context });
  });

  it("disk: a real tmpfs filled over its threshold", async (ctx) => {
    const mnt = join(work, "mnt");
    await mkdir(mnt);
    const m = await run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]);
    if (m.retcode !== 0) {
      console.warn(`skipped: cannot mount a tmpfs here (${m.stderr.trim()})`);
      ctx.skip();
    }
    tmpfs = mnt;
    await publishBeacons(`beacons:\n  diskusage:\n    - ${mnt}: 50%\n    - interval: 0.3\n`);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(of("diskusage")).toHaveLength(0);
    await writeFile(join(mnt, "fill"), Buffer.alloc(700 * 1024, 1));
    await waitFor("over the threshold", async () => of("diskusage").length >= 1, { context });
    expect(of("diskusage")[0]!.data).toMatchObject({ mount: mnt, threshold: 50 });
    expect(of("diskusage")[0]!.data.usage_percent as number).toBeGreaterThanOrEqual(50);
  });

  it("pkg: a real package installed and removed with dpkg", async (ctx) => {
    if ((await run(["which", "dpkg-deb"])).retcode !== 0) {
      console.warn("skipped: no dpkg on this machine");
      ctx.skip();
    }
    const root = join(work, "deb");
    await mkdir(join(root, "DEBIAN"), { recursive: true });
    await writeFile(
      join(root, "DEBIAN", "control"),
      `Package: ${debName}\nVersion: 1.0\nArchitecture: all\nMaintainer: zester tests <t@example.invalid>\nDescription: beacon test package\n`,
    );
    const deb = join(work, `${debName}.deb`);
    expect((await run(["dpkg-deb", "--build", root, deb])).retcode).toBe(0);
    await publishBeacons(`beacons:\n  pkg: {pkgs: [${debName}], interval: 0.5}\n`);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(of("pkg")).toHaveLength(0);
    const inst = await waitFor(
      "dpkg -i",
      async () => {
        const r = await run(["dpkg", "-i", deb]);
        return r.retcode === 0 ? r : undefined; // another dpkg may hold the lock for a while
      },
      { ms: 120_000, intervalMs: 1_000 },
    );
    expect(inst.retcode).toBe(0);
    await waitFor("installed", async () => of("pkg").length >= 1, { context, ms: 30_000 });
    expect(of("pkg")[0]!.data).toEqual({ installed: { [debName]: "1.0" }, removed: {}, changed: {} });
    await waitFor("dpkg -r", async () => (await run(["dpkg", "-r", debName])).retcode === 0, {
      ms: 120_000,
      intervalMs: 1_000,
    });
    await waitFor("removed", async () => of("pkg").length >= 2, { context, ms: 30_000 });
    expect(of("pkg")[1]!.data).toEqual({ installed: {}, removed: { [debName]: "1.0" }, changed: {} });
  }, 300_000);
});

describe("beacons: permissions", () => {
  it("a peel may send beacon events only under its own id", async () => {
    const nc = await nats.connectAs(ID);
    const errors: string[] = [];
    void (async () => {
      for await (const s of nc.status())
        if (s.type === "error") errors.push(String((s as { error?: unknown }).error));
    })();
    try {
      const before = events.length;
      nc.publish(`zester.event.other-01.beacon.service`, encode({ x: 1 }));
      await nc.flush();
      await waitFor("the permission violation", async () => errors.some((e) => /permission/i.test(e)));
      expect(events.length).toBe(before);
    } finally {
      await nc.close();
    }
  });
});
