/**
 * Job records that tell the truth through faults, on a real server with real peels and masters:
 * a stopped peel is unreachable at once, a late return corrects a finished record, leases move
 * on a clean stop and lapse after a crash, and a master killed with SIGKILL has its job finished
 * by another master while an attached CLI follows it to its real end.
 */
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import { subjects } from "../src/bus/names.js";
import { JobStore } from "../src/jobs/store.js";
import type { DispatchReply, JobRecord } from "../src/jobs/wire.js";
import { KILL_SUBJECT, type KillReply, type Master } from "../src/master/index.js";
import { Lease } from "../src/master/lease.js";
import { ROOT } from "./support/built.js";
import { fleetCliOptions, runCli } from "./support/cli.js";
import { startTestFleet, type TestFleet } from "./support/fleet.js";
import { startTestMaster } from "./support/master.js";
import { startMasterProcess } from "./support/master-process.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

const ZESTER = join(ROOT, "dist/bin/zester.js");

let nats: StartedNats;
let admin: NatsConnection;
let store: JobStore;
let fleet: TestFleet;
const masters: Master[] = [];

async function master(id: string, extra: Parameters<typeof startTestMaster>[1] = {}): Promise<Master> {
  const m = await startTestMaster(nats, {
    id,
    statesDir: "/nonexistent/zester-states",
    unreachableAfterMs: 1_000,
    ...extra,
  });
  masters.push(m);
  return m;
}

async function dispatch(req: Record<string, unknown>): Promise<string> {
  const reply = decode<DispatchReply>(
    (await admin.request(subjects.dispatch, encode({ args: [], kwargs: {}, ...req }), { timeout: 15_000 }))
      .data,
  );
  if (!reply.jid) throw new Error(`dispatch failed: ${reply.error}`);
  return reply.jid;
}

async function finished(jid: string, ms = 20_000): Promise<JobRecord> {
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
  admin = await nats.connectAs("admin");
  store = await JobStore.open(await nats.connectAs("master"));
  fleet = await startTestFleet(nats, 5, { prefix: "fo" });
}, 120_000);

afterAll(async () => {
  for (const m of masters) await m.stop().catch(() => {});
  await fleet?.stop();
  await admin?.close();
  await nats?.stop();
});

describe("truthful records", () => {
  let m1: Master;
  beforeAll(async () => {
    m1 = await master("m1");
    await waitFor("m1 to see the fleet", () => fleet.ids.every((id) => m1.fleet.isOnline(id)));
  });

  it("a stopped peel deletes its heartbeat: a job to it is unreachable, not a timeout", async () => {
    const gone = fleet.peels[4]!;
    await gone.stop();
    await waitFor("the master to see fo-004 offline", () => !m1.fleet.isOnline("fo-004"), { ms: 5_000 });
    const jid = await dispatch({ target: "fo-004", fun: "test.ping", timeout_s: 30 });
    const rec = await finished(jid, 15_000);
    expect(rec.peels).toEqual({ "fo-004": "unreachable" });
  });

  it("a return that arrives after the job finished corrects its record", async () => {
    // fo-004 (stopped above) is back as a peel whose return reaches the bus only after its job
    // ended, as an outbox flush after an outage does: driven by hand, with fo-004's own creds.
    const nc = await nats.connectAs("fo-004");
    try {
      const beats = await openKv(nc, "peel-heartbeat");
      await beats.put("fo-004", encode({ peel: "fo-004", ts: new Date().toISOString(), version: "0.1.0" }));
      await waitFor("the master to see fo-004 online", () => m1.fleet.isOnline("fo-004"));
      const command = new Promise<string>((resolve) =>
        nc.subscribe(subjects.cmd("fo-004"), {
          max: 1,
          callback: (_err, m) => resolve(decode<{ jid: string }>(m.data).jid),
        }),
      );
      const jid = await dispatch({ target: "fo-004", fun: "test.ping", timeout_s: 1 });
      expect(await command).toBe(jid);
      const first = await finished(jid);
      expect(first).toMatchObject({ status: "timeout", peels: { "fo-004": "timeout" } });

      const now = new Date().toISOString();
      const ret = {
        jid,
        peel: "fo-004",
        fun: "test.ping",
        success: true,
        return: true,
        origin: "job",
        started_at: now,
        finished_at: now,
      };
      await (await openKv(nc, "job-returns")).put(`${jid}.fo-004`, encode(ret));
      nc.publish(subjects.jobReturn(jid, "fo-004"), encode(ret));
      const corrected = await waitFor("the late return to correct the record", async () => {
        const r = (await store.get(jid))?.record;
        return r?.peels["fo-004"] === "success" ? r : undefined;
      });
      expect(corrected.status).toBe("complete");
      await beats.delete("fo-004");
    } finally {
      await nc.close();
    }
  });
});

describe("leases", () => {
  let leases: KV;
  beforeAll(async () => {
    leases = await openKv(await nats.connectAs("master"), "leases");
  });

  it("a dead holder's lease lapses once its value stops changing, not before", async () => {
    const a = new Lease(leases, "test-lapse", "holder-a");
    const b = new Lease(leases, "test-lapse", "holder-b", 400);
    expect(await a.acquire()).toBe(true);
    expect(await b.acquire()).toBe(false);
    await new Promise((r) => setTimeout(r, 250));
    expect(await a.acquire()).toBe(true); // a renewal restarts b's clock
    await new Promise((r) => setTimeout(r, 250));
    expect(await b.acquire()).toBe(false);
    await new Promise((r) => setTimeout(r, 500));
    expect(await b.acquire()).toBe(true);
    expect(await b.currentHolder()).toBe("holder-b");
    expect(await a.acquire()).toBe(false);
  });

  it("a master that stops cleanly hands its publisher leases over at once", async () => {
    const holder = masters.find((m) => m.isStatePublisher)!;
    expect(holder).toBeDefined();
    // No periodic retry within the test: only the release can make it take over.
    const heir = await master("heir", { leaseRenewMs: 600_000 });
    expect(heir.isStatePublisher).toBe(false);
    await holder.stop();
    masters.splice(masters.indexOf(holder), 1);
    await waitFor("the heir to take both leases", () => heir.isStatePublisher && heir.isSettingsPublisher, {
      ms: 5_000,
    });
  });
});

describe("kill -9 of the master that owns a job", () => {
  it("another master finishes it after the peels' returns, and an attached CLI exits 0 with every result", async () => {
    for (const m of masters.splice(0)) await m.stop();
    const crash = await startMasterProcess(nats, [
      "--id",
      "doomed",
      "--unreachable-after",
      "1",
      "--states-dir",
      "/nonexistent",
    ]);
    try {
      const targets = "L@fo-000,fo-001,fo-002,fo-003";
      await waitFor(
        "the doomed master to index the fleet",
        async () => {
          const r = decode<{ peels?: string[] }>(
            (await admin.request(subjects.targetResolve, encode({ target: targets }), { timeout: 5_000 }))
              .data,
          );
          return r.peels?.length === 4;
        },
        { ignoreErrors: true },
      );
      const cli = runCli(
        ZESTER,
        [targets, "test.sleep", "2", "--format", "json"],
        fleetCliOptions(nats, ROOT),
      );
      const rec = await waitFor("the job to be recorded", async () =>
        (await store.list({ limit: 5 })).find((r) => r.fun === "test.sleep" && r.status === "running"),
      );
      expect(rec.master).toBe("doomed");
      await crash.kill("SIGKILL");
      const rescuer = await master("rescuer");

      const r = await cli;
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
      const runs = JSON.parse(r.stdout) as { peel_id: string; success: boolean; status: string }[];
      expect(runs.map((x) => [x.peel_id, x.success, x.status])).toEqual(
        ["fo-000", "fo-001", "fo-002", "fo-003"].map((p) => [p, true, "success"]),
      );
      const done = (await store.get(rec.jid))!.record;
      expect(done.status).toBe("complete");
      expect(done.master).toBe(rescuer.id);
      const returns = await store.returnsOf(rec.jid, Object.keys(done.peels));
      const lastReturn = Math.max(...[...returns.values()].map((x) => Date.parse(x.finished_at)));
      // The promise of docs/scale.md: finished within 15 s of the last return.
      expect(Date.parse(done.finished_at!) - lastReturn).toBeLessThan(15_000);
    } finally {
      await crash.kill("SIGKILL");
    }
  }, 90_000);

  it("job kill is answered by a live master while the dead owner still looks alive", async () => {
    const crash = await startMasterProcess(nats, [
      "--id",
      "doomed-2",
      "--unreachable-after",
      "1",
      "--states-dir",
      "/nonexistent",
    ]);
    try {
      // Only the doomed master takes dispatches while it runs alone.
      for (const m of masters.splice(0)) await m.stop();
      const jid = await waitFor(
        "a dispatch through the doomed master",
        () => dispatch({ target: "fo-001", fun: "test.sleep", args: [30], timeout_s: 60 }),
        { ignoreErrors: true },
      );
      await waitFor("fo-001 to ack", async () => (await store.get(jid))?.record.peels["fo-001"] === "acked");
      await crash.kill("SIGKILL");
      await master("survivor");
      const reply = decode<KillReply>(
        (await admin.request(KILL_SUBJECT, encode({ jid }), { timeout: 10_000 })).data,
      );
      expect(reply).toMatchObject({ jid, status: "canceled", canceled: ["fo-001"] });
      expect((await store.get(jid))!.record.status).toBe("canceled");
    } finally {
      await crash.kill("SIGKILL");
    }
  }, 60_000);
});
