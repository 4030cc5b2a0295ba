/**
 * Wire payloads between CLI, master and peels (DESIGN.md §3). JSON, protocol version `v: 1`
 * (stamped by src/bus/codec.ts), additive changes only. Identity (which peel sent a message)
 * always comes from the subject or the credentials, never from these fields.
 */
import type { FileTreeManifest, FileTreeRevision } from "../bus/file-tree.js";
import type { RunSummary, StateResult } from "../state/result.js";

/** Terminal and running states of a job. */
export type JobStatus = "running" | "complete" | "failed" | "partial" | "timeout" | "canceled";

/** Per-peel status inside a job. */
export type PeelJobStatus =
  | "pending" // published, no ack yet
  | "acked" // peel took it
  | "success"
  | "failed"
  | "unreachable" // no heartbeat and no ack within the grace period
  | "timeout" // acked but no return before the job timeout
  | "canceled";

/** CLI → master on `zester.dispatch` (request/reply). */
export interface DispatchRequest {
  /** Target expression (src/target). */
  target: string;
  /** `module.function`, e.g. `state.apply`, `test.ping`, `file.managed`. */
  fun: string;
  /** Positional arguments. */
  args: unknown[];
  /** key=value arguments. */
  kwargs: Record<string, unknown>;
  test?: boolean;
  /** Seconds the master waits for returns. */
  timeout_s?: number;
  /** Who asked (from the CLI user's creds name; informational). */
  user?: string;
}

/** master → CLI reply to a DispatchRequest. */
export interface DispatchReply {
  jid?: string;
  /** Peels the target resolved to. */
  peels?: string[];
  error?: string;
}

/**
 * master → peel on `zester.cmd.<peel>`. `sig` is the master's Ed25519 (nkey) signature over the
 * canonical encoding of every other field (src/auth/signing.ts); peels reject unsigned, altered,
 * stale (`ts` outside the allowed skew) or replayed (`jid` seen before) commands.
 */
export interface Command {
  jid: string;
  fun: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  test: boolean;
  /** The peel this command is for: a copy delivered to another subject is refused. */
  peel: string;
  /** Milliseconds since the epoch, when the master signed it. */
  ts: number;
  /** Seconds the peel may spend before the master gives up on it. */
  timeout_s: number;
  /** Public nkey of the signing master (must be in the peel's trusted set). */
  master: string;
  /**
   * The state tree revision the master published for this job: a peel holding an older one
   * syncs before it reads the tree, so a job never runs the tree from before an edit.
   */
  states_rev?: number;
  /** base64url signature. */
  sig: string;
}

/** peel → master on `zester.job.<jid>.ack.<peel>`. */
export interface Ack {
  jid: string;
  /** Queue position when the peel is busy with mutating work, 0 when started at once. */
  queued: number;
}

/** peel → master on `zester.job.<jid>.return.<peel>`; also stored in `job-returns` `<jid>.<peel>`. */
export interface PeelReturn {
  jid: string;
  peel: string;
  fun: string;
  success: boolean;
  /** Execution function return value (test.ping → true, cmd.run → stdout, ...). */
  return?: unknown;
  /** State runs: one result per state. */
  results?: StateResult[];
  summary?: RunSummary;
  error?: string;
  /** Source of the run: a job, or the peel's own scheduler. */
  origin?: "job" | "schedule";
  /** Where the run's settings came from: fresh from the bus, or the last-known-good snapshot. */
  settings_source?: "bus" | "snapshot";
  /** Why the snapshot was used (bus down, fetch timed out, ...). */
  settings_warning?: string;
  started_at: string;
  finished_at: string;
}

/** `jobs` KV `<jid>`. */
export interface JobRecord {
  jid: string;
  fun: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  target: string;
  test: boolean;
  timeout_s: number;
  status: JobStatus;
  /** Every targeted peel and where it stands. */
  peels: Record<string, PeelJobStatus>;
  created_at: string;
  finished_at?: string;
  /** Master instance that owns the job. */
  master: string;
  user?: string;
  /** State tree revision published for the job (jobs that read the tree). */
  states_rev?: number;
}

/** `jobs` KV `active.<jid>`: tiny index entry while a job runs. */
export interface ActiveJobEntry {
  jid: string;
  fun: string;
  target: string;
  created_at: string;
}

/** `peel-heartbeat` KV `<peel>`. */
export interface PeelHeartbeat {
  peel: string;
  ts: string;
  version: string;
  /** Revision of the state tree the peel has cached. */
  states_rev?: number;
  busy?: number;
}

/**
 * `state-files` KV layout (src/bus/file-tree.ts): content-addressed blobs `blob.<sha256>` (raw
 * bytes), `manifest` (StateManifest), and `revision` (StateRevision) written last so readers never
 * see a manifest whose blobs are not there yet. State files carry their mode.
 */
export type StateManifest = FileTreeManifest<{ sha256: string; size: number; mode: number }>;

export type StateRevision = FileTreeRevision;
