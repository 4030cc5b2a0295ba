/**
 * The master's job path over a real nats-server with real peels: dispatch, acks and returns,
 * unreachable peels, timeouts, kill, and two masters sharing the dispatch queue.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPairFromCreds } from "../src/auth/signing.js";
import { openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import { connect } from "../src/bus/connect.js";
import { kvStream, peelInboxPrefix, subjects } from "../src/bus/names.js";
import { isKsuid, newKsuid } from "../src/jobs/ksuid.js";
import { JobStore } from "../src/jobs/store.js";
import type { DispatchReply, JobRecord } from "../src/jobs/wire.js";
import {
  KILL_SUBJECT,
  type KillReply,
  type Master,
  type MasterConfig,
  type ResolveReply,
} from "../src/master/index.js";
import { Peel } from "../src/peel/peel.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

const quiet = { info: () => {}, warn: () => {}, error: () => {} };

/** A real Peel with its own cache dir and a custom `role` fact. */
async function startPeel(id: string, role: string): Promise<Peel> {
  const dir = join(work, id);
  await mkdir(join(dir, "facts"), { recursive: true });
  await writeFile(join(dir, "facts", "role.yaml"), `role:\n  value: ${role}\n`);
  const p = new Peel({
    id,
    servers: nats.url,
    credsFile: await nats.credsFile(id),
    caFile: nats.caFile,
    cacheDir: join(dir, "cache"),
    customFactsDir: join(dir, "facts"),
    trustedMasters: trusted,
    logger: quiet,
  });
  const seen = { acks: [] as string[], canceled: [] as string[], refused: [] as string[] };
  p.on("ack", (a: { jid: string }) => seen.acks.push(a.jid));
  p.on("canceled", (c: { jid: string }) => seen.canceled.push(c.jid));
  p.on("refused", (r: { reason: string }) => seen.refused.push(r.reason));
  peelEvents.set(id, seen);
  await p.start();
  await p.waitConnected();
  peels.push(p);
  return p;
}

/** Facts written with the peel's own creds: the only key it may write in `facts`. */
async function publishFacts(nats: StartedNats, id: string, facts: Record<string, unknown>): Promise<void> {
  const nc = await connect({
    servers: nats.url,
    credsFile: await nats.credsFile(id),
    caFile: nats.caFile,
    inboxPrefix: peelInboxPrefix(id),
  });
  const kv = await openKv(nc, "facts");
  await kv.put(id, new TextEncoder().encode(JSON.stringify({ id, ...facts })));
  await nc.drain();
}

let nats: StartedNats;
let admin: NatsConnection;
let store: JobStore;
const masters: Master[] = [];
const peels: Peel[] = [];
const peelEvents = new Map<string, { acks: string[]; canceled: string[]; refused: string[] }>();
let work: string;
let trusted: Set<string>;

async function startMaster(extra: Partial<MasterConfig> = {}): Promise<Master> {
  const m = await startTestMaster(nats, {
    statesDir: "/nonexistent/zester-states",
    unreachableAfterMs: 1_000,
    ...extra,
  });
  masters.push(m);
  return m;
}

async function dispatch(req: Record<string, unknown>): Promise<DispatchReply> {
  const reply = await admin.request(subjects.dispatch, encode({ args: [], kwargs: {}, ...req }), {
    timeout: 10_000,
  });
  return decode<DispatchReply>(reply.data);
}

/** Messages a stream has stored so far (its last sequence). */
async function streamLastSeq(stream: string): Promise<number> {
  const jsm = await jetstreamManager(admin);
  return (await jsm.streams.info(stream)).state.last_seq;
}

async function resolve(target: string): Promise<ResolveReply> {
  const reply = await admin.request(subjects.targetResolve, encode({ target }), { timeout: 5_000 });
  return decode<ResolveReply>(reply.data);
}

async function finished(jid: string, ms = 15_000): Promise<JobRecord> {
  return waitFor(
    `job ${jid} to finish`,
    async () => {
      const r = await store.get(jid);
      return r && r.record.status !== "running" ? r.record : undefined;
    },
    { ms },
  );
}

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-master-"));
  trusted = new Set([
    keyPairFromCreds(await readFile(await nats.credsFile("master"), "utf8")).getPublicKey(),
  ]);
  await startMaster({ id: "master-a" });
  admin = await nats.connectAs("admin");
  store = await JobStore.open(admin);
  await startPeel("web-01", "web");
  await startPeel("web-02", "web");
  await startPeel("db-01", "db");
  // A peel whose facts are known but which has never been online.
  await publishFacts(nats, "web-03", { os: "linux", role: "cold" });
  await waitFor("the master to index 4 peels", async () => (await resolve("*")).peels?.length === 4);
}, 60_000);

afterAll(async () => {
  for (const p of peels) await p.stop().catch(() => {});
  for (const m of masters) await m.stop();
  await admin?.drain().catch(() => {});
  await nats?.stop();
  await rm(work, { recursive: true, force: true });
});

describe("master dispatch", () => {
  it("resolves targets and reports syntax errors", async () => {
    expect((await resolve("web-0[12]")).peels).toEqual(["web-01", "web-02"]);
    expect((await resolve("G@role:db")).peels).toEqual(["db-01"]);
    const bad = await resolve("G@role:web and (");
    expect(bad.peels).toBeUndefined();
    expect(bad.error).toBeTruthy();
  });

  it("runs test.ping on three peels: three signed commands, three returns, job complete", async () => {
    const returnWrites = await streamLastSeq(kvStream("job-returns"));
    const reply = await dispatch({ target: "L@web-01,web-02,db-01", fun: "test.ping" });
    expect(reply.error).toBeUndefined();
    expect(isKsuid(reply.jid)).toBe(true);
    expect(reply.peels).toEqual(["db-01", "web-01", "web-02"]);
    const rec = await finished(reply.jid!);
    expect(rec.status).toBe("complete");
    expect(rec.peels).toEqual({ "db-01": "success", "web-01": "success", "web-02": "success" });
    expect(rec.finished_at).toBeTruthy();
    const returns = await store.returnsOf(reply.jid!, reply.peels!);
    expect([...returns.keys()].sort()).toEqual(["db-01", "web-01", "web-02"]);
    expect(returns.get("web-01")!.return).toBe(true);
    // Each return is stored once, by its peel: the master writes no copy of its own.
    expect((await streamLastSeq(kvStream("job-returns"))) - returnWrites).toBe(3);
    expect(await store.active()).not.toContainEqual(expect.objectContaining({ jid: reply.jid }));
    for (const ev of peelEvents.values()) expect(ev.refused).toEqual([]);
    expect(peelEvents.get("web-02")!.acks).toContain(reply.jid);
  });

  it("refuses a target that matches nothing with a clear error", async () => {
    const reply = await dispatch({ target: "nosuch-*", fun: "test.ping" });
    expect(reply.jid).toBeUndefined();
    expect(reply.error).toBe("no peels match nosuch-*");
    const bad = await dispatch({ target: "web-01", fun: "ping" });
    expect(bad.error).toMatch(/invalid function/);
  });

  it("marks a peel with facts but no heartbeat unreachable well before the timeout: job partial", async () => {
    const t0 = Date.now();
    const reply = await dispatch({ target: "web-0*", fun: "test.ping", timeout_s: 30 });
    expect(reply.peels).toEqual(["web-01", "web-02", "web-03"]);
    const rec = await finished(reply.jid!);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(rec.status).toBe("partial");
    expect(rec.peels).toEqual({ "web-01": "success", "web-02": "success", "web-03": "unreachable" });
  });

  it("a job whose only peel is offline fails with the peel unreachable", async () => {
    const reply = await dispatch({ target: "web-03", fun: "test.ping" });
    const rec = await finished(reply.jid!);
    expect(rec.status).toBe("failed");
    expect(rec.peels).toEqual({ "web-03": "unreachable" });
  });

  it("a peel failing and another succeeding make the job partial", async () => {
    const reply = await dispatch({ target: "L@web-01,db-01", fun: "test.ping" });
    await finished(reply.jid!);
    const fail = await dispatch({ target: "db-01", fun: "test.fail_without_changes" });
    const rec = await finished(fail.jid!);
    expect(rec.status).toBe("failed");
    expect(rec.peels["db-01"]).toBe("failed");
    expect((await store.getReturn(fail.jid!, "db-01"))?.success).toBe(false);
  });

  it("times out a job whose peel acked but did not return", async () => {
    const reply = await dispatch({
      target: "db-01",
      fun: "test.sleep",
      kwargs: { length: 3 },
      timeout_s: 1,
    });
    const rec = await finished(reply.jid!);
    expect(rec.status).toBe("timeout");
    expect(rec.peels).toEqual({ "db-01": "timeout" });
  });

  it("kills a running job: cancel sent to the peels still working, job canceled", async () => {
    const reply = await dispatch({
      target: "L@web-01,web-02",
      fun: "test.sleep",
      kwargs: { length: 20 },
      timeout_s: 30,
    });
    const jid = reply.jid!;
    await waitFor("both acks", async () => {
      const r = await store.get(jid);
      return r && Object.values(r.record.peels).every((s) => s === "acked") ? true : undefined;
    });
    expect((await store.active()).map((a) => a.jid)).toContain(jid);
    const k = decode<KillReply>(
      (await admin.request(KILL_SUBJECT, encode({ jid }), { timeout: 5_000 })).data,
    );
    expect(k.error).toBeUndefined();
    expect(k.status).toBe("canceled");
    expect(k.canceled).toEqual(["web-01", "web-02"]);
    const rec = await finished(jid);
    expect(rec.status).toBe("canceled");
    expect(rec.peels).toEqual({ "web-01": "canceled", "web-02": "canceled" });
    await waitFor("peels to see the cancel", () =>
      [...peelEvents.values()].filter((e) => e.canceled.includes(jid)).length === 2 ? true : undefined,
    );
    expect((await store.active()).map((a) => a.jid)).not.toContain(jid);
    const again = decode<KillReply>(
      (await admin.request(KILL_SUBJECT, encode({ jid }), { timeout: 5_000 })).data,
    );
    expect(again.error).toMatch(/already finished \(canceled\)/);
  });

  it("publishes a master event when a job is done", async () => {
    const sub = admin.subscribe(subjects.masterEvents);
    const reply = await dispatch({ target: "web-02", fun: "test.ping" });
    let ev: { subject: string; status: string } | undefined;
    const timer = setTimeout(() => sub.unsubscribe(), 10_000);
    for await (const m of sub) {
      if (m.subject === `zester.event._master.job.${reply.jid}.done`) {
        const e = decode<{ tag: string; origin: string; data: { status: string } }>(m.data);
        expect([e.origin, e.tag]).toEqual(["_master", `job/${reply.jid}/done`]);
        ev = { subject: m.subject, status: e.data.status };
        break;
      }
    }
    clearTimeout(timer);
    sub.unsubscribe();
    expect(ev?.status).toBe("complete");
  });

  it("finishes jobs whose master went away once their deadline has passed", async () => {
    const mstore = await JobStore.open(masters[0]!.connection);
    const base = {
      fun: "test.ping",
      args: [],
      kwargs: {},
      target: "*",
      test: false,
      timeout_s: 5,
      status: "running" as const,
      master: "gone-master",
    };
    const oldJid = newKsuid(new Date(Date.now() - 120_000));
    await mstore.create({
      ...base,
      jid: oldJid,
      created_at: new Date(Date.now() - 120_000).toISOString(),
      peels: { "web-01": "acked", "web-02": "pending", "db-01": "success" },
    });
    await mstore.putReturn({
      jid: oldJid,
      peel: "web-01",
      fun: "test.ping",
      success: true,
      return: true,
      started_at: new Date().toISOString(),
      finished_at: new Date().toISOString(),
    });
    const freshJid = newKsuid();
    await mstore.create({
      ...base,
      jid: freshJid,
      created_at: new Date().toISOString(),
      peels: { "web-01": "acked" },
    });

    // Killing a job whose master is gone is done by a master that is still here.
    const orphanKill = newKsuid();
    await mstore.create({
      ...base,
      jid: orphanKill,
      created_at: new Date().toISOString(),
      peels: { "web-01": "acked", "db-01": "success" },
    });
    const k = decode<KillReply>(
      (await admin.request(KILL_SUBJECT, encode({ jid: orphanKill }), { timeout: 5_000 })).data,
    );
    expect(k).toMatchObject({ jid: orphanKill, status: "canceled", canceled: ["web-01"] });
    expect((await store.get(orphanKill))!.record.peels).toEqual({ "web-01": "canceled", "db-01": "success" });

    const swept = await masters[0]!.sweepOrphanJobs(1_000);
    expect(swept).toContain(oldJid);
    expect(swept).not.toContain(freshJid);
    const rec = (await store.get(oldJid))!.record;
    expect(rec.status).toBe("partial");
    expect(rec.peels).toEqual({ "web-01": "success", "web-02": "unreachable", "db-01": "success" });
    const active = (await store.active()).map((a) => a.jid);
    expect(active).not.toContain(oldJid);
    expect(active).toContain(freshJid);
    await mstore.update(freshJid, (r) => ({ ...r, status: "canceled" }));
    await mstore.removeActive(freshJid);
  });

  it("two masters share dispatch: every job is handled by exactly one of them", async () => {
    const b = await startMaster({ id: "master-b" });
    await waitFor("master-b to index the fleet", () => (b.fleet.index.size === 4 ? true : undefined));
    const jids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const reply = await dispatch({ target: "web-01", fun: "test.ping" });
      jids.push(reply.jid!);
    }
    const owners = new Map<string, number>();
    for (const jid of jids) {
      const rec = await finished(jid);
      expect(rec.status).toBe("complete");
      owners.set(rec.master, (owners.get(rec.master) ?? 0) + 1);
    }
    expect([...owners.keys()].sort()).toEqual(["master-a", "master-b"]);
    // Each jid reached the peel exactly once: no master handled a request another one took.
    const got = peelEvents.get("web-01")!.acks.filter((j) => jids.includes(j));
    expect(got.length).toBe(12);
    expect(new Set(got).size).toBe(12);
  });
});
