/**
 * How settings travel over the bus.
 *
 * `settings-files` (readable by every peel) is a file tree of sanitized file text in the layout
 * of src/bus/file-tree.ts, like `state-files` but without file modes.
 *
 * `secrets` key `<peel>` holds that peel's sealed blob; a peel's credentials can direct-get only
 * its own key.
 */
import type { KV } from "@nats-io/kv";
import type { KeyPair } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { publicNkeyOf } from "../auth/ed25519.js";
import { openKv } from "../bus/bootstrap.js";
import {
  blobKey,
  FileTreeIntegrityError,
  type FileTreeManifest,
  type FileTreePublishResult,
  type FileTreeRevision,
  fetchTreeFiles,
  kvSource,
  parseRevision,
  publishFileTree,
  REVISION_KEY,
  readManifest,
  sha256Hex,
} from "../bus/file-tree.js";
import { assertPeelId } from "../bus/names.js";

export type SettingsManifest = FileTreeManifest<{ sha256: string; size: number }>;

export type SettingsRevision = FileTreeRevision;

export type SettingsPublishResult = FileTreePublishResult;

export interface FetchedSettingsTree {
  /** 0 when nothing was ever published: an empty tree. */
  rev: number;
  manifestSha256: string;
  files: Record<string, string>;
}

/** The bucket's content disagrees with itself: a blob or manifest that does not match its hash. */
export class SettingsIntegrityError extends FileTreeIntegrityError {
  override name = "SettingsIntegrityError";
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

export const settingsBlobKey = blobKey;

async function bucket(target: NatsConnection | KV, name: "settings-files" | "secrets"): Promise<KV> {
  // A KV has `put`; a NatsConnection does not.
  return "put" in target ? target : openKv(target, name);
}

/**
 * Publishes sanitized settings files (`PreparedSettings.files`). Must only ever be given
 * sanitized text: the bucket is readable by every peel.
 */
export async function publishSettingsTree(
  target: NatsConnection | KV,
  files: Readonly<Record<string, string>>,
  opts: { master?: string; log?: (msg: string) => void } = {},
): Promise<SettingsPublishResult> {
  const kv = await bucket(target, "settings-files");
  const log = opts.log ?? (() => {});
  const toPublish = Object.entries(files).map(([path, text]) => {
    const bytes = enc.encode(text);
    return { path, sha256: sha256Hex(bytes), size: bytes.length, read: () => bytes };
  });
  const r = await publishFileTree(kv, toPublish, {
    ...(opts.master === undefined ? {} : { master: opts.master }),
    emptyReason: "settings tree is empty",
  });
  if (r.replacedDamaged !== undefined) {
    log(`warning: the published settings revision was damaged (${r.replacedDamaged}); replaced it`);
  }
  if (r.published) log(`published settings revision ${r.rev} (${r.files} files)`);
  else if (toPublish.length === 0 && r.files > 0) {
    log(
      `warning: the settings tree is empty; keeping published settings revision ${r.rev} (${r.files} files) instead of wiping it`,
    );
  }
  return r;
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
  // A master may be publishing while we read: the manifest or blobs can be one revision ahead of
  // (or already purged for) the revision we started from. Only a failure that repeats while the
  // revision stays the same is a real integrity error.
  for (let attempt = 1; ; attempt++) {
    const revBefore = (await kvSource(kv)(REVISION_KEY))?.join(",");
    try {
      return await fetchVerified(kv, opts.previous);
    } catch (err) {
      if (!(err instanceof FileTreeIntegrityError)) throw err;
      await new Promise((r) => setTimeout(r, 100 * attempt));
      const revAfter = (await kvSource(kv)(REVISION_KEY))?.join(",");
      if (attempt < RACE_RETRIES && revAfter !== revBefore) continue;
      throw err instanceof SettingsIntegrityError
        ? err
        : new SettingsIntegrityError(`settings ${err.message}`);
    }
  }
}

const RACE_RETRIES = 3;

async function fetchVerified(kv: KV, prev: FetchedSettingsTree | undefined): Promise<FetchedSettingsTree> {
  const source = kvSource(kv);
  const raw = await source(REVISION_KEY);
  if (!raw) return { rev: 0, manifestSha256: "", files: {} };
  const revision = parseRevision(raw);
  // The same revision as last time needs no more reads.
  if (
    prev &&
    prev.rev !== 0 &&
    revision.rev === prev.rev &&
    revision.manifest_sha256 === prev.manifestSha256
  ) {
    return prev;
  }
  const { manifest } = await readManifest<SettingsManifest["files"][string]>(source, revision);
  const reuse = new Map<string, Uint8Array>();
  for (const text of Object.values(prev?.files ?? {})) {
    const bytes = enc.encode(text);
    reuse.set(sha256Hex(bytes), bytes);
  }
  const texts = new Map<string, string>();
  await fetchTreeFiles(
    source,
    manifest,
    (path, _f, data) => {
      try {
        texts.set(path, dec.decode(data));
      } catch {
        throw new FileTreeIntegrityError(`file ${path} is not valid UTF-8`);
      }
    },
    { reuse: (sha) => reuse.get(sha) },
  );
  // Manifest order, not arrival order: blobs are fetched in parallel.
  const files: Record<string, string> = {};
  for (const path of Object.keys(manifest.files)) files[path] = texts.get(path)!;
  return { rev: revision.rev, manifestSha256: revision.manifest_sha256, files };
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
    if (env.from !== publicNkeyOf(masterCurve) || env.to !== peelCurvePub || typeof env.data !== "string") {
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
