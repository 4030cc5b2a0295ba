/**
 * Exactly-once across a master killed mid-reaction: a real zester-master process takes a burst
 * of events and is SIGKILLed as soon as its first reaction job is recorded; the events it held
 * come back to another master, whose deterministic job ids find the jobs already recorded.
 * Every (event, block) ends with exactly one job, and no other job exists. And a master killed
 * between recording a job and sending it: the master that takes the job over sends it.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadAccountSigner } from "../src/auth/auth-dir.js";
import { issueUserCreds } from "../src/auth/hierarchy.js";
import { masterPermissions } from "../src/auth/permissions.js";
import { openKv } from "../src/bus/bootstrap.js";
import { publishEvent } from "../src/events/index.js";
import { JobStore } from "../src/jobs/store.js";
import type { Master } from "../src/master/master.js";
import { Peel } from "../src/peel/peel.js";
import { reactionId } from "../src/reactor/ids.js";
import { startTestMaster } from "./support/master.js";
import { startMasterProcess } from "./support/master-process.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

const quiet = { info: () => {}, warn: () => {}, error: () => {} };
const BLOCKS = ["one", "two", "three"];
const EVENTS = 30;

let nats: StartedNats;
let work: string;
let reactorDir: string;
let childLog: () => string = () => "";
const masters: Master[] = [];
let peel: Peel | undefined;

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-reactor-failover-"));
  reactorDir = join(work, "reactor");
  await mkdir(reactorDir, { recursive: true });
  await writeFile(
    join(reactorDir, "top.zy"),
    "- '_admin/failover/*': [pings]\n- '_admin/unsent/*': [unsent]\n",
  );
  await writeFile(
    join(reactorDir, "unsent.zy"),
    "ping:\n  dispatch.module: {target: web-01, function: test.ping, timeout: 90}\n",
  );
  await writeFile(
    join(reactorDir, "pings.zy"),
    BLOCKS.map((b) => `${b}:\n  dispatch.module: {target: web-01, function: test.ping}\n`).join(""),
  );
}, 30_000);

afterAll(async () => {
  await peel?.stop().catch(() => {});
  for (const m of masters) await m.stop().catch(() => {});
  await nats?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Master creds that may not publish on `deny` (what a master killed at that point never sent). */
async function masterCreds(name: string, deny: string[]): Promise<string> {
  const perms = masterPermissions();
  const path = join(work, `${name}.creds`);
  const creds = await issueUserCreds(await loadAccountSigner(nats.authDir), name, {
    ...perms,
    pub: { ...perms.pub, deny },
  });
  await writeFile(path, creds, { mode: 0o600 });
  return path;
}

const rulesLoaded = (log: string) => /reactor: rules revision|published reactor revision/.test(log);

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

    // The doomed master may not ack events (its creds deny $JS.ACK.>): whenever the SIGKILL lands,
    // every event it took is still unacked, so it comes back to the heir. Under load the kill
    // could otherwise land after the doomed master had finished and acked the whole burst.
    const doomed = await startMasterProcess(nats, [
      "--creds",
      await masterCreds("master-noack", ["$JS.ACK.>"]),
      "--id",
      "doomed",
      "--reactor-dir",
      reactorDir,
      "--states-dir",
      join(work, "no-states"),
      "--settings-dir",
      join(work, "no-settings"),
    ]);
    childLog = doomed.log;
    await waitFor("the doomed master to load the rules", () => rulesLoaded(doomed.log()), {
      ms: 30_000,
      context: doomed.log,
    });

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
    await doomed.kill("SIGKILL");
    seen.stop();
    const expected = sent.flatMap((id) =>
      BLOCKS.map((b) => reactionId(id, "_admin/failover/*", "pings.zy", b)),
    );
    const store = await JobStore.open(admin);
    const beforeTakeover = (await Promise.all(expected.map((j) => store.get(j)))).filter(Boolean).length;
    expect(beforeTakeover).toBeGreaterThan(0);

    const heir = await startTestMaster(nats, { id: "heir", reactorDir, reactor: { ackWaitMs: 2_000 } });
    masters.push(heir);
    await waitFor(
      "every event's jobs",
      async () => (await Promise.all(expected.map((j) => store.get(j)))).every(Boolean),
      {
        ms: 60_000,
        intervalMs: 250,
        context: () => `${childLog()}\nheir: ${JSON.stringify(heir.reactor?.stats())}`,
      },
    );
    // Listed while the jobs still change: `job list` must show each job once.
    const all = await store.list({ limit: 1000 });
    expect(all.map((j) => j.jid).sort()).toEqual([...expected].sort());
    // The heir meets the jobs the dead master had recorded: redelivered, not created twice.
    await waitFor(
      "the heir to meet a job the dead master recorded",
      () => heir.reactor!.stats().duplicates > 0,
      {
        context: () => JSON.stringify(heir.reactor?.stats()),
      },
    );
    await admin.close();
  }, 120_000);

  it("sends a job exactly once when its master was killed after recording it and before sending it", async () => {
    // The previous test's heir steps aside, so the event goes to the doomed master.
    for (const m of masters.splice(0)) await m.stop();
    // A master whose commands never leave (its creds may not publish zester.cmd.>): from the
    // fleet's side it recorded the job and died before sending it, which is then made real by SIGKILL.
    const mute = await masterCreds("master-mute", ["zester.cmd.>"]);
    const doomed = await startMasterProcess(nats, [
      "--creds",
      mute,
      "--id",
      "doomed-2",
      "--reactor-dir",
      reactorDir,
      "--states-dir",
      join(work, "no-states"),
      "--settings-dir",
      join(work, "no-settings"),
    ]);
    const ctx = { ms: 30_000, context: () => doomed.log() };
    await waitFor("the doomed master to load the rules", () => rulesLoaded(doomed.log()), ctx);
    const admin = await nats.connectAs("admin");
    const store = await JobStore.open(admin);
    const { event } = await publishEvent(admin, { origin: "_admin", tag: "unsent/1" });
    const jid = reactionId(event.id, "_admin/unsent/*", "unsent.zy", "ping");
    const recorded = await waitFor("the job to be recorded", () => store.get(jid), ctx);
    expect(recorded.record.master).toBe("doomed-2");
    await doomed.kill("SIGKILL");
    expect((await store.get(jid))?.record.peels["web-01"]).toBe("pending");

    const heir = await startTestMaster(nats, { id: "heir-2", reactorDir, reactor: { ackWaitMs: 2_000 } });
    masters.push(heir);
    const done = await waitFor(
      "the job to be taken over, sent and finished",
      async () => {
        const r = (await store.get(jid))?.record;
        return r && r.status !== "running" ? r : undefined;
      },
      { ms: 60_000, intervalMs: 250, context: () => doomed.log() },
    );
    expect(done.master).toBe("heir-2");
    expect([done.status, done.peels["web-01"]]).toEqual(["complete", "success"]);
    const ret = (await store.returnsOf(jid, ["web-01"])).get("web-01");
    expect(ret?.return).toBe(true);
    await admin.close();
  }, 120_000);
});
