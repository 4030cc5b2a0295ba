/**
 * Creates every bucket and stream from the tables in names.ts. Idempotent: what exists is left
 * as it is (no update) except for the rollup policy of stream-policy.ts, which is a security
 * fix existing deployments must get too, so running it on every master start is safe.
 */

import {
  DiscardPolicy,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import { BUCKETS, type BucketName, STREAMS, type StreamName } from "./names.js";
import { enforceRollupPolicy } from "./stream-policy.js";

export interface BootstrapResult {
  created: string[];
  existing: string[];
}

function isNotFound(err: unknown): boolean {
  const e = err as { message?: string; code?: number; api_error?: { err_code?: number } };
  return /stream not found/i.test(e?.message ?? "") || e?.api_error?.err_code === 10059;
}

async function streamExists(jsm: JetStreamManager, name: string): Promise<boolean> {
  try {
    await jsm.streams.info(name);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

export async function bootstrap(nc: NatsConnection): Promise<BootstrapResult> {
  const jsm = await jetstreamManager(nc);
  const kvm = new Kvm(nc);
  const result: BootstrapResult = { created: [], existing: [] };

  for (const [bucket, spec] of Object.entries(BUCKETS) as [BucketName, (typeof BUCKETS)[BucketName]][]) {
    const name = `KV_${bucket}`;
    if (await streamExists(jsm, name)) {
      result.existing.push(name);
    } else {
      await kvm.create(bucket, { ...spec.options, allow_direct: true, storage: StorageType.File });
      result.created.push(name);
    }
    await enforceRollupPolicy(jsm, bucket);
  }

  for (const [name, spec] of Object.entries(STREAMS) as [StreamName, (typeof STREAMS)[StreamName]][]) {
    if (await streamExists(jsm, name)) {
      result.existing.push(name);
      continue;
    }
    await jsm.streams.add({
      name,
      subjects: spec.subjects,
      description: spec.description,
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(spec.maxAgeMs),
      allow_direct: true,
      num_replicas: 1,
    });
    result.created.push(name);
  }
  return result;
}

/** Opens an existing bucket with direct get, which per-key permissions rely on. */
export function openKv(nc: NatsConnection, bucket: BucketName): Promise<KV> {
  return new Kvm(nc).open(bucket, { allow_direct: true });
}
