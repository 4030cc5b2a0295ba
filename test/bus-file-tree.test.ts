/**
 * The shared file-tree layout (src/bus/file-tree.ts) against a real nats-server, on a bucket no
 * other part of this test touches: publish order, no-op republish, the empty-tree guard, verified
 * reads, blob clean-up, and replacing a damaged revision.
 */
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import {
  blobKey,
  FileTreeIntegrityError,
  type FileTreeManifest,
  fetchTreeFiles,
  isSafeTreePath,
  kvSource,
  parseRevision,
  publishFileTree,
  readLiveTree,
  readManifest,
  sha256Hex,
  type TreeFileToPublish,
} from "../src/bus/file-tree.js";
import { type StartedNats, startNats } from "./support/nats.js";

let nats: StartedNats;
let nc: NatsConnection;
let kv: KV;

const enc = new TextEncoder();
const dec = new TextDecoder();

function tree(files: Record<string, string>, modes: Record<string, number> = {}): TreeFileToPublish[] {
  return Object.entries(files).map(([path, text]) => {
    const bytes = enc.encode(text);
    const mode = modes[path];
    return {
      path,
      sha256: sha256Hex(bytes),
      size: bytes.length,
      ...(mode === undefined ? {} : { mode }),
      read: () => bytes,
    };
  });
}

async function lastSeq(): Promise<number> {
  const st = await kv.status();
  return (st as unknown as { streamInfo: { state: { last_seq: number } } }).streamInfo.state.last_seq;
}

async function liveKeys(): Promise<string[]> {
  const out: string[] = [];
  for await (const k of await kv.keys()) out.push(k);
  return out.sort();
}

/** Everything the live revision names, read and verified the way peels do. */
async function fetchAll(): Promise<Record<string, string>> {
  const live = await readLiveTree(kv);
  if (!live) return {};
  const out: Record<string, string> = {};
  await fetchTreeFiles(kvSource(kv), live.manifest, (path, _f, data) => {
    out[path] = dec.decode(data);
  });
  return out;
}

beforeAll(async () => {
  nats = await startNats();
  nc = await nats.connectAs("master");
  await bootstrap(nc);
  kv = await openKv(nc, "reactor-files");
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe("file tree in KV", () => {
  it("reads an empty bucket as nothing published", async () => {
    expect(await readLiveTree(kv)).toBeUndefined();
    expect(await publishFileTree(kv, [], { emptyReason: "nothing here" })).toEqual({
      published: false,
      rev: 0,
      files: 0,
      blobsWritten: 0,
      blobsDeleted: 0,
      reason: "nothing here",
    });
    expect(await liveKeys()).toEqual([]);
  });

  it("publishes blobs once per content, the manifest, and the revision naming its bytes", async () => {
    const r = await publishFileTree(
      kv,
      tree({ "b/x.txt": "same\n", "a.txt": "a\n", "b/y.txt": "same\n" }, { "a.txt": 0o600 }),
      { master: "m-1" },
    );
    expect(r).toEqual({ published: true, rev: 1, files: 3, blobsWritten: 2, blobsDeleted: 0 });
    expect(await liveKeys()).toEqual(
      [blobKey(sha256Hex("a\n")), blobKey(sha256Hex("same\n")), "manifest", "revision"].sort(),
    );
    const man = (await kv.get("manifest"))!.value;
    const rev = parseRevision((await kv.get("revision"))!.value);
    expect(rev).toEqual({ rev: 1, manifest_sha256: sha256Hex(man) });
    const m = decode<FileTreeManifest>(man);
    // Sorted by path; a mode only where one was given.
    expect(Object.keys(m.files)).toEqual(["a.txt", "b/x.txt", "b/y.txt"]);
    expect(m.files["a.txt"]).toEqual({ sha256: sha256Hex("a\n"), size: 2, mode: 0o600 });
    expect(m.files["b/x.txt"]).toEqual({ sha256: sha256Hex("same\n"), size: 5 });
    expect(m).toMatchObject({ rev: 1, master: "m-1", v: 1 });
    expect(await fetchAll()).toEqual({ "a.txt": "a\n", "b/x.txt": "same\n", "b/y.txt": "same\n" });
  });

  it("writes nothing when nothing changed", async () => {
    const before = await lastSeq();
    const r = await publishFileTree(
      kv,
      tree({ "b/y.txt": "same\n", "a.txt": "a\n", "b/x.txt": "same\n" }, { "a.txt": 0o600 }),
    );
    expect(r).toEqual({
      published: false,
      rev: 1,
      files: 3,
      blobsWritten: 0,
      blobsDeleted: 0,
      reason: "unchanged",
    });
    expect(await lastSeq()).toBe(before);
  });

  it("a mode change alone is a change", async () => {
    const r = await publishFileTree(
      kv,
      tree({ "a.txt": "a\n", "b/x.txt": "same\n", "b/y.txt": "same\n" }, { "a.txt": 0o644 }),
    );
    expect(r).toMatchObject({ published: true, rev: 2, blobsWritten: 0, blobsDeleted: 0 });
  });

  it("refuses an empty tree over a populated one", async () => {
    const before = await lastSeq();
    const r = await publishFileTree(kv, []);
    expect(r).toMatchObject({ published: false, rev: 2, files: 3, reason: "the tree is empty" });
    expect(await lastSeq()).toBe(before);
    expect(Object.keys(await fetchAll())).toHaveLength(3);
  });

  it("deletes blobs no longer referenced once the new revision is live", async () => {
    const r = await publishFileTree(kv, tree({ "a.txt": "a2\n", "c.txt": "same\n" }));
    expect(r).toEqual({ published: true, rev: 3, files: 2, blobsWritten: 1, blobsDeleted: 1 });
    expect((await kv.get(blobKey(sha256Hex("a\n"))))?.operation).toBe("PURGE");
    expect(await liveKeys()).toEqual(
      [blobKey(sha256Hex("a2\n")), blobKey(sha256Hex("same\n")), "manifest", "revision"].sort(),
    );
    expect(await fetchAll()).toEqual({ "a.txt": "a2\n", "c.txt": "same\n" });
  });

  it("refuses to publish unsafe paths or content that no longer matches its hash", async () => {
    await expect(publishFileTree(kv, tree({ "../x": "x" }))).rejects.toThrow(/invalid file path/);
    const [f] = tree({ "d.txt": "d\n" });
    await expect(publishFileTree(kv, [{ ...f!, read: () => enc.encode("other\n") }])).rejects.toThrow(
      /d\.txt changed while publishing/,
    );
    expect((await readLiveTree(kv))?.revision.rev).toBe(3);
  });

  it("rejects a tampered blob on fetch and reuses only local bytes that match", async () => {
    const key = blobKey(sha256Hex("a2\n"));
    await kv.put(key, enc.encode("evil\n"));
    await expect(fetchAll()).rejects.toThrow(FileTreeIntegrityError);
    await expect(fetchAll()).rejects.toThrow(/a\.txt has sha256 .* the manifest says/);

    // A stale local copy is not trusted either: the blob is fetched (and still rejected).
    const live = (await readLiveTree(kv))!;
    const reuseBad = fetchTreeFiles(kvSource(kv), live.manifest, () => {}, {
      reuse: () => enc.encode("stale\n"),
    });
    await expect(reuseBad).rejects.toThrow(/has sha256/);
    // A matching local copy is used instead of the bucket.
    const counts = await fetchTreeFiles(kvSource(kv), live.manifest, () => {}, {
      reuse: (sha) => (sha === sha256Hex("a2\n") ? enc.encode("a2\n") : undefined),
    });
    expect(counts).toEqual({ fetched: 1, reused: 1 });

    await kv.purge(key);
    await expect(fetchAll()).rejects.toThrow(/blob .* for a\.txt is missing/);
  });

  it("rejects a tampered manifest, and the next publish replaces it with a higher revision", async () => {
    const m = decode<FileTreeManifest>((await kv.get("manifest"))!.value);
    await kv.put("manifest", encode({ ...m, files: { ...m.files, "x.txt": m.files["c.txt"] } }));
    await expect(readLiveTree(kv)).rejects.toThrow(/manifest sha256 .* does not match/);

    // Even a manifest that matches its revision may not name paths outside the tree.
    const evil = encode({ ...m, files: { "../etc/passwd": m.files["c.txt"] } });
    await expect(
      readManifest(async (k) => (k === "manifest" ? evil : undefined), {
        rev: 3,
        manifest_sha256: sha256Hex(evil),
      }),
    ).rejects.toThrow(/unsafe path/);

    const r = await publishFileTree(kv, tree({ "a.txt": "a2\n", "c.txt": "same\n" }));
    expect(r).toMatchObject({ published: true, rev: 4, blobsWritten: 1 });
    expect(r.replacedDamaged).toMatch(/manifest sha256/);
    expect(await fetchAll()).toEqual({ "a.txt": "a2\n", "c.txt": "same\n" });
  });

  it("an unreadable revision is damage too, replaced above every rev it could have had", async () => {
    await kv.put("revision", enc.encode("not json"));
    await expect(readLiveTree(kv)).rejects.toThrow(FileTreeIntegrityError);
    const r = await publishFileTree(kv, tree({ "a.txt": "a3\n" }));
    // The manifest still says rev 4.
    expect(r).toMatchObject({ published: true, rev: 5, blobsDeleted: 2 });
    expect(await fetchAll()).toEqual({ "a.txt": "a3\n" });

    // Nothing states a rev any more: the entry's stream sequence is above any rev ever written.
    await kv.put("manifest", enc.encode("{"));
    await kv.put("revision", enc.encode("{"));
    const seq = await lastSeq();
    const r2 = await publishFileTree(kv, tree({ "a.txt": "a3\n" }));
    expect(r2).toMatchObject({ published: true, rev: seq + 1, blobsWritten: 0 });
    expect(await fetchAll()).toEqual({ "a.txt": "a3\n" });
  });

  it("knows safe tree paths", () => {
    for (const bad of ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b", "a\0b", "a/"]) {
      expect(isSafeTreePath(bad), JSON.stringify(bad)).toBe(false);
    }
    expect(isSafeTreePath("web/init.zy")).toBe(true);
  });
});
