/**
 * A peel through a control-plane outage. Returns that cannot reach `job-returns` (no connection,
 * failed put) wait in the peel's outbox and are stored when the connection comes back, also
 * across a peel restart; the enforcement schedule keeps applying the cached tree while the bus is
 * down. The nats-server is really stopped and started again.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUTH_FILES, issuePeelCredsFile, peelCredsPath } from "../src/auth/auth-dir.js";
import { keyPairFromCreds } from "../src/auth/signing.js";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import { connect } from "../src/bus/connect.js";
import { subjects } from "../src/bus/names.js";
import { newKsuid } from "../src/jobs/ksuid.js";
import type { PeelReturn } from "../src/jobs/wire.js";
import { ReturnOutbox } from "../src/peel/outbox.js";
import { Peel, type PeelConfig } from "../src/peel/peel.js";
import { EnforceScheduler } from "../src/peel/scheduler.js";
import { statOrUndefined } from "../src/util/files.js";
import { testCommand } from "./support/commands.js";
import { probeInfo } from "./support/nats.js";
import { type RestartableNats, startRestartableNats } from "./support/nats-restart.js";
import { publishTestTree } from "./support/state-tree.js";
import { nextEvent, type WaitOptions, waitFor } from "./support/wait.js";

let nats: RestartableNats;
let master: NatsConnection;
let signer: ReturnType<typeof keyPairFromCreds>;
let work: string;
const peels: Peel[] = [];
/** A poll here may itself wait on a peel event that times out: that is a "not yet". */
const WAIT: WaitOptions = { ms: 20_000, ignoreErrors: true };

const connectMaster = () =>
  connect({
    servers: nats.url,
    caFile: nats.caFile,
    credsFile: join(nats.authDir, AUTH_FILES.masterCreds),
  });

/** Brings the server back and gives the test a fresh master connection. */
async function serverUp(): Promise<void> {
  await nats.start();
  const old = master;
  master = await connectMaster();
  await old.close().catch(() => {});
}

beforeAll(async () => {
  nats = await startRestartableNats();
  work = await mkdtemp(join(tmpdir(), "zester-peel-outbox-"));
  master = await connectMaster();
  await bootstrap(master);
  signer = keyPairFromCreds(await readFile(join(nats.authDir, AUTH_FILES.masterCreds), "utf8"));
});

afterAll(async () => {
  for (const p of peels) await p.stop();
  await master?.close();
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Least-privilege creds for a peel id, issued on first use (a restarted peel reuses them). */
async function peelCreds(id: string): Promise<string> {
  const path = peelCredsPath(nats.authDir, id);
  return (await statOrUndefined(path)) ? path : issuePeelCredsFile(nats.authDir, id);
}

async function newPeel(id: string, over: Partial<PeelConfig> = {}): Promise<{ peel: Peel; lines: string[] }> {
  const lines: string[] = [];
  const peel = new Peel({
    id,
    servers: nats.url,
    credsFile: await peelCreds(id),
    caFile: nats.caFile,
    authDir: nats.authDir,
    cacheDir: join(work, `cache-${id}`),
    customFactsDir: join(work, "no-custom-facts"),
    factsIntervalMs: 3_600_000,
    heartbeatMs: 3_600_000,
    connectRetryMs: 300,
    outboxRetryMs: 300,
    logger: {
      info: (m) => lines.push(`INFO ${m}`),
      warn: (m) => lines.push(`WARN ${m}`),
      error: (m) => lines.push(`ERROR ${m}`),
    },
    ...over,
  });
  peels.push(peel);
  return { peel, lines };
}

interface Flushed {
  count: number;
  bad: number;
  left: number;
}

/** Resolves once "outbox-flushed" events have reported `count` stored returns in total. */
function flushedTotal(peel: Peel, count: number, timeoutMs = 20_000): Promise<Flushed[]> {
  const seen: Flushed[] = [];
  return new Promise((resolve, reject) => {
    const on = (f: Flushed) => {
      seen.push(f);
      if (seen.reduce((n, s) => n + s.count, 0) >= count) {
        clearTimeout(t);
        peel.off("outbox-flushed", on);
        resolve(seen);
      }
    };
    const t = setTimeout(() => {
      peel.off("outbox-flushed", on);
      reject(
        new Error(`outbox flushed ${JSON.stringify(seen)}, not ${count} returns, within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    peel.on("outbox-flushed", on);
  });
}

function command(peel: string, fun: string, args: unknown[] = []) {
  return testCommand(signer, peel, fun, args);
}

async function returnInKv(jid: string, peel: string): Promise<PeelReturn | undefined> {
  const e = await (await openKv(master, "job-returns")).get(`${jid}.${peel}`);
  return e && e.operation === "PUT" ? decode<PeelReturn>(e.value) : undefined;
}

const outboxDir = (peel: Peel) => join(peel.cacheDir, "outbox");

async function outboxNames(peel: Peel): Promise<string[]> {
  return (await readdir(outboxDir(peel))).filter((n) => !n.startsWith(".")).sort();
}

/** Each test starts with the server up, so one failing test does not take the next ones down. */
async function ensureUp(): Promise<void> {
  if (!(await probeInfo(nats.port))) await serverUp();
}

/** Stops the server and waits until the peel has noticed. */
async function serverDown(...watching: Peel[]): Promise<void> {
  const noticed = watching.map((p) => nextEvent(p, "disconnected", 15_000));
  await nats.halt();
  await Promise.all(noticed);
}

describe("peel return outbox (real nats-server, stopped and started)", () => {
  it("a job that finishes while the server is down is stored in job-returns once it is back", async () => {
    await ensureUp();
    const { peel, lines } = await newPeel("ob-job-01");
    await peel.start();
    await peel.waitConnected(10_000);

    const cmd = command("ob-job-01", "cmd.run", ["sleep 2; echo done"]);
    const acked = nextEvent(peel, "ack", 15_000);
    master.publish(subjects.cmd("ob-job-01"), encode(cmd));
    await acked;
    const returned = nextEvent<PeelReturn>(peel, "return", 15_000);
    await serverDown(peel);

    const ret = await returned;
    expect(ret).toMatchObject({ jid: cmd.jid, success: true, return: "done", origin: "job" });
    const file = join(outboxDir(peel), `${cmd.jid}.json`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(decode<PeelReturn>(await readFile(file))).toMatchObject({ jid: cmd.jid, return: "done" });
    expect(lines).toContainEqual(expect.stringMatching(/return kept in the outbox/));

    const flushed = flushedTotal(peel, 1);
    await serverUp();
    await flushed;
    expect(await returnInKv(cmd.jid, "ob-job-01")).toMatchObject({
      jid: cmd.jid,
      peel: "ob-job-01",
      fun: "cmd.run",
      success: true,
      return: "done",
      origin: "job",
    });
    expect(existsSync(file)).toBe(false);
    expect(await outboxNames(peel)).toEqual([]);
    expect(lines).toContainEqual(expect.stringMatching(/^INFO outbox: stored 1 kept return/));
  }, 60_000);

  let statesPeel: Peel;
  const target = () => join(work, "target");

  it("applyLocal() while the server is down: the schedule return is stored after the reconnect", async () => {
    await ensureUp();
    await publishTestTree(master, 1, {
      "top.zy": "base:\n  '*':\n    - web\n",
      "web.zy": `hello:\n  file.managed:\n    - name: ${target()}/hello.txt\n    - content: "offline {{ facts.id }}"\n    - makedirs: true\n`,
    });
    ({ peel: statesPeel } = await newPeel("ob-states-01"));
    const synced = nextEvent(statesPeel, "states", 15_000);
    await statesPeel.start();
    await statesPeel.waitConnected(10_000);
    await synced;
    // Offline runs use the last-known-good settings: one resolution while connected makes them.
    expect((await statesPeel.settings.resolve()).source).toBe("bus");

    await serverDown(statesPeel);
    const ret = await statesPeel.applyLocal({ sls: ["web"] });
    expect(ret).toMatchObject({ success: true, origin: "schedule", fun: "state.apply" });
    expect(await readFile(join(target(), "hello.txt"), "utf8")).toBe("offline ob-states-01\n");
    expect(await outboxNames(statesPeel)).toEqual([`${ret.jid}.json`]);

    const flushed = flushedTotal(statesPeel, 1);
    await serverUp();
    await flushed;
    expect(await returnInKv(ret.jid, "ob-states-01")).toMatchObject({
      jid: ret.jid,
      success: true,
      origin: "schedule",
      fun: "state.apply",
      summary: { changed: 1 },
    });
    expect(await outboxNames(statesPeel)).toEqual([]);
  }, 60_000);

  it("a corrupt outbox file is moved aside and the other returns still flush", async () => {
    await ensureUp();
    await serverDown(statesPeel);
    const a = await statesPeel.applyLocal({ sls: ["web"] });
    const b = await statesPeel.applyLocal();
    // Older than both, so the flush meets it first: it must not block the others.
    const broken = newKsuid(new Date(Date.now() - 60_000));
    await writeFile(join(outboxDir(statesPeel), `${broken}.json`), '{"v":1,"jid":"trunc', { mode: 0o600 });
    expect(await outboxNames(statesPeel)).toEqual(
      [`${broken}.json`, `${a.jid}.json`, `${b.jid}.json`].sort(),
    );

    const flushed = flushedTotal(statesPeel, 2);
    await serverUp();
    const events = await flushed;
    expect(events.reduce((n, e) => n + e.bad, 0)).toBe(1);
    expect(await outboxNames(statesPeel)).toEqual([`${broken}.json.bad`]);
    expect(await returnInKv(a.jid, "ob-states-01")).toMatchObject({ jid: a.jid, origin: "schedule" });
    expect(await returnInKv(b.jid, "ob-states-01")).toMatchObject({
      jid: b.jid,
      fun: "state.highstate",
      origin: "schedule",
    });
    expect(await returnInKv(broken, "ob-states-01")).toBeUndefined();
    await statesPeel.stop();
  }, 60_000);

  it("kept returns survive a peel restart: a new Peel on the same cache dir stores and announces them", async () => {
    await ensureUp();
    const { peel: first } = await newPeel("ob-restart-01");
    await first.start();
    await first.waitConnected(10_000);

    const done = command("ob-restart-01", "cmd.run", ["sleep 1; echo four"]);
    const waiting = command("ob-restart-01", "cmd.run", ["sleep 30; echo never"]);
    const acks: string[] = [];
    const bothAcked = new Promise<void>((resolve) => {
      first.on("ack", (a: { jid: string }) => {
        acks.push(a.jid);
        if (acks.length === 2) resolve();
      });
    });
    master.publish(subjects.cmd("ob-restart-01"), encode(done));
    master.publish(subjects.cmd("ob-restart-01"), encode(waiting));
    await bothAcked;
    const returned = nextEvent<PeelReturn>(first, "return", 15_000);
    await serverDown(first);
    expect(await returned).toMatchObject({ jid: done.jid, return: "four" });
    // Stopping while disconnected aborts the second job: its canceled return is kept too.
    await first.stop();
    expect(await outboxNames(first)).toEqual([`${done.jid}.json`, `${waiting.jid}.json`].sort());

    await serverUp();
    const heard = new Map<string, PeelReturn>();
    const sub = master.subscribe("zester.job.*.return.ob-restart-01");
    const heardBoth = (async () => {
      for await (const m of sub) {
        const r = decode<PeelReturn>(m.data);
        heard.set(r.jid, r);
        if (heard.size === 2) return;
      }
    })();
    await master.flush();

    const { peel: second, lines } = await newPeel("ob-restart-01");
    const flushed = flushedTotal(second, 2);
    await second.start();
    await flushed;
    await heardBoth;
    sub.unsubscribe();
    expect(heard.get(done.jid)).toMatchObject({ success: true, return: "four", origin: "job" });
    expect(heard.get(waiting.jid)).toMatchObject({ success: false, origin: "job" });
    expect(await returnInKv(done.jid, "ob-restart-01")).toMatchObject({ success: true, return: "four" });
    expect(await returnInKv(waiting.jid, "ob-restart-01")).toMatchObject({
      success: false,
      error: expect.any(String),
    });
    expect(await outboxNames(second)).toEqual([]);
    expect(lines).toContainEqual(expect.stringMatching(/outbox: 2 return\(s\) from before the restart/));
  }, 60_000);

  it("keeps at most the configured number of returns, dropping the oldest with a warning", async () => {
    const warned: string[] = [];
    const dir = join(work, "bounded-outbox");
    const box = new ReturnOutbox(dir, {
      peel: "ob-bound-01",
      limit: 2,
      log: { info: () => {}, warn: (m) => warned.push(m), error: () => {} },
    });
    expect(await box.init()).toBe(0);
    const at = (s: number) => newKsuid(new Date(Date.now() - s * 1000));
    const rets: PeelReturn[] = [at(30), at(20), at(10)].map((jid) => ({
      jid,
      peel: "ob-bound-01",
      fun: "test.ping",
      success: true,
      origin: "schedule",
      started_at: new Date().toISOString(),
      finished_at: new Date().toISOString(),
    }));
    for (const r of rets) await box.add(r);
    expect(await box.list()).toEqual([rets[1]!.jid, rets[2]!.jid]);
    expect(warned).toEqual([expect.stringMatching(new RegExp(`dropped the oldest 1 \\(${rets[0]!.jid}\\)`))]);
  });
});

describe("enforcement schedule (the cached tree, applied on a timer, with or without NATS)", () => {
  const drifted = () => join(work, "enforced", "motd");

  it("corrects drift while the server is down, and its returns reach job-returns afterwards", async () => {
    await ensureUp();
    await publishTestTree(master, 7, {
      "top.zy": "base:\n  '*':\n    - motd\n",
      "motd.zy": `motd:\n  file.managed:\n    - name: ${drifted()}\n    - content: "managed by zester"\n    - makedirs: true\n`,
    });
    const { peel, lines } = await newPeel("sched-01", { enforce: { everyMs: 300, splayMs: 0 } });
    const synced = nextEvent(peel, "states", 15_000);
    await peel.start();
    await peel.waitConnected(10_000);
    await synced;
    // The first run while connected stores its return directly and leaves a settings snapshot.
    const first = await nextEvent<PeelReturn>(peel, "scheduled", 15_000);
    expect(first).toMatchObject({ origin: "schedule", fun: "state.highstate", success: true });
    expect(await readFile(drifted(), "utf8")).toBe("managed by zester\n");
    await waitFor(
      "the first scheduled return in job-returns",
      async () => returnInKv(first.jid, "sched-01"),
      WAIT,
    );

    await serverDown(peel);
    await writeFile(drifted(), "someone edited this by hand\n");
    const fixed = await waitFor(
      "the scheduler to correct the drift offline",
      async () => {
        const r = await nextEvent<PeelReturn>(peel, "scheduled", 5_000);
        return (r.summary?.changed ?? 0) > 0 ? r : undefined;
      },
      WAIT,
    );
    expect(fixed.success).toBe(true);
    expect(await readFile(drifted(), "utf8")).toBe("managed by zester\n");
    expect(lines).toContainEqual(
      expect.stringMatching(/^INFO enforcement run: 1 states, 1 changed, 0 failed$/),
    );
    expect(await outboxNames(peel)).toContain(`${fixed.jid}.json`);

    await serverUp();
    await waitFor(
      "the offline run's return in job-returns",
      async () => ((await returnInKv(fixed.jid, "sched-01"))?.summary?.changed === 1 ? true : undefined),
      WAIT,
    );
    await peel.stop();
    peels.splice(peels.indexOf(peel), 1);
  }, 60_000);

  it("in test mode it reports drift and changes nothing", async () => {
    await ensureUp();
    const target = join(work, "enforced", "issue");
    await publishTestTree(master, 8, {
      "top.zy": "base:\n  '*': []\n",
      "issue.zy": `issue:\n  file.managed:\n    - name: ${target}\n    - content: "managed"\n    - makedirs: true\n`,
    });
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, "drift left alone\n");
    const { peel, lines } = await newPeel("sched-02", {
      enforce: { everyMs: 300, splayMs: 0, test: true, sls: ["issue"] },
    });
    const synced = nextEvent(peel, "states", 15_000);
    await peel.start();
    await peel.waitConnected(10_000);
    await synced;
    const r = await waitFor(
      "a drift report",
      async () => {
        const ret = await nextEvent<PeelReturn>(peel, "scheduled", 5_000);
        return ret.summary ? ret : undefined;
      },
      WAIT,
    );
    expect(r).toMatchObject({ fun: "state.apply", success: true, summary: { changed: 0 } });
    expect(r.results).toEqual([expect.objectContaining({ id: "issue", pending: true })]);
    expect(await readFile(target, "utf8")).toBe("drift left alone\n");
    expect(lines).toContainEqual(
      expect.stringMatching(/^INFO drift check: 1 states, 1 would change, 0 failed$/),
    );
    await peel.stop();
    peels.splice(peels.indexOf(peel), 1);
  }, 60_000);

  it("skips a tick while the previous run is still going, and stop() waits for it", async () => {
    const warned: string[] = [];
    let runs = 0;
    let release: () => void = () => {};
    const scheduler = new EnforceScheduler(
      { everyMs: 20, splayMs: 0 },
      async () => {
        runs++;
        await new Promise<void>((r) => {
          release = r;
        });
        return {
          jid: newKsuid(),
          peel: "x",
          fun: "state.highstate",
          success: true,
          origin: "schedule",
          started_at: "",
          finished_at: "",
        };
      },
      { info: () => {}, warn: (m) => warned.push(m), error: () => {} },
    );
    scheduler.start();
    await new Promise((r) => setTimeout(r, 200));
    expect(runs).toBe(1);
    expect(warned.length).toBeGreaterThan(2);
    expect(warned[0]).toMatch(/skipped: the previous one is still running/);
    scheduler.halt();
    let idle = false;
    const waiting = scheduler.idle().then(() => {
      idle = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(idle).toBe(false);
    release();
    await waiting;
    await new Promise((r) => setTimeout(r, 100));
    expect(runs).toBe(1);
  });
});
