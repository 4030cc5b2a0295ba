/**
 * Queued commands (`--queue <ttl>`, beyond Salt, which drops commands for offline peels): a
 * master keeps the signed command for a peel that is offline when the job is sent; the peel runs
 * it once when it connects within the TTL and its return joins the job; one that does not is
 * recorded `expired`. Real nats-server, real master, real peels (stopped and started again on
 * the same cache dir, so their job-id store persists).
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadAccountSigner } from "../src/auth/auth-dir.js";
import { issueUserCreds } from "../src/auth/hierarchy.js";
import { peelPermissions } from "../src/auth/permissions.js";
import { keyPairFromCreds, signCommand, verifyCommand } from "../src/auth/signing.js";
import { openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import { kvDirectGetSubject, subjects } from "../src/bus/names.js";
import { parseTargetArgs } from "../src/cli/target.js";
import { enqueueCommand, readPeelQueue } from "../src/jobs/peel-queue.js";
import { JobStore } from "../src/jobs/store.js";
import type { Command, DispatchReply, DispatchRequest, JobRecord } from "../src/jobs/wire.js";
import type { Master } from "../src/master/master.js";
import { Peel } from "../src/peel/peel.js";
import { runMain } from "./support/cli.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

const quiet = { info: () => {}, warn: () => {}, error: () => {} };
const ID = "q-01";

let nats: StartedNats;
let work: string;
let master: Master;
let admin: NatsConnection;
let store: JobStore;
let queueKv: KV;
let peel: Peel | undefined;
const logs: string[] = [];

/** A peel on the same cache dir each time; `onQueue` sees what it did with its queue at connect. */
async function startPeel(onQueue?: (q: { ran: string[]; skipped: string[] }) => void): Promise<Peel> {
  const p = new Peel({
    id: ID,
    servers: nats.url,
    credsFile: await nats.credsFile(ID),
    caFile: nats.caFile,
    cacheDir: join(work, ID),
    customFactsDir: join(work, "no-facts"),
    trustedMasters: new Set([master.publicKey]),
    logger: quiet,
  });
  if (onQueue) p.on("queue", onQueue);
  await p.start();
  await p.waitConnected();
  peel = p;
  return p;
}

async function stopPeel(): Promise<void> {
  await peel?.stop();
  peel = undefined;
  await waitFor("the master to see the peel offline", () => !master.fleet.isOnline(ID) || undefined);
}

async function dispatch(req: Omit<DispatchRequest, "target" | "kwargs">): Promise<string> {
  const reply = decode<DispatchReply>(
    (await admin.request(subjects.dispatch, encode({ target: ID, kwargs: {}, ...req }), { timeout: 10_000 }))
      .data,
  );
  if (!reply.jid) throw new Error(`dispatch failed: ${reply.error}`);
  return reply.jid;
}

async function record(jid: string): Promise<JobRecord> {
  return (await store.get(jid))!.record;
}

function finished(jid: string, ms = 30_000): Promise<JobRecord> {
  return waitFor(
    `job ${jid} to finish`,
    async () => {
      const r = await record(jid);
      return r.status !== "running" ? r : undefined;
    },
    { ms, context: () => logs.slice(-20).join("\n") },
  );
}

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-queue-"));
  master = await startTestMaster(nats, {
    id: "q-master",
    statesDir: join(work, "no-states"),
    unreachableAfterMs: 1_000,
    log: (m) => logs.push(m),
  });
  admin = await nats.connectAs("admin");
  store = await JobStore.open(admin);
  queueKv = await openKv(admin, "peel-queue");
  // Known to the master (facts), then offline: the state a queued job is for.
  await startPeel();
  await waitFor("the master to know the peel", () => master.fleet.peels().includes(ID) || undefined);
  await stopPeel();
}, 60_000);

afterAll(async () => {
  await peel?.stop().catch(() => {});
  await master?.stop().catch(() => {});
  await admin?.close().catch(() => {});
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("--queue: commands kept for offline peels", () => {
  let kept: Command;
  let jid: string;
  const out = () => join(work, "ran.txt");

  it("queues the command for an offline peel; the peel runs it when it starts; the job completes", async () => {
    jid = await dispatch({ fun: "cmd.run", args: [`echo ran >> ${out()}`], queue_ttl_s: 120, timeout_s: 20 });
    await waitFor(
      "the peel to be queued",
      async () => (await record(jid)).peels[ID] === "queued" || undefined,
    );
    const rec = await record(jid);
    expect(rec.queue_ttl_s).toBe(120);
    expect(rec.status).toBe("running");
    const queued = await readPeelQueue(queueKv, ID);
    expect(queued.map((c) => c.jid)).toEqual([jid]);
    kept = queued[0]!;
    expect(kept.queue_until).toBe(Date.parse(rec.created_at) + 120_000);

    // The job waits for the peel past its own 1 s unreachable grace.
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await record(jid)).peels[ID]).toBe("queued");

    const seen: { ran: string[]; skipped: string[] }[] = [];
    await startPeel((q) => seen.push(q));
    const done = await finished(jid);
    expect(done.status).toBe("complete");
    expect(done.peels[ID]).toBe("success");
    expect(seen[0]).toEqual({ ran: [jid], skipped: [] });
    expect(await readFile(out(), "utf8")).toBe("ran\n");
    const ret = await store.getReturn(jid, ID);
    expect(ret?.success).toBe(true);
    await waitFor(
      "the queue entry to be removed",
      async () => (await readPeelQueue(queueKv, ID)).length === 0 || undefined,
    );
  });

  it("another peel cannot read this peel's queue", async () => {
    const other = await nats.connectAs("q-02");
    try {
      await expect(readPeelQueue(await openKv(other, "peel-queue"), ID)).rejects.toThrow(
        /permission|timeout/i,
      );
    } finally {
      await other.close();
    }
  });

  it("a restart of the peel does not run it again, even with the command still queued", async () => {
    await stopPeel();
    // As if a master had died before removing the entry: the same signed command is back.
    const asMaster = await nats.connectAs("master");
    await enqueueCommand(await openKv(asMaster, "peel-queue"), kept);
    await asMaster.close();
    const seen: { ran: string[]; skipped: string[] }[] = [];
    await startPeel((q) => seen.push(q));
    await waitFor("the peel to read its queue", () => seen[0]);
    expect(seen[0]).toEqual({ ran: [], skipped: [jid] });
    expect(await readFile(out(), "utf8")).toBe("ran\n");
  });

  it("a peel that does not connect within the TTL is recorded expired; zester job show says so", async () => {
    await stopPeel();
    const expiring = await dispatch({ fun: "test.ping", args: [], queue_ttl_s: 2, timeout_s: 2 });
    const done = await finished(expiring);
    expect(done.peels[ID]).toBe("expired");
    expect(done.status).toBe("failed");
    await waitFor(
      "the expired entry to be removed",
      async () => (await readPeelQueue(queueKv, ID)).every((c) => c.jid !== expiring) || undefined,
    );
    const show = await runMain(["job", "show", expiring, "--nats-url", nats.url, "--auth-dir", nats.authDir]);
    expect(show.out).toContain(`Peels:     ${ID} expired`);
    expect(show.out).toContain("Queue:     2 s for offline peels");
  });

  it("without a queue TTL an offline peel is unreachable, as in Salt", async () => {
    const plain = await dispatch({ fun: "test.ping", args: [], timeout_s: 5 });
    const done = await finished(plain);
    expect(done.peels[ID]).toBe("unreachable");
    expect(done.queue_ttl_s).toBeUndefined();
  });

  it("refuses a queue TTL over a day, and a negative one, before anything is recorded", async () => {
    for (const [ttl, msg] of [
      [90_000, "queue_ttl_s 90000 is longer than the 24 h maximum"],
      [-1, "queue_ttl_s must be a number of seconds ≥ 0"],
    ] as const) {
      const reply = decode<DispatchReply>(
        (
          await admin.request(
            subjects.dispatch,
            encode({ target: ID, fun: "test.ping", args: [], kwargs: {}, queue_ttl_s: ttl }),
            { timeout: 10_000 },
          )
        ).data,
      );
      expect(reply).toMatchObject({ error: msg });
      expect(reply.jid).toBeUndefined();
    }
  });
});

describe("a peel whose creds predate the queue permission (upgrade path)", () => {
  const OLD = "q-old";

  /** Creds as `zester peel creds` issued them before --queue: no read of its peel-queue key. */
  async function oldStyleCreds(): Promise<string> {
    const perms = peelPermissions(OLD);
    const queueGet = kvDirectGetSubject("peel-queue", OLD);
    expect(perms.pub.allow).toContain(queueGet);
    perms.pub.allow = perms.pub.allow.filter((s) => s !== queueGet);
    const file = join(work, `${OLD}.creds`);
    await writeFile(file, await issueUserCreds(await loadAccountSigner(nats.authDir), `peel-${OLD}`, perms), {
      mode: 0o600,
    });
    return file;
  }

  it("logs once how to fix it, publishes peel_queue: denied, and a --queue job says why it is not queued", async () => {
    const creds = await oldStyleCreds();
    const errors: string[] = [];
    const old = new Peel({
      id: OLD,
      servers: nats.url,
      credsFile: creds,
      caFile: nats.caFile,
      cacheDir: join(work, OLD),
      customFactsDir: join(work, "no-facts"),
      trustedMasters: new Set([master.publicKey]),
      logger: { info: () => {}, warn: () => {}, error: (m) => errors.push(m) },
    });
    try {
      await old.start();
      await old.waitConnected();
      await waitFor(
        "the master to see peel_queue: denied",
        () => master.fleet.index.get(OLD)?.facts.peel_queue === "denied" || undefined,
      );
      const told = errors.filter((m) => m.startsWith("cannot read the commands queued"));
      expect(told).toEqual([
        `cannot read the commands queued for this peel: its creds (${creds}) do not allow the peel-queue ` +
          "bucket (issued before --queue existed), so jobs sent with --queue never reach it; re-issue its " +
          `creds with \`zester peel creds ${OLD} --dir <auth-dir> --force\` (an enrolled peel: remove its ` +
          "creds file and restart it with --enroll-replace), then restart the peel",
      ]);
      // A live job still works with the old creds: only the queue is out of reach.
      const live = decode<DispatchReply>(
        (
          await admin.request(
            subjects.dispatch,
            encode({ target: OLD, fun: "test.ping", args: [], kwargs: {} }),
            { timeout: 10_000 },
          )
        ).data,
      );
      expect((await finished(live.jid!)).peels[OLD]).toBe("success");
    } finally {
      await old.stop();
    }
    await waitFor("the master to see the old peel offline", () => !master.fleet.isOnline(OLD) || undefined);

    const reply = decode<DispatchReply>(
      (
        await admin.request(
          subjects.dispatch,
          encode({ target: OLD, fun: "test.ping", args: [], kwargs: {}, queue_ttl_s: 600, timeout_s: 5 }),
          { timeout: 10_000 },
        )
      ).data,
    );
    const done = await finished(reply.jid!);
    expect(done.peels[OLD]).toBe("unreachable");
    expect(done.peel_notes?.[OLD]).toMatch(/^not queued: its creds cannot read the peel-queue bucket/);
    expect((await readPeelQueue(queueKv, OLD)).length).toBe(0);
    const show = await runMain([
      "job",
      "show",
      reply.jid!,
      "--nats-url",
      nats.url,
      "--auth-dir",
      nats.authDir,
    ]);
    expect(show.out).toContain(`Peels:     ${OLD} unreachable`);
    expect(show.out).toContain(
      `Note:      ${OLD} not queued: its creds cannot read the peel-queue bucket (issued before --queue); ` +
        `re-issue its creds with \`zester peel creds ${OLD} --dir <auth-dir> --force\``,
    );
  }, 60_000);
});

describe("the signature rules for a queued command", () => {
  const base = {
    jid: "2oHfKnCPMQnLEYQeBQsNtUiJp3r",
    fun: "test.ping",
    args: [],
    kwargs: {},
    test: false,
    peel: ID,
    timeout_s: 5,
  };

  it("accepts one signed long ago inside its queue window, refuses it after, and a plain old one", async () => {
    const now = Date.now();
    const signer = keyPairFromCreds(await readFile(await nats.credsFile("master"), "utf8"));
    const trusted = new Set([signer.getPublicKey()]);
    const opts = { trusted, peel: ID, now };
    const ts = now - 30 * 60_000;
    expect(verifyCommand(signCommand(signer, { ...base, ts, queue_until: now + 60_000 }), opts)).toEqual({
      ok: true,
    });
    expect(verifyCommand(signCommand(signer, { ...base, ts, queue_until: now - 5 * 60_000 }), opts)).toEqual({
      ok: false,
      reason: "expired queued command (its queue TTL ended 300 s ago)",
    });
    expect(verifyCommand(signCommand(signer, { ...base, ts }), opts)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^stale command/),
    });
    const tampered = {
      ...signCommand(signer, { ...base, ts, queue_until: now + 60_000 }),
      queue_until: now + 3_600_000,
    };
    expect(verifyCommand(tampered, opts)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^bad signature/),
    });
    expect(
      verifyCommand(signCommand(signer, { ...base, ts: now, queue_until: now + 25 * 3_600_000 }), opts),
    ).toEqual({ ok: false, reason: "queued command kept longer than the 24 h maximum" });
  });

  it("zester --queue takes a duration, anywhere on the line", async () => {
    const o = await parseTargetArgs(["--queue", "10m", ID, "test.ping"], {});
    expect(o).toMatchObject({ queueTtlS: 600 });
  });
});
