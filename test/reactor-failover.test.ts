/**
 * Exactly-once across a master killed mid-reaction: a real zester-master process takes a burst
 * of events and is SIGKILLed as soon as its first reaction job is recorded; the events it held
 * come back to another master, whose deterministic job ids find the jobs already recorded.
 * Every (event, block) ends with exactly one job, and no other job exists.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openKv } from "../src/bus/bootstrap.js";
import { publishEvent } from "../src/events/index.js";
import { JobStore } from "../src/jobs/store.js";
import type { Master } from "../src/master/master.js";
import { Peel } from "../src/peel/peel.js";
import { reactionId } from "../src/reactor/ids.js";
import { requireBuilt } from "./support/built.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

const ZESTER_MASTER = join(resolve(import.meta.dirname, ".."), "dist/bin/zester-master.js");
const quiet = { info: () => {}, warn: () => {}, error: () => {} };
const BLOCKS = ["one", "two", "three"];
const EVENTS = 30;

let nats: StartedNats;
let work: string;
let reactorDir: string;
let child: ChildProcess | undefined;
let childLog = "";
const masters: Master[] = [];
let peel: Peel | undefined;

beforeAll(async () => {
  requireBuilt(ZESTER_MASTER);
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-reactor-failover-"));
  reactorDir = join(work, "reactor");
  await mkdir(reactorDir, { recursive: true });
  await writeFile(join(reactorDir, "top.zy"), "- '_admin/failover/*': [pings]\n");
  await writeFile(
    join(reactorDir, "pings.zy"),
    BLOCKS.map((b) => `${b}:\n  dispatch.module: {target: web-01, function: test.ping}\n`).join(""),
  );
}, 30_000);

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await peel?.stop().catch(() => {});
  for (const m of masters) await m.stop().catch(() => {});
  await nats?.stop();
  await rm(work, { recursive: true, force: true });
});

describe("reactor failover (real server, a killed master process)", () => {
  it("creates exactly one job per event and block when a master dies mid-reaction", async () => {
    // The first master creates the shared consumer with a short ack wait, then steps aside.
    const first = await startTestMaster(nats, { id: "setup", reactorDir, reactor: { ackWaitMs: 2_000 } });
    peel = new Peel({
      id: "web-01",
      servers: nats.url,
      credsFile: await nats.credsFile("web-01"),
      caFile: nats.caFile,
      cacheDir: join(work, "web-01"),
      customFactsDir: join(work, "no-facts"),
      trustedMasters: new Set([first.publicKey]),
      logger: quiet,
    });
    await peel.start();
    await peel.waitConnected();
    await first.stop();

    child = spawn(
      process.execPath,
      [
        ZESTER_MASTER,
        "--nats-url",
        nats.url,
        "--auth-dir",
        nats.authDir,
        "--id",
        "doomed",
        "--reactor-dir",
        reactorDir,
        "--states-dir",
        join(work, "no-states"),
        "--settings-dir",
        join(work, "no-settings"),
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    child.stderr?.on("data", (d: Buffer) => {
      childLog += d.toString("utf8");
    });
    const ctx = { ms: 30_000, context: () => childLog };
    await waitFor("the doomed master to run", () => /running \(signing key/.test(childLog), ctx);
    await waitFor(
      "the doomed master to load the rules",
      () => /reactor: rules revision/.test(childLog) || /published reactor revision/.test(childLog),
      ctx,
    );

    const admin = await nats.connectAs("admin");
    const jobs = await openKv(admin, "jobs");
    const seen = await jobs.watch({ key: "*" });
    const sent: string[] = [];
    for (let i = 0; i < EVENTS; i++)
      sent.push((await publishEvent(admin, { origin: "_admin", tag: `failover/${i}` })).event.id);
    // SIGKILL at the first recorded job: most events are mid-reaction, none acked yet.
    for await (const e of seen) {
      if (e.operation === "PUT") break;
    }
    child.kill("SIGKILL");
    seen.stop();
    const expected = sent.flatMap((id) =>
      BLOCKS.map((b) => reactionId(id, "_admin/failover/*", "pings.zy", b)),
    );
    const store = await JobStore.open(admin);
    const beforeTakeover = (await Promise.all(expected.map((j) => store.get(j)))).filter(Boolean).length;
    expect(beforeTakeover).toBeGreaterThan(0);
    expect(beforeTakeover).toBeLessThan(expected.length);

    const heir = await startTestMaster(nats, { id: "heir", reactorDir, reactor: { ackWaitMs: 2_000 } });
    masters.push(heir);
    await waitFor(
      "every event's jobs",
      async () => (await Promise.all(expected.map((j) => store.get(j)))).every(Boolean),
      {
        ms: 60_000,
        intervalMs: 250,
        context: () => `${childLog}\nheir: ${JSON.stringify(heir.reactor?.stats())}`,
      },
    );
    // Listed while the jobs still change: `job list` must show each job once.
    const all = await store.list({ limit: 1000 });
    expect(all.map((j) => j.jid).sort()).toEqual([...expected].sort());
    // The heir met jobs the dead master had recorded: redelivered, not run twice.
    expect(heir.reactor!.stats().duplicates).toBeGreaterThan(0);
    await admin.close();
  }, 120_000);
});
