/**
 * Replicas on a real 3-node JetStream cluster: `auto` gives every bucket and stream R3, an
 * explicit count moves existing ones (the R1 → R3 move of docs/scale.md) without losing data,
 * and the moved bucket keeps serving reads and writes with its leader node killed.
 */
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { BUCKET_NAMES, kvStream, STREAM_NAMES } from "../src/bus/names.js";
import { parseReplicas, reportedClusterSize } from "../src/bus/replicas.js";
import { startNats } from "./support/nats.js";
import { type StartedCluster, startNatsCluster } from "./support/nats-cluster.js";
import { waitFor } from "./support/wait.js";

const ALL = [...BUCKET_NAMES.map((b) => kvStream(b)), ...STREAM_NAMES];

async function replicasOf(jsm: JetStreamManager): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of ALL) out[name] = (await jsm.streams.info(name)).config.num_replicas;
  return out;
}

const every = (n: number) => Object.fromEntries(ALL.map((s) => [s, n]));

describe("replicas setting", () => {
  it("parses auto and 1-5 and names the bad value otherwise", () => {
    expect(parseReplicas("auto")).toBe("auto");
    expect(parseReplicas("3")).toBe(3);
    expect(() => parseReplicas("7")).toThrow(/invalid replicas "7": expected auto or a count from 1 to 5/);
    expect(() => parseReplicas("three")).toThrow(/invalid replicas "three"/);
  });

  it("is 1 on a single server", async () => {
    const nats = await startNats();
    const nc = await nats.connectAs("master");
    try {
      expect(reportedClusterSize(nc)).toBe(1);
      const r = await bootstrap(nc);
      expect(r.replicas).toBe(1);
      expect(await replicasOf(await jetstreamManager(nc))).toEqual(every(1));
    } finally {
      await nc.close();
      await nats.stop();
    }
  });
});

describe("a 3-node cluster", () => {
  let cluster: StartedCluster;
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  beforeAll(async () => {
    cluster = await startNatsCluster(3);
    nc = await cluster.connectAs("master");
    jsm = await jetstreamManager(nc);
  }, 60_000);
  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
  });

  it("creates every bucket and stream at R3 with auto on a fresh cluster", async () => {
    const r = await bootstrap(nc);
    expect(r.replicas).toBe(3);
    expect(r.created).toHaveLength(ALL.length);
    expect(await replicasOf(jsm)).toEqual(every(3));
    for (const name of ALL) await jsm.streams.delete(name);
  }, 60_000);

  it("moves an R1 deployment to R3 without losing data, and survives its leader's loss", async () => {
    expect(reportedClusterSize(nc)).toBe(3);
    // An R1 deployment: what bootstrap made before replicas existed.
    const r1 = await bootstrap(nc, { replicas: 1 });
    expect(r1.created).toHaveLength(ALL.length);
    expect(await replicasOf(jsm)).toEqual(every(1));
    const jobs = await openKv(nc, "jobs");
    await jobs.put("before-the-move", new TextEncoder().encode("kept"));

    // `auto` chooses R3 here but never changes what exists: it reports the difference.
    const auto = await bootstrap(nc);
    expect(auto.replicas).toBe(3);
    expect(auto.moved).toEqual([]);
    expect(auto.mismatched.map((m) => [m.stream, m.from, m.to])).toEqual(ALL.map((s) => [s, 1, 3]));
    expect(await replicasOf(jsm)).toEqual(every(1));

    // The move: a master started with an explicit count.
    const moved = await bootstrap(nc, { replicas: 3 });
    expect(moved.moved.map((m) => m.stream)).toEqual(ALL);
    expect(await replicasOf(jsm)).toEqual(every(3));
    // Every stream has two followers that caught up.
    for (const name of ALL) {
      await waitFor(`${name} to have two current replicas`, async () => {
        const info = await jsm.streams.info(name);
        const peers = info.cluster?.replicas ?? [];
        return peers.length === 2 && peers.every((p) => p.current);
      });
    }
    expect(new TextDecoder().decode((await jobs.get("before-the-move"))?.value)).toBe("kept");

    // A second start with the same count changes nothing.
    expect((await bootstrap(nc, { replicas: 3 })).moved).toEqual([]);

    // Kill the node that leads the jobs bucket: the bucket elects a new leader and keeps working.
    const leader = (await jsm.streams.info(kvStream("jobs"))).cluster?.leader;
    const index = cluster.nodes.findIndex((n) => n.name === leader);
    expect(index).toBeGreaterThanOrEqual(0);
    await cluster.kill(index);
    const read = await waitFor(
      "the jobs bucket to answer after its leader died",
      async () => {
        await jobs.put("after-the-kill", new TextEncoder().encode("written"));
        return (await jobs.get("before-the-move"))?.value;
      },
      { ms: 30_000, intervalMs: 250, ignoreErrors: true },
    );
    expect(new TextDecoder().decode(read)).toBe("kept");
    expect(new TextDecoder().decode((await jobs.get("after-the-kill"))?.value)).toBe("written");
  }, 120_000);
});
