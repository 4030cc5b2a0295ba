/**
 * A file tree published through a KV bucket (`state-files`, `settings-files`): content-addressed
 * blobs `blob.<sha256>`, a `manifest` (path → entry), and `revision` (rev + sha256 of the
 * manifest's bytes) written last, so a reader that sees a revision finds every blob its manifest
 * names. Old blobs go only once the new revision is live. Publishing writes nothing when the tree
 * did not change, and an empty tree never replaces a populated one (a missing mount must not wipe
 * the fleet's copy). Readers check every hash: the bucket is shared, what it holds gets executed.
 */
import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { errText } from "../util/errors.js";
import { decode, encode } from "./codec.js";

/** One file of a tree; `mode` only for trees whose permissions matter (states). */
export interface FileTreeEntry {
  sha256: string;
  size: number;
  mode?: number;
}

export interface FileTreeManifest<E extends FileTreeEntry = FileTreeEntry> {
  rev: number;
  /** Relative path (posix) → file entry. */
  files: Record<string, E>;
  published_at: string;
  master: string;
}

export interface FileTreeRevision {
  rev: number;
  /** sha256 of the manifest's encoded bytes, checked by readers before they trust it. */
  manifest_sha256: string;
}

/** The bucket's content disagrees with itself: a revision, manifest or blob that does not check out. */
export class FileTreeIntegrityError extends Error {
  override name = "FileTreeIntegrityError";
}

/** Reads one key of the bucket; undefined when absent or deleted. */
export type FileTreeSource = (key: string) => Promise<Uint8Array | undefined>;

export const MANIFEST_KEY = "manifest";
export const REVISION_KEY = "revision";
const BLOB_PREFIX = "blob.";
const SHA256_HEX = /^[0-9a-f]{64}$/;
const FETCH_PARALLELISM = 8;

export function blobKey(sha256: string): string {
  return `${BLOB_PREFIX}${sha256}`;
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A path that stays inside the tree: relative, posix, no `.`/`..`/empty segments. */
export function isSafeTreePath(path: string): boolean {
  return !(
    path === "" ||
    path.startsWith("/") ||
    path.includes("\\") ||
    path.includes("\0") ||
    path.split("/").some((p) => p === "" || p === "." || p === "..")
  );
}

export function kvSource(kv: KV): FileTreeSource {
  return async (key) => {
    const e = await kv.get(key);
    return e && e.operation === "PUT" ? e.value : undefined;
  };
}

function decodeChecked<T extends object>(data: Uint8Array, what: string): T {
  try {
    return decode<T>(data);
  } catch (err) {
    throw new FileTreeIntegrityError(`${what} is unreadable: ${errText(err)}`);
  }
}

/** Checks a decoded revision's fields. */
export function checkRevision(revision: Partial<FileTreeRevision>): FileTreeRevision {
  const { rev, manifest_sha256: sha } = revision;
  if (typeof rev !== "number" || !Number.isInteger(rev) || rev < 0) {
    throw new FileTreeIntegrityError(`revision ${JSON.stringify(rev)} is not valid`);
  }
  if (typeof sha !== "string" || !SHA256_HEX.test(sha)) {
    throw new FileTreeIntegrityError(`revision ${rev} has no valid manifest_sha256`);
  }
  return { rev, manifest_sha256: sha };
}

export function parseRevision(data: Uint8Array): FileTreeRevision {
  return checkRevision(decodeChecked<Partial<FileTreeRevision>>(data, "the revision"));
}

/**
 * The manifest `revision` names, once its bytes match the revision's hash, its rev matches, and
 * every entry has a safe path and a well-formed hash.
 */
export async function readManifest<E extends FileTreeEntry>(
  source: FileTreeSource,
  revision: FileTreeRevision,
): Promise<{ manifest: FileTreeManifest<E>; bytes: Uint8Array }> {
  const bytes = await source(MANIFEST_KEY);
  if (!bytes) throw new FileTreeIntegrityError(`revision ${revision.rev}: the manifest is missing`);
  const got = sha256Hex(bytes);
  if (got !== revision.manifest_sha256) {
    throw new FileTreeIntegrityError(
      `revision ${revision.rev}: manifest sha256 ${got} does not match the revision's ${revision.manifest_sha256}`,
    );
  }
  const manifest = decodeChecked<FileTreeManifest<E>>(bytes, `the manifest of revision ${revision.rev}`);
  if (manifest.rev !== revision.rev) {
    throw new FileTreeIntegrityError(`manifest is for revision ${manifest.rev}, expected ${revision.rev}`);
  }
  const files: unknown = manifest.files;
  if (files === null || typeof files !== "object" || Array.isArray(files)) {
    throw new FileTreeIntegrityError(`manifest ${revision.rev} has no file list`);
  }
  for (const [path, f] of Object.entries(manifest.files)) {
    if (!isSafeTreePath(path)) {
      throw new FileTreeIntegrityError(`manifest lists an unsafe path ${JSON.stringify(path)}`);
    }
    if (typeof f?.sha256 !== "string" || !SHA256_HEX.test(f.sha256)) {
      throw new FileTreeIntegrityError(`manifest entry ${path} has no valid sha256`);
    }
  }
  return { manifest, bytes };
}

export interface LiveFileTree<E extends FileTreeEntry = FileTreeEntry> {
  revision: FileTreeRevision;
  manifest: FileTreeManifest<E>;
  manifestBytes: Uint8Array;
}

/**
 * The published revision and its checked manifest; undefined when nothing was published.
 * Throws FileTreeIntegrityError when what is there does not check out.
 */
export async function readLiveTree<E extends FileTreeEntry = FileTreeEntry>(
  kv: KV,
): Promise<LiveFileTree<E> | undefined> {
  const source = kvSource(kv);
  const raw = await source(REVISION_KEY);
  if (!raw) return undefined;
  const revision = parseRevision(raw);
  const { manifest, bytes } = await readManifest<E>(source, revision);
  return { revision, manifest, manifestBytes: bytes };
}

export interface FetchFilesOptions {
  /** Bytes held locally for a hash (previous revision); used only when they still match it. */
  reuse?: (sha256: string) => Promise<Uint8Array | undefined> | Uint8Array | undefined;
}

/**
 * Hands every file of `manifest` to `onFile` once its bytes match the manifest's hash, reusing
 * local copies where it can. Throws FileTreeIntegrityError for a missing or altered blob; by then
 * no `onFile` call is still running.
 */
export async function fetchTreeFiles<E extends FileTreeEntry>(
  source: FileTreeSource,
  manifest: FileTreeManifest<E>,
  onFile: (path: string, entry: E, data: Uint8Array) => Promise<void> | void,
  opts: FetchFilesOptions = {},
): Promise<{ fetched: number; reused: number }> {
  const files = Object.entries(manifest.files);
  let fetched = 0;
  let reused = 0;
  const one = async ([path, f]: [string, E]): Promise<void> => {
    let data = await opts.reuse?.(f.sha256);
    if (data && sha256Hex(data) === f.sha256) reused++;
    else {
      data = await source(blobKey(f.sha256));
      if (!data) throw new FileTreeIntegrityError(`blob ${f.sha256} for ${path} is missing`);
      const h = sha256Hex(data);
      if (h !== f.sha256) {
        throw new FileTreeIntegrityError(`blob for ${path} has sha256 ${h}, the manifest says ${f.sha256}`);
      }
      fetched++;
    }
    await onFile(path, f, data);
  };
  for (let i = 0; i < files.length; i += FETCH_PARALLELISM) {
    // allSettled: a failure must not leave sibling writes running after the caller cleans up.
    const settled = await Promise.allSettled(files.slice(i, i + FETCH_PARALLELISM).map(one));
    const failed = settled.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  }
  return { fetched, reused };
}

/** One file to publish. `read` is called only for blobs the bucket lacks. */
export interface TreeFileToPublish {
  path: string;
  sha256: string;
  size: number;
  mode?: number;
  read: () => Promise<Uint8Array> | Uint8Array;
}

export interface FileTreePublishResult {
  /** True when a new revision was written. */
  published: boolean;
  /** The live revision after this call (0 when the bucket holds none). */
  rev: number;
  files: number;
  blobsWritten: number;
  blobsDeleted: number;
  /** Why nothing was published, when it was not. */
  reason?: string;
  /** Set when the live revision did not check out and was replaced: what was wrong with it. */
  replacedDamaged?: string;
}

export interface PublishFileTreeOptions {
  /** Recorded in the manifest. */
  master?: string;
  /** The `reason` returned when the tree is empty and nothing was published. */
  emptyReason?: string;
}

/**
 * Publishes `files`: missing blobs, then the manifest, then the revision; unreferenced blobs go
 * once the new revision is live. A live revision that does not check out is replaced by a
 * complete one, never built upon. Writes nothing when the tree is empty or unchanged.
 */
export async function publishFileTree(
  kv: KV,
  files: readonly TreeFileToPublish[],
  opts: PublishFileTreeOptions = {},
): Promise<FileTreePublishResult> {
  let live: LiveFileTree | undefined;
  let liveRev: number;
  let replacedDamaged: string | undefined;
  try {
    live = await readLiveTree(kv);
    liveRev = live?.revision.rev ?? 0;
  } catch (err) {
    if (!(err instanceof FileTreeIntegrityError)) throw err;
    replacedDamaged = err.message;
    liveRev = await damagedRev(kv);
  }
  const liveFiles = live?.manifest.files ?? {};
  const base = { rev: liveRev, blobsWritten: 0, blobsDeleted: 0 };

  if (files.length === 0) {
    const reason = opts.emptyReason ?? "the tree is empty";
    return { ...base, published: false, files: Object.keys(liveFiles).length, reason };
  }

  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const manifestFiles: Record<string, FileTreeEntry> = {};
  for (const f of sorted) {
    if (!isSafeTreePath(f.path)) throw new Error(`invalid file path ${JSON.stringify(f.path)}`);
    manifestFiles[f.path] =
      f.mode === undefined
        ? { sha256: f.sha256, size: f.size }
        : { sha256: f.sha256, size: f.size, mode: f.mode };
  }

  const existing = new Set<string>();
  for await (const k of await kv.keys(`${BLOB_PREFIX}*`)) existing.add(k);
  const blobsWritten = await writeMissingBlobs(kv, sorted, existing);

  if (live && sameFiles(manifestFiles, liveFiles)) {
    return { ...base, published: false, files: sorted.length, blobsWritten, reason: "unchanged" };
  }

  const manifest: FileTreeManifest = {
    rev: liveRev + 1,
    files: manifestFiles,
    published_at: new Date().toISOString(),
    master: opts.master ?? "",
  };
  const manifestBytes = encode(manifest);
  await kv.put(MANIFEST_KEY, manifestBytes);
  const revision: FileTreeRevision = { rev: manifest.rev, manifest_sha256: sha256Hex(manifestBytes) };
  await kv.put(REVISION_KEY, encode(revision));

  const wanted = new Set(sorted.map((f) => blobKey(f.sha256)));
  let blobsDeleted = 0;
  for (const k of existing) {
    if (wanted.has(k)) continue;
    await kv.purge(k);
    blobsDeleted++;
  }
  return {
    published: true,
    rev: manifest.rev,
    files: sorted.length,
    blobsWritten,
    blobsDeleted,
    ...(replacedDamaged === undefined ? {} : { replacedDamaged }),
  };
}

/** Uploads blobs the bucket lacks, which also repairs a bucket whose blobs were removed. */
async function writeMissingBlobs(
  kv: KV,
  files: readonly TreeFileToPublish[],
  existing: ReadonlySet<string>,
): Promise<number> {
  const done = new Set<string>();
  for (const f of files) {
    const key = blobKey(f.sha256);
    if (existing.has(key) || done.has(key)) continue;
    const data = await f.read();
    // The source may have changed since it was hashed; a blob must match its name.
    if (sha256Hex(data) !== f.sha256) throw new Error(`${f.path} changed while publishing; will retry`);
    await kv.put(key, data);
    done.add(key);
  }
  return done.size;
}

/**
 * A revision number above the damaged one, so peels holding it still see a change: the highest
 * rev the revision or manifest still states, else the revision entry's stream sequence (every
 * publish writes at least one entry, so it is never below a rev that was published).
 */
async function damagedRev(kv: KV): Promise<number> {
  const [rev, man] = await Promise.all([kv.get(REVISION_KEY), kv.get(MANIFEST_KEY)]);
  const stated = [rev, man].map((e) => {
    try {
      const n = e && e.operation === "PUT" ? decode<{ rev?: unknown }>(e.value).rev : undefined;
      return typeof n === "number" && Number.isInteger(n) && n > 0 ? n : 0;
    } catch {
      return 0;
    }
  });
  const best = Math.max(...stated);
  return best > 0 ? best : (rev?.revision ?? 0);
}

function sameFiles(a: Record<string, FileTreeEntry>, b: Record<string, FileTreeEntry>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => {
    const x = a[k]!;
    const y = b[k];
    return y !== undefined && x.sha256 === y.sha256 && x.size === y.size && x.mode === y.mode;
  });
}
