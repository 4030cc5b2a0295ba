/**
 * State distribution over a real nats-server: content-addressed blobs, manifest, revision last;
 * no writes when nothing changed; an empty or missing tree never wipes the bucket; only the
 * lease holder publishes.
 */
import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import type { StateManifest, StateRevision } from "../src/jobs/wire.js";
import {
  blobKey,
  type Master,
  type MasterConfig,
  readLiveStates,
  STATE_PUBLISHER_LEASE,
  STATES_PUBLISH_SUBJECT,
  type StatePublishResult,
} from "../src/master/index.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

let nats: StartedNats;
let work: string;
let admin: NatsConnection;
let masterNc: NatsConnection;
let files: KV;
const masters: Master[] = [];

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

async function startMaster(
  id: string,
  statesDir: string,
  extra: Partial<MasterConfig> = {},
): Promise<Master> {
  const m = await startTestMaster(nats, { id, statesDir, publishIntervalMs: 3_600_000, ...extra });
  masters.push(m);
  return m;
}

/** The bucket's last sequence: unchanged means nothing at all was written. */
async function lastSeq(): Promise<number> {
  const st = await files.status();
  return (st as unknown as { streamInfo: { state: { last_seq: number } } }).streamInfo.state.last_seq;
}

async function blobKeys(): Promise<string[]> {
  const out: string[] = [];
  for await (const k of await files.keys("blob.*")) out.push(k);
  return out.sort();
}

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-states-"));
  admin = await nats.connectAs("admin");
  masterNc = await nats.connectAs("master");
}, 30_000);

afterAll(async () => {
  for (const m of masters) await m.stop();
  await admin?.drain().catch(() => {});
  await masterNc?.drain().catch(() => {});
  await nats?.stop();
  await rm(work, { recursive: true, force: true });
});

describe("state publishing", () => {
  const treeA = () => join(work, "a");
  let a: Master;

  it("publishes blobs, manifest and revision at start", async () => {
    await mkdir(join(treeA(), "web"), { recursive: true });
    await mkdir(join(treeA(), ".git"), { recursive: true });
    await writeFile(join(treeA(), "top.zy"), "base:\n  '*':\n    - web\n");
    await writeFile(join(treeA(), "web", "init.zy"), "nginx:\n  pkg.installed: []\n");
    await writeFile(join(treeA(), "web", "same.zy"), "nginx:\n  pkg.installed: []\n");
    await writeFile(join(treeA(), ".git", "HEAD"), "ref: refs/heads/main\n");
    await chmod(join(treeA(), "web", "init.zy"), 0o640);
    a = await startMaster("states-a", treeA());
    files = await openKv(admin, "state-files");
    expect(a.isStatePublisher).toBe(true);

    const live = await readLiveStates(files);
    expect(live?.revision.rev).toBe(1);
    const m = live!.manifest;
    expect(Object.keys(m.files).sort()).toEqual(["top.zy", "web/init.zy", "web/same.zy"]);
    expect(m.files["web/init.zy"]).toEqual({
      sha256: sha("nginx:\n  pkg.installed: []\n"),
      size: 27,
      mode: 0o640,
    });
    expect(m.master).toBe("states-a");
    // Identical content is stored once.
    expect(await blobKeys()).toEqual(
      [blobKey(sha("base:\n  '*':\n    - web\n")), blobKey(sha("nginx:\n  pkg.installed: []\n"))].sort(),
    );
    const blob = await files.get(blobKey(sha("base:\n  '*':\n    - web\n")));
    expect(blob?.string()).toBe("base:\n  '*':\n    - web\n");
    // The revision names the exact manifest bytes.
    const manEntry = await files.get("manifest");
    const rev = decode<StateRevision>((await files.get("revision"))!.value);
    expect(rev.manifest_sha256).toBe(createHash("sha256").update(manEntry!.value).digest("hex"));
    expect(decode<StateManifest>(manEntry!.value).rev).toBe(rev.rev);
  });

  it("writes nothing when nothing changed", async () => {
    const before = await lastSeq();
    const r = await a.publishStates();
    expect(r).toMatchObject({ published: false, rev: 1, reason: "unchanged", blobsWritten: 0 });
    expect(await lastSeq()).toBe(before);
  });

  it("publishes a new revision on change and then deletes blobs no longer referenced", async () => {
    const oldBlob = blobKey(sha("base:\n  '*':\n    - web\n"));
    await writeFile(join(treeA(), "top.zy"), "base:\n  '*':\n    - web\n    - db\n");
    const r = await a.publishStates();
    expect(r).toMatchObject({ published: true, rev: 2, files: 3, blobsWritten: 1, blobsDeleted: 1 });
    const live = await readLiveStates(files);
    expect(live?.revision.rev).toBe(2);
    expect(live?.manifest.files["top.zy"]?.sha256).toBe(sha("base:\n  '*':\n    - web\n    - db\n"));
    expect(await blobKeys()).not.toContain(oldBlob);
    expect(await blobKeys()).toHaveLength(2);
  });

  it("an empty or missing tree never wipes the published states", async () => {
    const empty = join(work, "empty");
    await mkdir(empty);
    const logs: string[] = [];
    const e = await startMaster("states-empty", empty, { log: (m) => logs.push(m) });
    // states-a holds the lease; hand it over so the empty master is the publisher.
    await a.stop();
    const before = await lastSeq();
    const r = (await e.publishStates()) as StatePublishResult;
    expect(e.isStatePublisher).toBe(true);
    expect(r).toMatchObject({ published: false, rev: 2, files: 3, reason: "states dir is empty" });
    expect(logs.join("\n")).toMatch(/is empty; keeping published revision 2 \(3 files\)/);
    await rm(empty, { recursive: true });
    const r2 = (await e.publishStates()) as StatePublishResult;
    expect(r2).toMatchObject({ published: false, rev: 2, reason: "states dir is missing" });
    expect(await lastSeq()).toBe(before);
    expect((await readLiveStates(files))?.manifest.files).toHaveProperty("top.zy");
    await e.stop();
  });

  it("only the lease holder publishes; another master takes over when it is released", async () => {
    const treeB = join(work, "b");
    const treeC = join(work, "c");
    await mkdir(treeB);
    await mkdir(treeC);
    await writeFile(join(treeB, "b.zy"), "b: {}\n");
    await writeFile(join(treeC, "c.zy"), "c: {}\n");
    const b = await startMaster("states-b", treeB);
    const c = await startMaster("states-c", treeC);
    expect(b.isStatePublisher).toBe(true);
    expect(c.isStatePublisher).toBe(false);
    expect((await readLiveStates(files))?.manifest.files).toEqual({
      "b.zy": { sha256: sha("b: {}\n"), size: 6, mode: expect.any(Number) },
    });
    const before = await lastSeq();
    expect(await c.publishStates()).toBeUndefined();
    expect(await lastSeq()).toBe(before);

    // An operator's publish request is answered by the holder only.
    await writeFile(join(treeB, "b2.zy"), "b2: {}\n");
    const reply = await admin.request(STATES_PUBLISH_SUBJECT, encode({}), { timeout: 10_000 });
    expect(decode<StatePublishResult & { master: string }>(reply.data)).toMatchObject({
      master: "states-b",
      published: true,
      rev: 4,
      files: 2,
    });

    // A lease held by someone else (a master that is still alive) is respected.
    const leases = await openKv(masterNc, "leases");
    await b.stop();
    await leases.put(
      STATE_PUBLISHER_LEASE,
      encode({ holder: "someone-else", renewed_at: new Date().toISOString() }),
    );
    expect(await c.publishStates()).toBeUndefined();
    // Released: c watches the bucket and takes the lease at once, publishing its own tree.
    await leases.delete(STATE_PUBLISHER_LEASE);
    await waitFor("c to take the released lease", () => c.isStatePublisher);
    const r = await c.publishStates();
    expect(r).toMatchObject({ rev: 5, files: 1 });
    expect(c.isStatePublisher).toBe(true);
    expect(Object.keys((await readLiveStates(files))!.manifest.files)).toEqual(["c.zy"]);
  });
});
