/**
 * Through a real peel on a real NATS server: Salt's `state.apply <sls> failhard=true` stops the run
 * at the first failure, and a failing command fails the job.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPairFromCreds } from "../src/auth/signing.js";
import { bootstrap } from "../src/bus/bootstrap.js";
import { connect } from "../src/bus/connect.js";
import type { PeelReturn } from "../src/jobs/wire.js";
import { Peel } from "../src/peel/peel.js";
import type { SyncResult } from "../src/peel/state-cache.js";
import { returnOf, testCommand } from "./support/commands.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { publishTestTree } from "./support/state-tree.js";
import { nextEvent } from "./support/wait.js";

const ID = "failhard-01";
let nats: StartedNats;
let master: NatsConnection;
let signer: ReturnType<typeof keyPairFromCreds>;
let work: string;
let peel: Peel;

const run = (fun: string, args: unknown[] = [], kwargs: Record<string, unknown> = {}): Promise<PeelReturn> =>
  returnOf(master, testCommand(signer, ID, fun, args, kwargs));

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-peel-failhard-"));
  const creds = await nats.credsFile("master");
  master = await connect({ servers: nats.url, caFile: nats.caFile, credsFile: creds });
  await bootstrap(master);
  signer = keyPairFromCreds(await readFile(creds, "utf8"));
  await publishTestTree(master, 1, {
    "top.zy": "base:\n  '*': []\n",
    "chain.zy":
      `first:\n  file.managed:\n    - name: ${work}/out/first\n    - contents: x\n    - makedirs: true\n` +
      "breaks:\n  cmd.run:\n    - name: echo broken >&2; exit 7\n" +
      `after:\n  file.managed:\n    - name: ${work}/out/after\n    - contents: x\n    - makedirs: true\n`,
  });
  peel = new Peel({
    id: ID,
    servers: nats.url,
    credsFile: await nats.credsFile(ID),
    caFile: nats.caFile,
    authDir: nats.authDir,
    cacheDir: join(work, "cache"),
    customFactsDir: join(work, "no-custom-facts"),
    factsIntervalMs: 3_600_000,
    heartbeatMs: 3_600_000,
    logger: { info: () => {}, warn: () => {}, error: () => {} },
  });
  const synced = nextEvent<SyncResult>(peel, "states");
  await peel.start();
  await synced;
});

afterAll(async () => {
  await peel?.stop();
  await master?.close();
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("failures through a peel", () => {
  it("state.apply failhard=true runs nothing after the failed state; without it the rest runs", async () => {
    const hard = await run("state.apply", ["chain"], { failhard: true });
    expect(hard.success).toBe(false);
    const by = Object.fromEntries((hard.results ?? []).map((r) => [r.id, r]));
    expect(by.first).toMatchObject({ result: true, changed: true });
    expect(by.breaks).toMatchObject({ result: false, changes: { retcode: 7, stderr: "broken" } });
    expect(by.after).toMatchObject({ skipped: true, skip_reason: "failhard" });
    expect(existsSync(join(work, "out", "after"))).toBe(false);

    const soft = await run("state.apply", ["chain"]);
    expect(soft.success).toBe(false);
    expect(soft.results?.find((r) => r.id === "after")).toMatchObject({ result: true, changed: true });
    expect(existsSync(join(work, "out", "after"))).toBe(true);
  });

  it("cmd.run with a non-zero exit fails the job with its merged output and the retcode", async () => {
    const ret = await run("cmd.run", ["echo out; echo err >&2; exit 3"]);
    expect(ret).toMatchObject({ success: false, return: "out\nerr" });
    expect(ret.error).toMatch(/retcode 3/);
    expect(await run("cmd.run", ["echo fine"])).toMatchObject({ success: true, return: "fine" });
  });
});
