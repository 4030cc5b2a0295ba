import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPairFromCreds } from "../src/auth/signing.js";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { decode } from "../src/bus/codec.js";
import { connect } from "../src/bus/connect.js";
import type { PeelReturn } from "../src/jobs/wire.js";
import { Peel, type PeelConfig } from "../src/peel/peel.js";
import type { SyncResult } from "../src/peel/state-cache.js";
import { returnOf, testCommand } from "./support/commands.js";
import { freePort, type StartedNats, startNats } from "./support/nats.js";
import { publishTestTree } from "./support/state-tree.js";
import { nextEvent } from "./support/wait.js";

let nats: StartedNats;
let master: NatsConnection;
let signer: ReturnType<typeof keyPairFromCreds>;
let work: string;
let target: string;
const peels: Peel[] = [];
const ID = "states-01";

function tree(content: string): Record<string, string> {
  return {
    "top.zy": "base:\n  '*':\n    - web\n",
    "web.zy": [
      "hello_file:",
      "  file.managed:",
      `    - name: ${target}/hello.txt`,
      `    - content: "${content} for {{ facts.id }}"`,
      "    - makedirs: true",
      "",
    ].join("\n"),
    "broken.zy": "oops:\n  bogus.thing:\n    - a: 1\n",
  };
}

async function startPeel(over: Partial<PeelConfig> = {}): Promise<Peel> {
  const peel = new Peel({
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
    ...over,
  });
  peels.push(peel);
  return peel;
}

function run(fun: string, args: unknown[] = [], kwargs: Record<string, unknown> = {}): Promise<PeelReturn> {
  return returnOf(master, testCommand(signer, ID, fun, args, kwargs));
}

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-peel-states-"));
  target = join(work, "target");
  const creds = await nats.credsFile("master");
  master = await connect({ servers: nats.url, caFile: nats.caFile, credsFile: creds });
  await bootstrap(master);
  signer = keyPairFromCreds(await readFile(creds, "utf8"));
});

afterAll(async () => {
  for (const p of peels) await p.stop();
  await master?.close();
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("peel state tree and state runs (real NATS)", () => {
  let peel: Peel;
  const statesDir = () => join(work, "cache", "states");

  it("syncs a published tree into rev-<n> behind a current symlink", async () => {
    await publishTestTree(master, 1, tree("one"));
    peel = await startPeel();
    const synced = nextEvent<SyncResult>(peel, "states");
    await peel.start();
    expect(await synced).toMatchObject({ rev: 1, changed: true, fetched: 3, reused: 0 });
    expect(await readlink(join(statesDir(), "current"))).toBe("rev-1");
    expect(await readFile(join(statesDir(), "current", "top.zy"), "utf8")).toBe(tree("one")["top.zy"]);
  });

  it("state.apply runs an sls from the cache and returns results and a summary", async () => {
    const ret = await run("state.apply", ["web"]);
    expect(ret, JSON.stringify(ret)).toMatchObject({ success: true });
    expect(ret.summary).toMatchObject({ total: 1, failed: 0, changed: 1 });
    expect(ret.results?.[0]).toMatchObject({ id: "hello_file", module: "file.managed", result: true });
    expect(await readFile(join(target, "hello.txt"), "utf8")).toBe(`one for ${ID}\n`);
    // Highstate (no sls): top.zy assigns web; nothing left to change.
    const high = await run("state.apply");
    expect(high).toMatchObject({ success: true, summary: { total: 1, changed: 0 } });
    const shown = await run("state.show_sls", ["web"]);
    expect(shown.return).toEqual([expect.objectContaining({ name: "file.managed:hello_file" })]);
  });

  it("reports compile errors as a failed return with the diagnostics, running nothing", async () => {
    const ret = await run("state.apply", ["broken"]);
    expect(ret.success).toBe(false);
    expect(ret.error).toMatch(/compile error/);
    expect(ret.error).toMatch(/bogus/);
    expect(ret.results).toBeUndefined();
  });

  it("runs a state function directly as an inline state, and state.test changes nothing", async () => {
    const path = join(target, "inline.txt");
    const dry = await run("state.test", [], {});
    expect(dry, JSON.stringify(dry)).toMatchObject({ success: true });
    const t = await run("file.managed", [path], { content: "hi", test: true });
    expect(t).toMatchObject({ success: true, summary: { total: 1 } });
    expect(existsSync(path)).toBe(false);
    const ret = await run("file.managed", [path], { content: "hi" });
    expect(ret).toMatchObject({ success: true, summary: { total: 1, changed: 1 } });
    expect(await readFile(path, "utf8")).toBe("hi\n");
  });

  it("switches to a new revision and rejects a tampered blob or manifest, keeping current", async () => {
    let synced = nextEvent<SyncResult>(peel, "states");
    await publishTestTree(master, 2, tree("two"));
    expect(await synced).toMatchObject({ rev: 2, changed: true, fetched: 1, reused: 2 });
    expect(await readlink(join(statesDir(), "current"))).toBe("rev-2");

    let rejected = nextEvent<{ rev: number; reason: string }>(peel, "states-rejected");
    await publishTestTree(master, 3, tree("three"), { blobFor: "web.zy" });
    expect(await rejected).toMatchObject({ rev: 3, reason: expect.stringMatching(/web\.zy has sha256/) });
    expect(await readlink(join(statesDir(), "current"))).toBe("rev-2");

    rejected = nextEvent(peel, "states-rejected");
    await publishTestTree(master, 4, tree("four"), { manifestSha: "0".repeat(64) });
    expect(await rejected).toMatchObject({ rev: 4, reason: expect.stringMatching(/manifest sha256/) });
    expect(await readlink(join(statesDir(), "current"))).toBe("rev-2");
    expect((await readdir(statesDir())).filter((n) => n.startsWith("rev-")).sort()).toEqual([
      "rev-1",
      "rev-1.json",
      "rev-2",
      "rev-2.json",
    ]);

    synced = nextEvent<SyncResult>(peel, "states");
    await publishTestTree(master, 5, tree("five"));
    expect(await synced).toMatchObject({ rev: 5 });
    // Only the live revision and the one before it stay.
    expect((await readdir(statesDir())).filter((n) => /^rev-\d+$/.test(n)).sort()).toEqual([
      "rev-2",
      "rev-5",
    ]);
    expect((await run("state.apply", ["web"])).success).toBe(true);
    expect(await readFile(join(target, "hello.txt"), "utf8")).toBe(`five for ${ID}\n`);
    await peel.beat();
    const hb = await (await openKv(master, "peel-heartbeat")).get(ID);
    expect(decode<Record<string, unknown>>(hb!.value).states_rev).toBe(5);
  });

  it("starts without a reachable server and applies from its cache", async () => {
    await peel.stop();
    await rm(join(target, "hello.txt"));
    const offline = await startPeel({
      servers: `tls://127.0.0.1:${await freePort()}`,
      connectRetryMs: 60_000,
    });
    await offline.start();
    expect(offline.connected).toBe(false);
    const ret = await offline.applyLocal({ sls: ["web"] });
    expect(ret).toMatchObject({ success: true, origin: "schedule", summary: { changed: 1 } });
    expect(await readFile(join(target, "hello.txt"), "utf8")).toBe(`five for ${ID}\n`);
    const high = await offline.applyLocal();
    expect(high).toMatchObject({ fun: "state.highstate", success: true });
    await offline.stop();
  });
});
