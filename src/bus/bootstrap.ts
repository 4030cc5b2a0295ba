/**
 * Creates every bucket and stream from the tables in names.ts. Idempotent: what exists is left
 * as it is (no update) except for the rollup policy of stream-policy.ts, which is a security
 * fix existing deployments must get too, and an explicit replicas count (src/bus/replicas.ts),
 * which existing streams are moved to; so running it on every master start is safe.
 */

import {
  DiscardPolicy,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamInfo,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import { isStreamNotFound } from "./errors.js";
import { BUCKETS, type BucketName, STREAMS, type StreamName } from "./names.js";
import { moveReplicas, type ReplicaChange, type ReplicasSetting, resolveReplicas } from "./replicas.js";
import { enforceRollupPolicy } from "./stream-policy.js";

export interface BootstrapOptions {
  /** Default `auto`: 1 on a single server, 3 on a cluster of three or more. */
  replicas?: ReplicasSetting;
}

export interface BootstrapResult {
  created: string[];
  existing: string[];
  /** The replica count new streams got (and, when explicit, existing ones were moved to). */
  replicas: number;
  /** Existing streams moved to an explicit replicas count. */
  moved: ReplicaChange[];
  /** Existing streams whose count differs from `auto`'s choice (left alone; see docs/scale.md). */
  mismatched: ReplicaChange[];
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (isStreamNotFound(err)) return undefined;
    throw err;
  }
}

export async function bootstrap(nc: NatsConnection, opts: BootstrapOptions = {}): Promise<BootstrapResult> {
  const jsm = await jetstreamManager(nc);
  const kvm = new Kvm(nc);
  const setting = opts.replicas ?? "auto";
  const replicas = resolveReplicas(setting, nc);
  const result: BootstrapResult = { created: [], existing: [], replicas, moved: [], mismatched: [] };
  const streamExists = async (name: string): Promise<boolean> => {
    const info = await streamInfo(jsm, name);
    if (!info) return false;
    if (setting === "auto") {
      const from = info.config.num_replicas ?? 1;
      if (from !== replicas) result.mismatched.push({ stream: name, from, to: replicas });
    } else {
      const moved = await moveReplicas(jsm, info, replicas);
      if (moved) result.moved.push(moved);
    }
    return true;
  };

  for (const [bucket, spec] of Object.entries(BUCKETS) as [BucketName, (typeof BUCKETS)[BucketName]][]) {
    const name = `KV_${bucket}`;
    if (await streamExists(name)) {
      result.existing.push(name);
    } else {
      await kvm.create(bucket, { ...spec.options, allow_direct: true, storage: StorageType.File, replicas });
      result.created.push(name);
    }
    await enforceRollupPolicy(jsm, bucket);
  }

  for (const [name, spec] of Object.entries(STREAMS) as [StreamName, (typeof STREAMS)[StreamName]][]) {
    if (await streamExists(name)) {
      result.existing.push(name);
      // A stream made by an older release captures what this one defines (job-events once held
      // every ack and return): its subjects follow the table.
      const info = await streamInfo(jsm, name);
      const have = [...(info?.config.subjects ?? [])].sort();
      if (info && JSON.stringify(have) !== JSON.stringify([...spec.subjects].sort())) {
        await jsm.streams.update(name, { ...info.config, subjects: spec.subjects });
      }
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
      num_replicas: replicas,
    });
    result.created.push(name);
  }
  return result;
}

/** Opens an existing bucket with direct get, which per-key permissions rely on. */
export function openKv(nc: NatsConnection, bucket: BucketName): Promise<KV> {
  return new Kvm(nc).open(bucket, { allow_direct: true });
}
