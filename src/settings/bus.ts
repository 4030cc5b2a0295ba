/**
 * How settings travel over the bus.
 *
 * `settings-files` (readable by every peel) mirrors `state-files`: content-addressed blobs
 * `blob.<sha256>` holding sanitized file text, a `manifest` (path → sha256), and `revision`
 * (rev + sha256 of the manifest bytes) written last, so a reader that sees a revision finds every
 * blob it names. Nothing is written when the tree did not change, and an empty tree never replaces
 * a populated one (a missing mount must not wipe the fleet's settings).
 *
 * `secrets` key `<peel>` holds that peel's sealed blob; a peel's credentials can direct-get only
 * its own key.
 */
import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import type { KeyPair } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { openKv } from "../bus/bootstrap.js";
import { decode, encode } from "../bus/codec.js";
import { assertPeelId } from "../bus/names.js";
import { assertRelPath } from "./source.js";

export interface SettingsManifest {
  rev: number;
  /** Relative path (posix) → content hash and size. */
  files: Record<string, { sha256: string; size: number }>;
  published_at: string;
  master: string;
}

export interface SettingsRevision {
  rev: number;
  /** sha256 of the manifest's encoded bytes, checked by readers before they trust it. */
  manifest_sha256: string;
}

export interface SettingsPublishResult {
  published: boolean;
  /** The live revision after this call (0 when none is published). */
  rev: number;
  files: number;
  blobsWritten: number;
  blobsDeleted: number;
  /** Why nothing was published, when it was not. */
  reason?: string;
}

export interface FetchedSettingsTree {
  /** 0 when nothing was ever published: an empty tree. */
  rev: number;
  manifestSha256: string;
  files: Record<string, string>;
}

/** The bucket's content disagrees with itself: a blob or manifest that does not match its hash. */
export class SettingsIntegrityError extends Error {
  override name = "SettingsIntegrityError";
}

const BLOB_PREFIX = "blob.";
const SHA256_HEX = /^[0-9a-f]{64}$/;
const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

export function settingsBlobKey(sha256: string): string {
  return `${BLOB_PREFIX}${sha256}`;
}

function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

async function bucket(target: NatsConnection | KV, name: "settings-files" | "secrets"): Promise<KV> {
  // A KV has `put`; a NatsConnection does not.
  return "put" in target ? target : openKv(target, name);
}

async function readLive(
  kv: KV,
): Promise<
  { revision: SettingsRevision; manifest: SettingsManifest; manifestBytes: Uint8Array } | undefined
> {
  const rev = await kv.get("revision");
  if (rev === null || rev.operation !== "PUT") return undefined;
  const revision = decode<SettingsRevision>(rev.value);
  if (!Number.isInteger(revision.rev) || revision.rev < 0) {
    throw new SettingsIntegrityError(`settings revision ${JSON.stringify(revision.rev)} is not valid`);
  }
  if (typeof revision.manifest_sha256 !== "string" || !SHA256_HEX.test(revision.manifest_sha256)) {
    throw new SettingsIntegrityError(`settings revision ${revision.rev} has no valid manifest_sha256`);
  }
  const man = await kv.get("manifest");
  if (man === null || man.operation !== "PUT") {
    throw new SettingsIntegrityError(`settings revision ${revision.rev}: the manifest is missing`);
  }
  const got = sha256Hex(man.value);
  if (got !== revision.manifest_sha256) {
    throw new SettingsIntegrityError(
      `settings revision ${revision.rev}: manifest sha256 ${got} does not match the revision's ${revision.manifest_sha256}`,
    );
  }
  const manifest = decode<SettingsManifest>(man.value);
  if (manifest.rev !== revision.rev) {
    throw new SettingsIntegrityError(
      `settings manifest is for revision ${manifest.rev}, expected ${revision.rev}`,
    );
  }
  if (manifest.files === null || typeof manifest.files !== "object" || Array.isArray(manifest.files)) {
    throw new SettingsIntegrityError(`settings manifest ${revision.rev} has no file list`);
  }
  for (const [path, f] of Object.entries(manifest.files)) {
    try {
      assertRelPath(path);
    } catch {
      throw new SettingsIntegrityError(`settings manifest lists an unsafe path ${JSON.stringify(path)}`);
    }
    if (typeof f?.sha256 !== "string" || !SHA256_HEX.test(f.sha256)) {
      throw new SettingsIntegrityError(`settings manifest entry ${path} has no valid sha256`);
    }
  }
  return { revision, manifest, manifestBytes: man.value };
}

/**
 * Publishes sanitized settings files (`PreparedSettings.files`): missing blobs, then the
 * manifest, then the revision; old blobs go once the new revision is live. Must only ever be
 * given sanitized text: the bucket is readable by every peel.
 */
export async function publishSettingsTree(
  target: NatsConnection | KV,
  files: Readonly<Record<string, string>>,
  opts: { master?: string; log?: (msg: string) => void } = {},
): Promise<SettingsPublishResult> {
  const kv = await bucket(target, "settings-files");
  const log = opts.log ?? (() => {});
  let live: Awaited<ReturnType<typeof readLive>>;
  let liveRev: number;
  try {
    live = await readLive(kv);
    liveRev = live?.revision.rev ?? 0;
  } catch (err) {
    // A damaged live revision is replaced by a complete one, never built upon.
    if (!(err instanceof SettingsIntegrityError)) throw err;
    log(`warning: the published settings revision is damaged (${err.message}); replacing it`);
    live = undefined;
    liveRev = await rawRev(kv);
  }
  const liveFiles = live?.manifest.files ?? {};
  const paths = Object.keys(files).sort();
  const base = { rev: liveRev, blobsWritten: 0, blobsDeleted: 0 };

  if (paths.length === 0) {
    const n = Object.keys(liveFiles).length;
    if (n > 0) {
      log(
        `warning: the settings tree is empty; keeping published settings revision ${liveRev} (${n} files) instead of wiping it`,
      );
    }
    return { ...base, published: false, files: n, reason: "settings tree is empty" };
  }

  const manifestFiles: SettingsManifest["files"] = {};
  const data = new Map<string, Uint8Array>();
  for (const path of paths) {
    assertRelPath(path);
    const bytes = enc.encode(files[path]!);
    const sha = sha256Hex(bytes);
    manifestFiles[path] = { sha256: sha, size: bytes.length };
    data.set(sha, bytes);
  }

  const existing = new Set<string>();
  for await (const k of await kv.keys(`${BLOB_PREFIX}*`)) existing.add(k);
  let blobsWritten = 0;
  for (const [sha, bytes] of data) {
    if (existing.has(settingsBlobKey(sha))) continue;
    await kv.put(settingsBlobKey(sha), bytes);
    blobsWritten++;
  }

  if (live && sameFiles(manifestFiles, liveFiles)) {
    return { ...base, published: false, files: paths.length, blobsWritten, reason: "unchanged" };
  }

  const manifest: SettingsManifest = {
    rev: liveRev + 1,
    files: manifestFiles,
    published_at: new Date().toISOString(),
    master: opts.master ?? "",
  };
  const manifestBytes = encode(manifest);
  await kv.put("manifest", manifestBytes);
  const revision: SettingsRevision = { rev: manifest.rev, manifest_sha256: sha256Hex(manifestBytes) };
  await kv.put("revision", encode(revision));

  let blobsDeleted = 0;
  for (const k of existing) {
    if (data.has(k.slice(BLOB_PREFIX.length))) continue;
    await kv.purge(k);
    blobsDeleted++;
  }
  log(`published settings revision ${manifest.rev} (${paths.length} files)`);
  return { published: true, rev: manifest.rev, files: paths.length, blobsWritten, blobsDeleted };
}

/** The revision number as written, however damaged the rest is (0 when unreadable). */
async function rawRev(kv: KV): Promise<number> {
  try {
    const e = await kv.get("revision");
    const n = e && e.operation === "PUT" ? decode<SettingsRevision>(e.value).rev : 0;
    return Number.isInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

function sameFiles(a: SettingsManifest["files"], b: SettingsManifest["files"]): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => b[k]?.sha256 === a[k]!.sha256);
}

export interface FetchSettingsOptions {
  /**
   * The previous fetch: when the revision's manifest hash is unchanged it is returned as is,
   * and its blobs are reused by hash instead of fetched again.
   */
  previous?: FetchedSettingsTree;
}

/**
 * The published settings tree as relative path → text, every blob checked against the manifest.
 * Throws SettingsIntegrityError for a damaged or altered bucket, the client's errors when the bus
 * cannot be reached. Nothing published yet reads as an empty tree (rev 0).
 */
export async function fetchSettingsTree(
  kv: KV,
  opts: FetchSettingsOptions = {},
): Promise<FetchedSettingsTree> {
  const prev = opts.previous;
  const revEntry = await kv.get("revision");
  if (revEntry === null || revEntry.operation !== "PUT") return { rev: 0, manifestSha256: "", files: {} };
  if (prev && prev.rev !== 0) {
    // Cheap path: the same revision as last time needs no more reads.
    try {
      const r = decode<SettingsRevision>(revEntry.value);
      if (r.rev === prev.rev && r.manifest_sha256 === prev.manifestSha256) return prev;
    } catch {
      // Fall through to the full read, which reports it.
    }
  }
  const live = await readLive(kv);
  if (!live) return { rev: 0, manifestSha256: "", files: {} };
  const reuse = new Map<string, string>();
  if (prev) {
    for (const text of Object.values(prev.files)) reuse.set(sha256Hex(enc.encode(text)), text);
  }
  const files: Record<string, string> = {};
  for (const [path, f] of Object.entries(live.manifest.files)) {
    let text = reuse.get(f.sha256);
    if (text === undefined) {
      const e = await kv.get(settingsBlobKey(f.sha256));
      if (e === null || e.operation !== "PUT") {
        throw new SettingsIntegrityError(`settings blob ${f.sha256} for ${path} is missing`);
      }
      const h = sha256Hex(e.value);
      if (h !== f.sha256) {
        throw new SettingsIntegrityError(
          `settings blob for ${path} has sha256 ${h}, the manifest says ${f.sha256}`,
        );
      }
      try {
        text = dec.decode(e.value);
      } catch {
        throw new SettingsIntegrityError(`settings file ${path} is not valid UTF-8`);
      }
      reuse.set(f.sha256, text);
    }
    files[path] = text;
  }
  return { rev: live.revision.rev, manifestSha256: live.revision.manifest_sha256, files };
}

/** Writes a peel's sealed blob unless the bucket already holds exactly these bytes. */
export async function putPeelSecrets(
  target: NatsConnection | KV,
  peel: string,
  blob: string,
): Promise<boolean> {
  const kv = await bucket(target, "secrets");
  const cur = await kv.get(assertPeelId(peel));
  if (cur !== null && cur.operation === "PUT" && dec.decode(cur.value) === blob) return false;
  await kv.put(peel, blob);
  return true;
}

/**
 * The master's view of a peel's current blob: the secrets it holds (opened with the master's own
 * key, since a box opens from either side), or undefined when there is none, it was sealed for
 * another peel key or by another master key, or it does not open. Sealing uses a fresh nonce, so
 * comparing contents is the only way to know a re-seal would change nothing.
 */
export async function readSealedSecrets(
  kv: KV,
  peel: string,
  masterCurve: KeyPair,
  peelCurvePub: string,
): Promise<Record<string, string> | undefined> {
  const cur = await kv.get(assertPeelId(peel));
  if (cur === null || cur.operation !== "PUT") return undefined;
  try {
    const env = JSON.parse(dec.decode(cur.value)) as { from?: unknown; to?: unknown; data?: unknown };
    if (env.from !== masterCurve.getPublicKey() || env.to !== peelCurvePub || typeof env.data !== "string") {
      return undefined;
    }
    const opened = masterCurve.open(new Uint8Array(Buffer.from(env.data, "base64")), peelCurvePub);
    if (opened === null) return undefined;
    const inner = JSON.parse(dec.decode(opened)) as { secrets?: unknown };
    const s = inner.secrets;
    if (s === null || typeof s !== "object" || Array.isArray(s)) return undefined;
    return s as Record<string, string>;
  } catch {
    return undefined;
  }
}

/** Removes a peel's blob (the peel left the fleet). */
export async function deletePeelSecrets(target: NatsConnection | KV, peel: string): Promise<void> {
  const kv = await bucket(target, "secrets");
  await kv.purge(assertPeelId(peel));
}

/**
 * The peel's own blob, read by direct get of its one key (the only `secrets` read its
 * credentials allow); undefined when the master sealed nothing for it.
 */
export async function getOwnSecrets(kv: KV, peel: string): Promise<string | undefined> {
  const e = await kv.get(assertPeelId(peel));
  if (e === null || e.operation !== "PUT") return undefined;
  return dec.decode(e.value);
}
