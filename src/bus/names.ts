/**
 * Every subject, KV bucket and stream Zester uses, in one place. Permissions (src/auth), the
 * master and the peel all build names here so a rename cannot leave one side behind.
 */

import type { KvOptions } from "@nats-io/kv";

/** Peel ids become subject tokens and KV key parts: no dots, no wildcards, no spaces. */
export const PEEL_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

export function isValidPeelId(id: string): boolean {
  return PEEL_ID_PATTERN.test(id);
}

export function assertPeelId(id: string): string {
  if (!isValidPeelId(id)) {
    throw new Error(
      `invalid peel id ${JSON.stringify(id)}: use 1-128 characters from A-Z a-z 0-9 _ -, ` +
        "starting with a letter or digit (no dots: the id is a NATS subject token)",
    );
  }
  return id;
}

/** One subject token: non-empty, no separators, wildcards or whitespace. */
export function assertToken(kind: string, token: string): string {
  if (token.length === 0 || /[.*>\s]/.test(token)) {
    throw new Error(
      `invalid ${kind} ${JSON.stringify(token)}: must be one subject token (no . * > or spaces)`,
    );
  }
  return token;
}

/** A dotted subject tail such as an event tag: tokens joined by dots, none empty, no wildcards. */
export function assertSubjectTail(kind: string, tail: string): string {
  for (const t of tail.split(".")) assertToken(kind, t);
  return tail;
}

export const ROOT = "zester";

// ---- subjects ---------------------------------------------------------------------------------

export const subjects = {
  /** Commands for one peel (signed by a master). */
  cmd: (peel: string) => `${ROOT}.cmd.${assertPeelId(peel)}`,
  /** Admin → master: run a function on a target. */
  dispatch: `${ROOT}.dispatch`,
  jobAck: (jid: string, peel: string) =>
    `${ROOT}.job.${assertToken("job id", jid)}.ack.${assertPeelId(peel)}`,
  jobReturn: (jid: string, peel: string) =>
    `${ROOT}.job.${assertToken("job id", jid)}.return.${assertPeelId(peel)}`,
  jobCancel: (jid: string, peel: string) =>
    `${ROOT}.job.${assertToken("job id", jid)}.cancel.${assertPeelId(peel)}`,
  /** Wildcards over every job for one peel: `zester.job.*.<kind>.<peel>`. */
  jobAnyAck: (peel: string) => `${ROOT}.job.*.ack.${assertPeelId(peel)}`,
  jobAnyReturn: (peel: string) => `${ROOT}.job.*.return.${assertPeelId(peel)}`,
  jobAnyCancel: (peel: string) => `${ROOT}.job.*.cancel.${assertPeelId(peel)}`,
  jobAll: `${ROOT}.job.>`,
  event: (peel: string, tag: string) =>
    `${ROOT}.event.${assertPeelId(peel)}.${assertSubjectTail("event tag", tag)}`,
  eventsOf: (peel: string) => `${ROOT}.event.${assertPeelId(peel)}.>`,
  masterEvent: (tag: string) => `${ROOT}.event._master.${assertSubjectTail("event tag", tag)}`,
  masterEvents: `${ROOT}.event._master.>`,
  adminSendEvent: (tag: string) => `${ROOT}.event._admin.send.${assertSubjectTail("event tag", tag)}`,
  adminSendEvents: `${ROOT}.event._admin.send.>`,
  eventAll: `${ROOT}.event.>`,
  fact: (peel: string) => `${ROOT}.fact.${assertPeelId(peel)}`,
  /** Basket keys are `<peel>.<function>`. */
  basket: (key: string) => `${ROOT}.basket.${assertSubjectTail("basket key", key)}`,
  basketOf: (peel: string) => `${ROOT}.basket.${assertPeelId(peel)}.>`,
  reactorTest: `${ROOT}.reactor.test`,
  targetResolve: `${ROOT}.target.resolve`,
  admin: (service: string) => `${ROOT}.admin.${assertSubjectTail("admin service", service)}`,
  adminAll: `${ROOT}.admin.>`,
  all: `${ROOT}.>`,
} as const;

/**
 * Replies to a peel's requests arrive under its own prefix, so a peel's inbox permission
 * (`_INBOX_<peel>.>`) covers its replies and nobody else's.
 */
export function peelInboxPrefix(peel: string): string {
  return `_INBOX_${assertPeelId(peel)}`;
}

// ---- KV buckets and streams -------------------------------------------------------------------

export type BucketName =
  | "facts"
  | "jobs"
  | "job-returns"
  | "basket"
  | "settings-files"
  | "secrets"
  | "state-files"
  | "reactor-files"
  | "reactor-limits"
  | "peel-heartbeat"
  | "master-heartbeat"
  | "leases"
  | "enrollments"
  | "peel-queue";

/** Peels write a heartbeat every 10 s; three missed beats and the key expires. */
export const PEEL_HEARTBEAT_TTL_MS = 30_000;
export const PEEL_HEARTBEAT_INTERVAL_MS = 10_000;
export const MASTER_HEARTBEAT_TTL_MS = 30_000;
/** Leases are renewed well inside this; NATS 2.9 has no per-key TTL so the bucket's max_age is it. */
export const LEASE_TTL_MS = 30_000;

export interface BucketSpec {
  /** Options passed to Kvm.create; `ttl` is the bucket max_age in ms (0 = keep forever). */
  options: Partial<KvOptions> & { history: number; ttl: number; description: string };
}

const DAY_MS = 24 * 3600 * 1000;

/** The single table of KV bucket configurations. All are created and opened with allow_direct. */
export const BUCKETS: Readonly<Record<BucketName, BucketSpec>> = {
  facts: { options: { history: 5, ttl: 0, description: "facts per peel (key <peel>)" } },
  jobs: { options: { history: 1, ttl: 0, description: "job records (<jid>, active.<jid>)" } },
  "job-returns": { options: { history: 1, ttl: 0, description: "job returns (<jid>.<peel>)" } },
  basket: { options: { history: 1, ttl: 0, description: "basket data (<peel>.<function>)" } },
  "settings-files": { options: { history: 5, ttl: 0, description: "settings tree files" } },
  secrets: { options: { history: 5, ttl: 0, description: "sealed per-peel secrets (key <peel>)" } },
  "state-files": { options: { history: 5, ttl: 0, description: "state tree files" } },
  "reactor-files": { options: { history: 5, ttl: 0, description: "reactor files" } },
  // Written only by masters (CAS): the reactor's throttle, rate and breaker shared across masters.
  "reactor-limits": { options: { history: 1, ttl: 0, description: "reactor limits shared by masters" } },
  "peel-heartbeat": {
    options: { history: 1, ttl: PEEL_HEARTBEAT_TTL_MS, description: "peel liveness (key <peel>)" },
  },
  "master-heartbeat": {
    options: { history: 1, ttl: MASTER_HEARTBEAT_TTL_MS, description: "master liveness" },
  },
  leases: { options: { history: 1, ttl: LEASE_TTL_MS, description: "advisory leader leases" } },
  enrollments: { options: { history: 5, ttl: 0, description: "peel enrollment requests" } },
  // Written only by masters; each peel may read only its own key. A day is the longest queue TTL.
  "peel-queue": {
    options: { history: 1, ttl: DAY_MS, description: "commands kept for offline peels (key <peel>)" },
  },
};

export const BUCKET_NAMES = Object.keys(BUCKETS) as BucketName[];

export type StreamName = "events" | "job-events";

export interface StreamSpec {
  subjects: string[];
  /** Milliseconds; converted to nanoseconds for the server. */
  maxAgeMs: number;
  description: string;
}

/** The single table of plain streams (KV buckets are streams too, named KV_<bucket>). */
export const STREAMS: Readonly<Record<StreamName, StreamSpec>> = {
  events: {
    subjects: [subjects.eventAll],
    maxAgeMs: 7 * DAY_MS,
    description: "peel, master and admin events",
  },
  // Cancels only: a record of who stopped which job. Acks and returns are not stored here (they
  // were, two writes per peel per job that nobody read; returns live in `job-returns`).
  "job-events": {
    subjects: [`${ROOT}.job.*.cancel.*`],
    maxAgeMs: 7 * DAY_MS,
    description: "job cancels",
  },
};

export const STREAM_NAMES = Object.keys(STREAMS) as StreamName[];

/** The JetStream stream that backs a KV bucket. */
export function kvStream(bucket: BucketName): string {
  return `KV_${bucket}`;
}

/** The subject a KV put on `key` publishes to. */
export function kvKeySubject(bucket: BucketName, key: string): string {
  return `$KV.${bucket}.${assertSubjectTail("KV key", key)}`;
}

/** The subject prefix of all keys in a bucket (`$KV.<bucket>.>`). */
export function kvAllKeys(bucket: BucketName): string {
  return `$KV.${bucket}.>`;
}

export const JS_API = "$JS.API";

/** Direct get of the last value of one key: the subject form that permissions can restrict. */
export function kvDirectGetSubject(bucket: BucketName, key: string): string {
  return `${JS_API}.DIRECT.GET.${kvStream(bucket)}.${kvKeySubject(bucket, key)}`;
}
