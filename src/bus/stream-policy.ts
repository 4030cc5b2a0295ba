/**
 * Which buckets accept `Nats-Rollup` headers. A rollup is decided by the server from a header,
 * which subject permissions never look at: a client allowed to put one key of a bucket that
 * allows rollups can send `Nats-Rollup: all` on that key and wipe every other key. So rollups
 * (and with them `kv.purge`, which is a `Nats-Rollup: sub` put) stay only where Zester purges
 * and nobody but a master writes; every other bucket, present or added later, refuses them.
 */

import type { JetStreamManager } from "@nats-io/jetstream";
import type { BucketName } from "./names.js";

/** Buckets Zester purges keys in (file-tree blobs, sealed secrets, enrollment CAS). Master-only writers. */
export const PURGED_BUCKETS: ReadonlySet<BucketName> = new Set<BucketName>([
  "state-files",
  "settings-files",
  "reactor-files",
  "secrets",
  "enrollments",
]);

export function allowsRollup(bucket: string): boolean {
  return PURGED_BUCKETS.has(bucket as BucketName);
}

/**
 * Brings a bucket's stream to its rollup policy: turns rollups off on an existing bucket made
 * before this policy (or by the KV client, which enables them by default). Returns whether it
 * changed the stream.
 */
export async function enforceRollupPolicy(jsm: JetStreamManager, bucket: string): Promise<boolean> {
  const stream = `KV_${bucket}`;
  const info = await jsm.streams.info(stream);
  const wanted = allowsRollup(bucket);
  if ((info.config.allow_rollup_hdrs ?? false) === wanted) return false;
  await jsm.streams.update(stream, { ...info.config, allow_rollup_hdrs: wanted });
  return true;
}
