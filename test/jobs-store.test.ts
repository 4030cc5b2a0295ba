/** JobStore against a real nats-server: create, CAS updates, listing, the active index, returns. */
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrap } from "../src/bus/bootstrap.js";
import { newKsuid, parseKsuid } from "../src/jobs/ksuid.js";
import { JobConflictError, JobStore, settledJobStatus } from "../src/jobs/store.js";
import type { JobRecord, PeelReturn } from "../src/jobs/wire.js";
import { type StartedNats, startNats } from "./support/nats.js";

let nats: StartedNats;
let nc: NatsConnection;
let store: JobStore;

function record(jid: string, over: Partial<JobRecord> = {}): JobRecord {
  return {
    jid,
    fun: "test.ping",
    args: [],
    kwargs: {},
    target: "*",
    test: false,
    timeout_s: 60,
    status: "running",
    peels: { a: "pending", b: "pending" },
    created_at: new Date().toISOString(),
    master: "m1",
    ...over,
  };
}

beforeAll(async () => {
  nats = await startNats();
  nc = await nats.connectAs("master");
  await bootstrap(nc);
  store = await JobStore.open(nc);
}, 30_000);

afterAll(async () => {
  await nc?.drain().catch(() => {});
  await nats?.stop();
});

describe("settledJobStatus", () => {
  it("derives the job status from settled peels", () => {
    expect(settledJobStatus({ a: "success", b: "success" })).toBe("complete");
    expect(settledJobStatus({ a: "failed", b: "unreachable" })).toBe("failed");
    expect(settledJobStatus({ a: "success", b: "unreachable" })).toBe("partial");
    expect(settledJobStatus({ a: "success", b: "failed" })).toBe("partial");
    expect(settledJobStatus({ a: "success", b: "timeout" })).toBe("timeout");
    expect(settledJobStatus({ a: "timeout", b: "canceled" })).toBe("canceled");
  });
});

describe("JobStore", () => {
  it("creates a record once, with its active entry", async () => {
    const jid = newKsuid();
    const created = await store.create(record(jid));
    expect((await store.get(jid))?.record).toEqual(created.record);
    expect((await store.active()).map((a) => a.jid)).toContain(jid);
    await expect(store.create(record(jid))).rejects.toThrow();
    await store.removeActive(jid);
    expect((await store.active()).map((a) => a.jid)).not.toContain(jid);
    expect(await store.get(newKsuid())).toBeUndefined();
  });

  it("refuses a write based on a stale revision and retries read-modify-write", async () => {
    const jid = newKsuid();
    const s = await store.create(record(jid));
    const first = await store.write({ ...s.record, peels: { a: "acked", b: "pending" } }, s.revision);
    await expect(store.write({ ...s.record, status: "complete" }, s.revision)).rejects.toBeInstanceOf(
      JobConflictError,
    );
    const updated = await store.update(jid, (r) => {
      r.peels.b = "acked";
      return r;
    });
    expect(updated?.record.peels).toEqual({ a: "acked", b: "acked" });
    expect(updated!.revision).toBeGreaterThan(first.revision);
    const untouched = await store.update(jid, () => undefined);
    expect(untouched?.revision).toBe(updated!.revision);
  });

  it("lists the most recent jobs first, honouring the limit", async () => {
    const old = newKsuid(new Date(Date.now() - 3600_000));
    const mid = newKsuid(new Date(Date.now() - 60_000));
    const recent = newKsuid(new Date(Date.now() + 60_000));
    for (const j of [mid, old, recent]) await store.create(record(j));
    const top2 = await store.list({ limit: 2 });
    expect(top2).toHaveLength(2);
    expect(top2[0]!.jid).toBe(recent);
    const all = (await store.list({ limit: 100 })).map((r) => r.jid);
    expect(all.indexOf(recent)).toBe(0);
    expect(all.indexOf(mid)).toBeGreaterThan(0);
    expect(all.indexOf(old)).toBe(all.length - 1);
    // Newest second first; within one second, by creation time (the next test).
    const seconds = all.map((j) => parseKsuid(j).timestamp.getTime());
    expect(seconds).toEqual([...seconds].sort((a, b) => b - a));
  });

  it("orders jobs created in the same second by their creation time, also across the limit", async () => {
    // One second, five jobs: their KSUIDs sort at random, their created_at (ms) does not.
    const at = new Date(Math.floor(Date.now() / 1000) * 1000 + 7_200_000);
    const jids = Array.from({ length: 5 }, () => newKsuid(at));
    for (let i = 0; i < jids.length; i++) {
      await store.create({ ...record(jids[i]!), created_at: new Date(at.getTime() + i * 10).toISOString() });
    }
    const newestFirst = [...jids].reverse();
    expect((await store.list({ limit: 5 })).map((r) => r.jid)).toEqual(newestFirst);
    expect((await store.list({ limit: 2 })).map((r) => r.jid)).toEqual(newestFirst.slice(0, 2));
  });

  it("stores returns per peel and reads them back by job", async () => {
    const jid = newKsuid();
    const ret = (peel: string, success: boolean): PeelReturn => ({
      jid,
      peel,
      fun: "test.ping",
      success,
      return: success,
      started_at: new Date().toISOString(),
      finished_at: new Date().toISOString(),
    });
    await store.putReturn(ret("a", true));
    await store.putReturn(ret("b", false));
    await store.putReturn({ ...ret("a", true), jid: newKsuid() });
    // Peels without a return are left out; another job's return under the same peel is not read.
    const got = await store.returnsOf(jid, ["a", "b", "c"]);
    expect([...got.keys()].sort()).toEqual(["a", "b"]);
    expect(got.get("b")?.success).toBe(false);
    expect((await store.getReturn(jid, "a"))?.return).toBe(true);
    expect(await store.getReturn(jid, "zz")).toBeUndefined();
  });
});
