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
  | "canceled"
  | "queued" // offline when sent; the command is kept for it until the job's queue TTL
  | "expired"; // queued, and the peel did not take it before the queue TTL ran out

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
  /**
   * Seconds to keep the command for peels that are offline when it is sent (`--queue`); 0 or
   * absent: the master's `queue_ttl` (default 0, not kept).
   */
  queue_ttl_s?: number;
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
  /**
   * Depth of the event chain that made this job (a reaction's job: its event's depth + 1). An
   * `event.send` the job runs carries it, so a loop through peels is stopped by the reactor's
   * maximum depth like a loop through reactions. Absent means 0.
   */
  event_depth?: number;
  /**
   * Set for a job sent with `--queue`: milliseconds since the epoch until which the peel may
   * still run this command (it was kept for a peel that was offline). Signed like every field.
   */
  queue_until?: number;
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
  /** A state run that changed something was kept: `state.revert <run>` undoes it (docs/revert.md). */
  revert?: { run: string; states: number; cannot: number; error?: string };
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
  /** Depth of the event chain that made the job (reactions), copied into its commands. */
  event_depth?: number;
  user?: string;
  /** State tree revision published for the job (jobs that read the tree). */
  states_rev?: number;
  /** Seconds the command is kept for peels that were offline when it was sent (`--queue`). */
  queue_ttl_s?: number;
  /** Why a peel stands where it does, where its status alone would mislead (e.g. not queued). */
  peel_notes?: Record<string, string>;
}

/** `jobs` KV `active.<jid>`: tiny index entry while a job runs. */
export interface ActiveJobEntry {
  jid: string;
  fun: string;
  target: string;
  created_at: string;
}

/**
 * The last finished state run of a peel, carried in its heartbeat. Only runs of the state tree
 * count: `state.apply`, `state.highstate`, `state.sls` and `state.test` (a test-mode
 * `state.apply`), from a job or from the peel's enforcement schedule. Not counted: `state.show_*`
 * (nothing runs), execution functions (`test.ping`, `cmd.run`) and one-state calls (`state.single`,
 * `file.managed ...`), which are ad-hoc and would hide the tree's drift status. A run that failed
 * before producing results (no state tree, settings error, compile error, canceled) counts, with
 * `success: false`, zero counts and `error`. A job refused as busy, or dropped before it started,
 * never ran and does not count. Held in the peel's memory only: absent after a peel restart until
 * its next state run.
 */
export interface PeelLastRun {
  /** Job id, or the fresh KSUID of a scheduled run; the full return is `job-returns` `<jid>.<peel>`. */
  jid: string;
  /** A job from a master, or the peel's own enforcement schedule. */
  origin: "job" | "schedule";
  /** `state.apply`, `state.highstate`, `state.sls` or `state.test`. */
  fun: string;
  /** Test mode (a drift check): nothing was changed, `pending` says what would have been. */
  test: boolean;
  /** When the run ended (ISO). */
  finished_at: string;
  success: boolean;
  /** From the run's summary; 0 when it failed before producing results. */
  changed: number;
  failed: number;
  total: number;
  /** Results with `pending: true`: what the test run would change (0 outside test mode). */
  pending: number;
  /** First line of the run's error (masked, at most 200 characters), when it has one. */
  error?: string;
}

/** `peel-heartbeat` KV `<peel>`. */
export interface PeelHeartbeat {
  peel: string;
  /** When the peel wrote this heartbeat (ISO). */
  ts: string;
  /** The peel's Zester version. */
  version: string;
  /** Revision of the state tree the peel has cached. */
  states_rev?: number;
  /** Jobs running or waiting in the peel's queue. */
  busy?: number;
  /** The peel's last finished state run, absent until it ran one since it started. */
  last_run?: PeelLastRun;
}

/**
 * `state-files` KV layout (src/bus/file-tree.ts): content-addressed blobs `blob.<sha256>` (raw
 * bytes), `manifest` (StateManifest), and `revision` (StateRevision) written last so readers never
 * see a manifest whose blobs are not there yet. State files carry their mode.
 */
export type StateManifest = FileTreeManifest<{ sha256: string; size: number; mode: number }>;

export type StateRevision = FileTreeRevision;
