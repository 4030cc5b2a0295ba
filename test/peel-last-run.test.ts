/**
 * The peel's heartbeat carries its last finished state run (`last_run`), scheduled or a job,
 * written right after the run, and `zester peel list` shows it. Real nats-server, a real Peel
 * in this process with a synced state tree, and the built CLI.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUTH_FILES, issuePeelCredsFile } from "../src/auth/auth-dir.js";
import { keyPairFromCreds } from "../src/auth/signing.js";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { decode } from "../src/bus/codec.js";
import { connect } from "../src/bus/connect.js";
import { peelInboxPrefix } from "../src/bus/names.js";
import { lastRunText, type PeelListEntry } from "../src/cli/peel.js";
import type { PeelHeartbeat, PeelLastRun } from "../src/jobs/wire.js";
import { Peel } from "../src/peel/peel.js";
import type { SyncResult } from "../src/peel/state-cache.js";
import { ROOT, requireBuilt } from "./support/built.js";
import { cliJson, fleetCliOptions, runCli } from "./support/cli.js";
import { returnOf, testCommand } from "./support/commands.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { startRestartableNats } from "./support/nats-restart.js";
import { publishTestTree } from "./support/state-tree.js";
import { nextEvent, waitFor } from "./support/wait.js";

const ZESTER = join(ROOT, "dist/bin/zester.js");
const ID = "lastrun-01";

let nats: StartedNats;
let master: NatsConnection;
let signer: ReturnType<typeof keyPairFromCreds>;
let work: string;
let target: string;
let peel: Peel;

function managed(id: string, file: string, content: string): string {
  return `${id}:\n  file.managed:\n    - name: ${join(target, file)}\n    - content: "${content}"\n    - makedirs: true\n`;
}

/** Runs a signed job on the peel and returns its return. */
async function job(fun: string, args: unknown[] = [], kwargs: Record<string, unknown> = {}) {
  return returnOf(master, testCommand(signer, ID, fun, args, kwargs));
}

async function storedHeartbeat(nc = master, id = ID): Promise<PeelHeartbeat | undefined> {
  const e = await (await openKv(nc, "peel-heartbeat")).get(id);
  return e && e.operation === "PUT" ? decode<PeelHeartbeat>(e.value) : undefined;
}

/**
 * The stored heartbeat's last_run once it names `jid`. Two seconds at most: the heartbeat timer
 * is set to an hour, so only the write right after a scheduled run can bring it. A job's run
 * waits for the next regular heartbeat: `jobRun` beats in the timer's place.
 */
async function lastRunFor(jid: string, jobRun = false): Promise<PeelLastRun> {
  if (jobRun) await peel.beat();
  return waitFor(
    `a heartbeat with last_run ${jid}`,
    async () => {
      const r = (await storedHeartbeat())?.last_run;
      return r?.jid === jid ? r : undefined;
    },
    { ms: 2_000, intervalMs: 25 },
  );
}

beforeAll(async () => {
  requireBuilt(ZESTER);
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-peel-last-run-"));
  target = join(work, "target");
  const creds = await nats.credsFile("master");
  master = await connect({ servers: nats.url, caFile: nats.caFile, credsFile: creds });
  await bootstrap(master);
  signer = keyPairFromCreds(await readFile(creds, "utf8"));
  await publishTestTree(master, 1, {
    "top.zy": "base:\n  '*':\n    - web\n",
    "web.zy": managed("hello_file", "hello.txt", "hello"),
    "drift.zy": managed("drift_file", "drift.txt", "drifted"),
    "fail.zy": "broken_cmd:\n  cmd.run:\n    - name: exit 1\n",
  });
  peel = new Peel({
    id: ID,
    servers: nats.url,
    credsFile: await nats.credsFile(ID),
    caFile: nats.caFile,
    authDir: nats.authDir,
    cacheDir: join(work, "cache"),
    customFactsDir: join(work, "no-custom-facts"),
    trustedMasters: new Set([signer.getPublicKey()]),
    factsIntervalMs: 3_600_000,
    heartbeatMs: 3_600_000,
    logger: { info: () => {}, warn: () => {}, error: () => {} },
  });
  const synced = nextEvent<SyncResult>(peel, "states");
  await peel.start();
  expect(await synced).toMatchObject({ rev: 1 });
}, 60_000);

afterAll(async () => {
  await peel?.stop();
  await master?.close();
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("last_run in the peel heartbeat (real NATS)", () => {
  it("has none before the first state run", async () => {
    const hb = await storedHeartbeat();
    expect(hb?.peel).toBe(ID);
    expect(hb?.last_run).toBeUndefined();
  });

  it("a scheduled run is in the heartbeat within 2 s, not at the next timer beat", async () => {
    const ret = await peel.applyLocal();
    expect(ret, JSON.stringify(ret)).toMatchObject({ success: true, summary: { changed: 1 } });
    expect(await lastRunFor(ret.jid)).toEqual({
      jid: ret.jid,
      origin: "schedule",
      fun: "state.highstate",
      test: false,
      finished_at: ret.finished_at,
      success: true,
      changed: 1,
      failed: 0,
      total: 1,
      pending: 0,
    });
  });

  it("a test-mode run records test and what would change, and changes nothing", async () => {
    const ret = await peel.applyLocal({ sls: ["drift"], test: true });
    expect(ret.success).toBe(true);
    expect(await lastRunFor(ret.jid)).toMatchObject({
      origin: "schedule",
      fun: "state.apply",
      test: true,
      success: true,
      pending: 1,
      failed: 0,
      total: 1,
    });
    expect(existsSync(join(target, "drift.txt"))).toBe(false);
    // A job asking for test mode through `test=true` is a drift check too.
    const j = await job("state.apply", ["drift"], { test: "true" });
    expect(await lastRunFor(j.jid, true)).toMatchObject({ origin: "job", test: true, pending: 1 });
  });

  it("a failing run records success false and the failed states", async () => {
    const ret = await peel.applyLocal({ sls: ["fail"] });
    expect(ret.success).toBe(false);
    const r = await lastRunFor(ret.jid);
    expect(r).toMatchObject({ success: false, test: false, total: 1 });
    expect(r.failed).toBeGreaterThanOrEqual(1);
    expect(r.error).toBe("1 of 1 states failed");
  });

  it("a run that fails before producing results counts, with its error's first line", async () => {
    const ret = await job("state.sls", ["no_such_sls"]);
    expect(ret.success).toBe(false);
    expect(ret.results).toBeUndefined();
    const r = await lastRunFor(ret.jid, true);
    expect(r).toMatchObject({ origin: "job", fun: "state.sls", success: false, total: 0, failed: 0 });
    expect(r.error).toBeTruthy();
    expect(r.error).toBe((ret.error ?? "").split("\n")[0]!.slice(0, 200));
    expect(r.error!.length).toBeLessThanOrEqual(200);
    expect(r.error).not.toContain("\n");
  });

  it("show functions, execution functions and one-state calls leave last_run alone", async () => {
    await peel.beat();
    const before = (await storedHeartbeat())?.last_run;
    expect(before?.jid).toBeTruthy();
    expect((await job("state.show_sls", ["web"])).success).toBe(true);
    expect((await job("test.ping")).success).toBe(true);
    const single = await job("file.managed", [join(target, "single.txt")], { content: "x" });
    expect(single, JSON.stringify(single)).toMatchObject({ success: true, summary: { changed: 1 } });
    // A beat now would carry whatever the peel holds in memory.
    await peel.beat();
    expect((await storedHeartbeat())?.last_run).toEqual(before);
  });

  it("zester peel list shows the last run, and - for an offline peel", async () => {
    const ret = await peel.applyLocal({ sls: ["drift"], test: true });
    await lastRunFor(ret.jid);
    // A peel known by its facts only, never online.
    const nc = await connect({
      servers: nats.url,
      credsFile: await nats.credsFile("gone-01"),
      caFile: nats.caFile,
      inboxPrefix: peelInboxPrefix("gone-01"),
    });
    await (await openKv(nc, "facts")).put("gone-01", JSON.stringify({ id: "gone-01", os: "linux" }));
    await nc.drain();

    const opts = fleetCliOptions(nats, work);
    const text = await runCli(ZESTER, ["peel", "list"], opts);
    expect(text.code, text.stderr).toBe(0);
    const lines = text.stdout.split("\n");
    expect(lines[0]).toMatch(/^ID\s+HOST\s+OS\s+ONLINE\s+LAST SEEN\s+LAST RUN$/);
    expect(text.stdout).toMatch(
      new RegExp(`^${ID}\\s.*\\syes\\s+\\d+[smhd] ago\\s+drift: 1 would change \\d+s ago$`, "m"),
    );
    expect(text.stdout).toMatch(/^gone-01\s+-\s+linux\s+no\s+\d+[smhd] ago \(facts\)\s+-$/m);

    const js = await runCli(ZESTER, ["peel", "list", "--format", "json"], opts);
    const list = cliJson<PeelListEntry[]>(js);
    expect(list.find((p) => p.id === ID)?.last_run).toEqual((await storedHeartbeat())?.last_run);
    expect(list.find((p) => p.id === ID)?.last_run).toMatchObject({ jid: ret.jid, test: true, pending: 1 });
    expect(list.find((p) => p.id === "gone-01")).toMatchObject({ online: false, last_run: null });
  }, 60_000);
});

describe("the LAST RUN cell", () => {
  const now = Date.parse("2025-01-01T12:00:00Z");
  const run = (over: Partial<PeelLastRun>): PeelLastRun => ({
    jid: "x",
    origin: "schedule",
    fun: "state.highstate",
    test: false,
    finished_at: "2025-01-01T11:48:00Z",
    success: true,
    changed: 0,
    failed: 0,
    total: 3,
    pending: 0,
    ...over,
  });
  const cell = (r: PeelLastRun | null, online = true) => lastRunText({ online, last_run: r }, now);

  it("says what the run did and how long ago", () => {
    expect(cell(run({}))).toBe("ok 12m ago");
    expect(cell(run({ changed: 1, finished_at: "2025-01-01T11:57:00Z" }))).toBe("1 changed 3m ago");
    expect(cell(run({ success: false, failed: 2, changed: 1, finished_at: "2025-01-01T10:30:00Z" }))).toBe(
      "2 failed 1h ago",
    );
    expect(cell(run({ test: true, pending: 1, finished_at: "2025-01-01T11:55:00Z" }))).toBe(
      "drift: 1 would change 5m ago",
    );
    expect(cell(run({ test: true }))).toBe("no drift 12m ago");
    expect(cell(run({ success: false, total: 0, error: "no state tree cached on this peel yet" }))).toBe(
      "error: no state tree cached on this peel yet 12m ago",
    );
    expect(cell(run({ finished_at: "2025-01-03T12:00:00Z" }))).toBe("ok 0s ago");
    expect(cell(run({ finished_at: "2024-12-30T11:00:00Z" }))).toBe("ok 2d ago");
  });

  it("keeps peel-written error text to one short, printable line", () => {
    const c = cell(run({ success: false, total: 0, error: `\u001b[31mred${"x".repeat(80)}` }));
    expect(c).not.toContain("\u001b");
    expect(c).toMatch(/^error: \?\[31mredx+… 12m ago$/);
  });

  it("is - for an offline peel or one without a run", () => {
    expect(cell(run({}), false)).toBe("-");
    expect(cell(null)).toBe("-");
  });
});

describe("last_run through an outage (nats-server stopped and started again)", () => {
  it("a run while disconnected reaches the heartbeat after the reconnect", async () => {
    const srv = await startRestartableNats();
    const dir = await mkdtemp(join(tmpdir(), "zester-peel-last-run-outage-"));
    const connectMaster = () =>
      connect({ servers: srv.url, caFile: srv.caFile, credsFile: join(srv.authDir, AUTH_FILES.masterCreds) });
    let nc = await connectMaster();
    const p = new Peel({
      id: "outage-01",
      servers: srv.url,
      credsFile: await issuePeelCredsFile(srv.authDir, "outage-01"),
      caFile: srv.caFile,
      authDir: srv.authDir,
      cacheDir: join(dir, "cache"),
      customFactsDir: join(dir, "no-custom-facts"),
      factsIntervalMs: 3_600_000,
      heartbeatMs: 3_600_000,
      connectRetryMs: 300,
      logger: { info: () => {}, warn: () => {}, error: () => {} },
    });
    try {
      await bootstrap(nc);
      await publishTestTree(nc, 1, {
        "top.zy": "base:\n  '*':\n    - web\n",
        "web.zy": managed("outage_file", "outage.txt", "through the outage"),
      });
      const synced = nextEvent<SyncResult>(p, "states");
      await p.start();
      await synced;
      // The first connected run writes the settings snapshot an offline run needs.
      const online = await p.applyLocal();
      expect(online.success).toBe(true);

      const down = nextEvent(p, "disconnected", 15_000);
      await srv.halt();
      await nc.close().catch(() => {});
      await down;
      const offline = await p.applyLocal({ test: true });
      expect(offline, JSON.stringify(offline)).toMatchObject({ success: true });

      await srv.start();
      nc = await connectMaster();
      const r = await waitFor(
        "the heartbeat after the reconnect to carry the offline run",
        async () => {
          const hb = await storedHeartbeat(nc, "outage-01");
          return hb?.last_run?.jid === offline.jid ? hb.last_run : undefined;
        },
        { ms: 20_000, intervalMs: 100, ignoreErrors: true },
      );
      expect(r).toMatchObject({
        origin: "schedule",
        test: true,
        success: true,
        finished_at: offline.finished_at,
      });
    } finally {
      await p.stop();
      await nc.close().catch(() => {});
      await srv.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
