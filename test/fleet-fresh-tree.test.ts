/**
 * A job that reads the state tree or settings runs what is on the master's disk when it is
 * dispatched, not what the last timed publish saw: edit a .zy file, apply, and the edit is what
 * runs. Real nats-server, real masters and a real peel; publish timers set to an hour so only
 * the dispatch path can have published.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPairFromCreds, signCommand } from "../src/auth/signing.js";
import { openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import { subjects } from "../src/bus/names.js";
import { newKsuid } from "../src/jobs/ksuid.js";
import { JobStore } from "../src/jobs/store.js";
import type { DispatchReply, JobRecord, PeelReturn } from "../src/jobs/wire.js";
import { type Master, type MasterConfig, readLiveStates } from "../src/master/index.js";
import { Peel } from "../src/peel/peel.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { type WaitOptions, waitFor } from "./support/wait.js";

const quiet = { info: () => {}, warn: () => {}, error: () => {} };
const HOUR = 3_600_000;

let nats: StartedNats;
let admin: NatsConnection;
let store: JobStore;
let stateFiles: KV;
let work: string;
let statesDir: string;
let settingsDir: string;
let outDir: string;
let signer: ReturnType<typeof keyPairFromCreds>;
let peel: Peel;
const masters: Master[] = [];
const masterLogs: string[] = [];
const WAIT: WaitOptions = { context: () => masterLogs.join("\n") };

async function startMaster(id: string, extra: Partial<MasterConfig> = {}): Promise<Master> {
  const m = await startTestMaster(nats, {
    id,
    statesDir,
    settingsDir,
    publishIntervalMs: HOUR,
    settingsPublishIntervalMs: HOUR,
    leaseRenewMs: HOUR,
    log: (msg) => masterLogs.push(`${id}: ${msg}`),
    ...extra,
  });
  masters.push(m);
  return m;
}

/** Dispatches through the masters' queue group and waits for the finished record. */
async function run(fun: string, args: unknown[] = []): Promise<{ record: JobRecord; ret: PeelReturn }> {
  const reply = decode<DispatchReply>(
    (
      await admin.request(subjects.dispatch, encode({ target: "fresh-01", fun, args, kwargs: {} }), {
        timeout: 15_000,
      })
    ).data,
  );
  if (!reply.jid) throw new Error(`dispatch failed: ${reply.error}`);
  const jid = reply.jid;
  const record = await waitFor(
    `job ${jid}`,
    async () => {
      const r = await store.get(jid);
      return r && r.record.status !== "running" ? r.record : undefined;
    },
    WAIT,
  );
  const returns = await openKv(admin, "job-returns");
  const e = await returns.get(`${jid}.fresh-01`);
  return { record, ret: decode<PeelReturn>(e!.value) };
}

function stateFile(version: string): string {
  return [
    "greeting:",
    "  file.managed:",
    `    - name: ${join(outDir, "greeting")}`,
    `    - contents: "${version} {{ settings.get('who', 'nobody') }}"`,
    "",
  ].join("\n");
}

async function liveRev(): Promise<number> {
  return (await readLiveStates(stateFiles))?.revision.rev ?? 0;
}

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-fresh-"));
  statesDir = join(work, "states");
  settingsDir = join(work, "settings");
  outDir = join(work, "out");
  await mkdir(statesDir);
  await mkdir(settingsDir);
  await mkdir(outDir);
  await writeFile(join(statesDir, "greeting.zy"), stateFile("v1"));
  await writeFile(join(settingsDir, "top.zy"), "base:\n  '*':\n    - common\n");
  await writeFile(join(settingsDir, "common.zy"), "who: alice\n");
  const creds = await readFile(await nats.credsFile("master"), "utf8");
  signer = keyPairFromCreds(creds);
  await startMaster("fresh-a");
  admin = await nats.connectAs("admin");
  store = await JobStore.open(admin);
  stateFiles = await openKv(admin, "state-files");
  peel = new Peel({
    id: "fresh-01",
    servers: nats.url,
    credsFile: await nats.credsFile("fresh-01"),
    caFile: nats.caFile,
    cacheDir: join(work, "peel-cache"),
    customFactsDir: join(work, "no-facts"),
    trustedMasters: new Set([signer.getPublicKey()]),
    logger: quiet,
  });
  await peel.start();
  await peel.waitConnected();
  await waitFor(
    "the master to see the peel",
    async () => {
      const r = decode<{ peels?: string[] }>(
        (await admin.request(subjects.targetResolve, encode({ target: "fresh-01" }), { timeout: 5_000 }))
          .data,
      );
      return r.peels?.length === 1 ? true : undefined;
    },
    WAIT,
  );
}, 60_000);

afterAll(async () => {
  await peel?.stop().catch(() => {});
  for (const m of masters) await m.stop();
  await admin?.drain().catch(() => {});
  await nats?.stop();
  await rm(work, { recursive: true, force: true });
});

describe("jobs run the trees as they are on the master's disk", () => {
  it("applies an edit made just before the job, states and settings alike, and pins the revision", async () => {
    const first = await run("state.apply", ["greeting"]);
    expect(first.ret.success).toBe(true);
    expect(await readFile(join(outDir, "greeting"), "utf8")).toBe("v1 alice\n");
    const rev1 = await liveRev();
    expect(first.record.states_rev).toBe(rev1);

    await writeFile(join(statesDir, "greeting.zy"), stateFile("v2"));
    await writeFile(join(settingsDir, "common.zy"), "who: bob\n");
    const second = await run("state.apply", ["greeting"]);
    expect(second.ret.success, JSON.stringify(second.ret)).toBe(true);
    expect(await readFile(join(outDir, "greeting"), "utf8")).toBe("v2 bob\n");
    expect(await liveRev()).toBe(rev1 + 1);
    expect(second.record.states_rev).toBe(rev1 + 1);
  });

  it("does not publish before read-only functions such as test.ping", async () => {
    const before = await liveRev();
    await writeFile(join(statesDir, "extra.zy"), "noop:\n  test.nop: []\n");
    const ping = await run("test.ping");
    expect(ping.ret.return).toBe(true);
    expect(ping.record.states_rev).toBeUndefined();
    expect(await liveRev()).toBe(before);
  });

  it("a master without the publisher lease has the holder publish, and pins what it published", async () => {
    const b = await startMaster("fresh-b");
    expect(b.isStatePublisher).toBe(false);
    const before = await liveRev();
    await writeFile(join(statesDir, "extra.zy"), "noop:\n  test.nop:\n    - name: changed\n");
    const rev = await b.freshTrees();
    expect(rev).toBe(before + 1);
    expect(await liveRev()).toBe(before + 1);
    expect(
      masterLogs.filter((l) => l.startsWith("fresh-a: published states revision")).length,
    ).toBeGreaterThan(1);
    await b.stop();
    masters.splice(masters.indexOf(b), 1);
  });

  it("a peel that cannot reach the job's revision fails it with the reason and applies nothing", async () => {
    const jid = newKsuid();
    const returns = await openKv(admin, "job-returns");
    const cmd = signCommand(signer, {
      jid,
      fun: "state.apply",
      args: ["greeting"],
      kwargs: {},
      test: false,
      peel: "fresh-01",
      ts: Date.now(),
      timeout_s: 30,
      states_rev: 9999,
    });
    await writeFile(join(outDir, "greeting"), "untouched");
    const masterNc = await nats.connectAs("master");
    try {
      masterNc.publish(subjects.cmd("fresh-01"), encode(cmd));
      const ret = await waitFor(
        "the return",
        async () => {
          const e = await returns.get(`${jid}.fresh-01`);
          return e ? decode<PeelReturn>(e.value) : undefined;
        },
        WAIT,
      );
      expect(ret.success).toBe(false);
      expect(ret.error).toMatch(/needs state tree revision 9999, this peel has \d+ .*nothing was applied/);
      expect(await readFile(join(outDir, "greeting"), "utf8")).toBe("untouched");
    } finally {
      await masterNc.drain();
    }
  });

  it("refuses a command whose states_rev is not a revision number", () => {
    const cmd = signCommand(signer, {
      jid: newKsuid(),
      fun: "state.apply",
      args: [],
      kwargs: {},
      test: false,
      peel: "fresh-01",
      ts: Date.now(),
      timeout_s: 30,
      states_rev: -1,
    });
    return import("../src/auth/signing.js").then(({ verifyCommand }) => {
      const v = verifyCommand(cmd, { trusted: new Set([signer.getPublicKey()]), peel: "fresh-01" });
      expect(v).toEqual({
        ok: false,
        reason: "malformed command: states_rev: expected a non-negative integer, got number -1",
      });
      const tampered = { ...signCommand(signer, { ...cmd, states_rev: 3 }), states_rev: 4 };
      const t = verifyCommand(tampered, { trusted: new Set([signer.getPublicKey()]), peel: "fresh-01" });
      expect(t.ok).toBe(false);
    });
  });
});
