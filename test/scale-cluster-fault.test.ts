/**
 * One of three nodes of a real JetStream cluster (R3 by `auto`) is killed in the middle of a
 * 50-peel job: no return is lost, the job ends `complete`, and dispatch keeps working on the
 * two nodes left. The node killed is the one leading `KV_job-returns`, the worst one to lose.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decode, encode } from "../src/bus/codec.js";
import { kvStream, subjects } from "../src/bus/names.js";
import { JobStore } from "../src/jobs/store.js";
import type { DispatchReply, JobRecord } from "../src/jobs/wire.js";
import type { Master } from "../src/master/index.js";
import { startTestFleet, type TestFleet } from "./support/fleet.js";
import { startTestMaster } from "./support/master.js";
import { type StartedCluster, startNatsCluster } from "./support/nats-cluster.js";
import { waitFor } from "./support/wait.js";

const PEELS = 50;
let cluster: StartedCluster;
let master: Master;
let fleet: TestFleet;
let admin: NatsConnection;
let store: JobStore;

beforeAll(async () => {
  cluster = await startNatsCluster(3);
  master = await startTestMaster(cluster, { id: "cluster-m", statesDir: "/nonexistent/zester-states" });
  fleet = await startTestFleet(cluster, PEELS, { prefix: "cl" });
  admin = await cluster.connectAs("admin");
  store = await JobStore.open(await cluster.connectAs("master"));
  await waitFor("the master to see the fleet", () => fleet.ids.every((id) => master.fleet.isOnline(id)), {
    ms: 60_000,
  });
}, 300_000);

afterAll(async () => {
  await fleet?.stop();
  await master?.stop();
  await admin?.close();
  await cluster?.stop();
});

async function dispatch(fun: string, args: unknown[]): Promise<string> {
  const reply = decode<DispatchReply>(
    (
      await admin.request(
        subjects.dispatch,
        encode({ target: "cl-*", fun, args, kwargs: {}, timeout_s: 60 }),
        {
          timeout: 15_000,
        },
      )
    ).data,
  );
  if (!reply.jid) throw new Error(`dispatch failed: ${reply.error}`);
  return reply.jid;
}

async function finished(jid: string): Promise<JobRecord> {
  return waitFor(
    `job ${jid} to finish`,
    async () => {
      const r = await store.get(jid);
      return r && r.record.status !== "running" ? r.record : undefined;
    },
    { ms: 60_000, ignoreErrors: true },
  );
}

describe("a 3-node cluster loses a node during a 50-peel job", () => {
  it("loses no return, completes the job, and keeps dispatching", async () => {
    const jsm = await jetstreamManager(admin);
    const info = await jsm.streams.info(kvStream("job-returns"));
    expect(info.config.num_replicas).toBe(3);
    const leader = cluster.nodes.findIndex((n) => n.name === info.cluster?.leader);
    expect(leader).toBeGreaterThanOrEqual(0);

    const jid = await dispatch("test.sleep", [3]);
    await waitFor(
      "every peel to ack",
      async () => Object.values((await store.get(jid))?.record.peels ?? {}).every((st) => st === "acked"),
      { ms: 30_000 },
    );
    await cluster.kill(leader);

    const rec = await finished(jid);
    expect(rec.status).toBe("complete");
    // Direct gets may be answered by a follower that is still catching up: wait for all 50.
    const returns = await waitFor(
      "every return to be readable",
      async () => {
        const got = await store.returnsOf(jid, fleet.ids);
        return got.size === PEELS ? got : undefined;
      },
      { ms: 30_000, ignoreErrors: true, context: () => cluster.output().slice(-2000) },
    );
    expect([...returns.values()].every((r) => r.success)).toBe(true);

    const next = await finished(await dispatch("test.ping", []));
    expect(next.status).toBe("complete");
    expect(Object.keys(next.peels)).toHaveLength(PEELS);
  }, 180_000);
});
