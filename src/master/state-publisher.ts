/**
 * Publishes the master's states directory to the `state-files` bucket: content-addressed blobs
 * (`blob.<sha256>`), then `manifest`, then `revision` last, so a peel that sees a revision can
 * always fetch every blob its manifest names. Old blobs are removed only after the new revision
 * is live. Publishing is a no-op when the tree did not change, and an empty or missing tree never
 * replaces a populated one (a missing mount must not wipe the fleet's states).
 */
import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import { decode, encode } from "../bus/codec.js";
import type { StateManifest, StateRevision } from "../jobs/wire.js";

export type ManifestFiles = StateManifest["files"];

export interface StatePublishResult {
  /** True when a new revision was written. */
  published: boolean;
  /** The live revision after this call (0 when the bucket holds none). */
  rev: number;
  files: number;
  blobsWritten: number;
  blobsDeleted: number;
  /** Why nothing was published, when it was not. */
  reason?: string;
}

interface ScannedFile {
  path: string;
  abs: string;
  sha256: string;
  size: number;
  mode: number;
}

const BLOB_PREFIX = "blob.";

export function blobKey(sha256: string): string {
  return `${BLOB_PREFIX}${sha256}`;
}

/**
 * Every regular file under `dir` (symlinks followed), keyed by posix relative path. Names
 * starting with "." are skipped so VCS metadata (.git) is never shipped to the fleet. A missing
 * directory reads as empty.
 */
export async function scanTree(dir: string): Promise<ScannedFile[] | undefined> {
  const out: ScannedFile[] = [];
  try {
    if (!(await stat(dir)).isDirectory()) return undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const walk = async (abs: string, rel: string): Promise<void> => {
    const entries = await readdir(abs, { withFileTypes: true });
    for (const ent of entries) {
      if (ent.name.startsWith(".")) continue;
      const childAbs = join(abs, ent.name);
      const childRel = rel === "" ? ent.name : `${rel}/${ent.name}`;
      const st = await stat(childAbs);
      if (st.isDirectory()) await walk(childAbs, childRel);
      else if (st.isFile()) {
        const data = await readFile(childAbs);
        out.push({
          path: childRel,
          abs: childAbs,
          sha256: createHash("sha256").update(data).digest("hex"),
          size: data.length,
          mode: st.mode & 0o7777,
        });
      }
    }
  };
  await walk(dir, "");
  out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return out;
}

function sameFiles(a: ManifestFiles, b: ManifestFiles): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    const x = a[k]!;
    const y = b[k];
    if (!y || x.sha256 !== y.sha256 || x.size !== y.size || x.mode !== y.mode) return false;
  }
  return true;
}

function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export interface LiveStates {
  revision: StateRevision;
  manifest: StateManifest;
}

/** The published revision and its manifest, or undefined when none is (consistently) live. */
export async function readLiveStates(kv: KV): Promise<LiveStates | undefined> {
  const [revEntry, manEntry] = await Promise.all([kv.get("revision"), kv.get("manifest")]);
  if (revEntry === null || revEntry.operation !== "PUT") return undefined;
  const revision = decode<StateRevision>(revEntry.value);
  if (manEntry === null || manEntry.operation !== "PUT")
    return { revision, manifest: emptyManifest(revision) };
  const manifest = decode<StateManifest>(manEntry.value);
  // A master that died between writing the manifest and the revision leaves them disagreeing.
  if (sha256Hex(manEntry.value) !== revision.manifest_sha256 || manifest.rev !== revision.rev) {
    return { revision, manifest: emptyManifest(revision) };
  }
  return { revision, manifest };
}

function emptyManifest(revision: StateRevision): StateManifest {
  return { rev: revision.rev, files: {}, published_at: "", master: "" };
}

export class StatePublisher {
  constructor(
    private readonly kv: KV,
    private readonly statesDir: string,
    private readonly masterId: string,
    private readonly log: (msg: string) => void = () => {},
  ) {}

  async publish(): Promise<StatePublishResult> {
    const scanned = await scanTree(this.statesDir);
    const live = await readLiveStates(this.kv);
    const liveRev = live?.revision.rev ?? 0;
    const liveFiles = live?.manifest.files ?? {};
    const base = { rev: liveRev, blobsWritten: 0, blobsDeleted: 0 };

    if (scanned === undefined || scanned.length === 0) {
      const what = scanned === undefined ? "is missing" : "is empty";
      if (Object.keys(liveFiles).length > 0) {
        this.log(
          `warning: states dir ${this.statesDir} ${what}; keeping published revision ${liveRev} ` +
            `(${Object.keys(liveFiles).length} files) instead of wiping it`,
        );
      }
      return {
        ...base,
        published: false,
        files: Object.keys(liveFiles).length,
        reason: `states dir ${what}`,
      };
    }

    const files: ManifestFiles = {};
    for (const f of scanned) files[f.path] = { sha256: f.sha256, size: f.size, mode: f.mode };
    const existingBlobs = await this.blobKeys();
    const blobsWritten = await this.writeMissingBlobs(scanned, existingBlobs);

    if (live && sameFiles(files, liveFiles)) {
      return { ...base, published: false, files: scanned.length, blobsWritten, reason: "unchanged" };
    }

    const manifest: StateManifest = {
      rev: liveRev + 1,
      files,
      published_at: new Date().toISOString(),
      master: this.masterId,
    };
    const manifestBytes = encode(manifest);
    await this.kv.put("manifest", manifestBytes);
    const revision: StateRevision = { rev: manifest.rev, manifest_sha256: sha256Hex(manifestBytes) };
    await this.kv.put("revision", encode(revision));

    const wanted = new Set(scanned.map((f) => blobKey(f.sha256)));
    let blobsDeleted = 0;
    for (const k of existingBlobs) {
      if (wanted.has(k)) continue;
      await this.kv.purge(k);
      blobsDeleted++;
    }
    this.log(`published states revision ${manifest.rev} (${scanned.length} files)`);
    return { published: true, rev: manifest.rev, files: scanned.length, blobsWritten, blobsDeleted };
  }

  private async blobKeys(): Promise<Set<string>> {
    const keys = new Set<string>();
    for await (const k of await this.kv.keys(`${BLOB_PREFIX}*`)) keys.add(k);
    return keys;
  }

  /** Uploads blobs the bucket lacks, which also repairs a bucket whose blobs were removed. */
  private async writeMissingBlobs(scanned: ScannedFile[], existing: Set<string>): Promise<number> {
    let n = 0;
    const done = new Set<string>();
    for (const f of scanned) {
      const key = blobKey(f.sha256);
      if (existing.has(key) || done.has(key)) continue;
      const data = await readFile(f.abs);
      // The file may have changed since it was hashed; a blob must match its name.
      if (sha256Hex(data) !== f.sha256) throw new Error(`${f.abs} changed while publishing; will retry`);
      await this.kv.put(key, data);
      done.add(key);
      n++;
    }
    return n;
  }
}
