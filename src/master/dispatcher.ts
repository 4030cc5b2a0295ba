/**
 * The master's job services: `zester.target.resolve` and `zester.dispatch` (queue group, so each
 * request is handled by exactly one master) and `zester.admin.job.kill` (every master hears it;
 * the job's owner answers, or any master when the owner is gone).
 */
import type { KV } from "@nats-io/kv";
import type { KeyPair } from "@nats-io/nkeys";
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { MAX_QUEUE_TTL_MS } from "../auth/signing.js";
import { decode, encode } from "../bus/codec.js";
import { subjects } from "../bus/names.js";
import { emitMasterEvent, masterTags } from "../events/master-events.js";
import { isKsuid, newKsuid } from "../jobs/ksuid.js";
import { PEEL_QUEUE_DENIED } from "../jobs/peel-queue.js";
import {
  isJobFinished,
  isPeelSettled,
  JobConflictError,
  type JobStore,
  type StoredJob,
  settledJobStatus,
} from "../jobs/store.js";
import type { DispatchReply, DispatchRequest, JobRecord, PeelJobStatus } from "../jobs/wire.js";
import { isKnownFamily } from "../modules/index.js";
import { TargetSyntaxError } from "../target/index.js";
import { errText } from "../util/errors.js";
import type { FleetView } from "./fleet-view.js";
import { type JobDoneEvent, JobTracker, publishCancel } from "./job-tracker.js";
import { MASTER_BEAT_MS } from "./liveness.js";

/** Queue group shared by every master for load-balanced services. */
export const MASTER_QUEUE = "zester-masters";

export const KILL_SUBJECT = subjects.admin("job.kill");

/** How long a master other than the owner keeps watching a kill the owner may not answer. */
const KILL_TAKEOVER_MS = 8_000;

/** How long past its timeout an unfollowed job waits before any master finishes it. */
export const ORPHAN_GRACE_MS = 30_000;

export interface ResolveRequest {
  target: string;
}
export interface ResolveReply {
  peels?: string[];
  error?: string;
}
export interface KillRequest {
  jid: string;
}
export interface KillReply {
  jid: string;
  status?: JobRecord["status"];
  /** Peels that were told to stop. */
  canceled?: string[];
  error?: string;
}

const FUNCTION_NAME = /^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$/;

/** Families whose functions never read the state tree or settings: no publish before them. */
const TREE_FREE = new Set(["test", "facts", "grains", "sys", "settings", "pillar", "job"]);

/**
 * Whether a job may read the state tree or settings: `state.*`, and any state or execution
 * function of a module family (a `file.managed` with a `salt://` source, a `cmd.script`).
 * Read-only families stay fast: a `test.ping` to the fleet never waits for a publish.
 */
export function usesStateTree(fun: string): boolean {
  const family = fun.slice(0, fun.indexOf("."));
  return family === "state" || (isKnownFamily(family) && !TREE_FREE.has(family));
}

export interface DispatcherDeps {
  nc: NatsConnection;
  store: JobStore;
  fleet: FleetView;
  signer: KeyPair;
  masterId: string;
  unreachableAfterMs: number;
  defaultTimeoutS: number;
  /** Queue TTL for jobs that name none (the master's `queue_ttl`; 0: commands are not kept). */
  defaultQueueTtlS?: number;
  /** The `peel-queue` bucket (commands kept for offline peels). */
  queue?: KV;
  /**
   * Announce every return as `_master/job/<jid>/ret/<peel>` (docs/events.md). Off by default:
   * one event per peel per job is a JetStream write and a reactor delivery each, and
   * `job/<jid>/done` already carries every peel's status.
   */
  returnEvents?: boolean;
  /**
   * Whether a master (by id) is alive: it beat within `withinMs` (default MASTER_DEAD_AFTER_MS).
   * For taking over kills and jobs of masters that died.
   */
  isMasterAlive(id: string, withinMs?: number): Promise<boolean>;
  /**
   * Brings the published state and settings trees up to date before a job that reads them is
   * signed; resolves with the state revision the peels must run (undefined: do not pin one).
   */
  freshTrees?(): Promise<number | undefined>;
  log(msg: string): void;
}

export class Dispatcher {
  private readonly trackers = new Map<string, JobTracker>();

  constructor(private readonly deps: DispatcherDeps) {}

  get activeJobs(): string[] {
    return [...this.trackers.keys()];
  }

  /** True while this master follows the job and has not begun finishing it: it hears every return. */
  follows(jid: string): boolean {
    return this.trackers.get(jid)?.following === true;
  }

  tracker(jid: string): JobTracker | undefined {
    return this.trackers.get(jid);
  }

  /** After a reconnect: every followed job reads the returns it may have missed. */
  catchUp(): void {
    this.deps.log(`reconnected to NATS; reading the stored returns of ${this.trackers.size} followed job(s)`);
    for (const t of this.trackers.values()) void t.catchUp();
  }

  /** Stops following jobs (their records stay `running`; see docs/fleet.md). */
  stop(): void {
    for (const t of this.trackers.values()) t.detach();
    this.trackers.clear();
  }

  handleResolve(msg: Msg): void {
    let reply: ResolveReply;
    try {
      const req = decode<ResolveRequest>(msg.data);
      if (typeof req.target !== "string" || req.target.trim() === "") throw new Error("target is required");
      reply = { peels: this.deps.fleet.resolve(req.target) };
    } catch (err) {
      reply = { error: errText(err) };
    }
    msg.respond(encode(reply));
  }

  async handleDispatch(msg: Msg): Promise<void> {
    let req: DispatchRequest;
    try {
      req = decode<DispatchRequest>(msg.data);
    } catch (err) {
      respond(msg, { error: errText(err) });
      return;
    }
    let answered = false;
    const answer = (r: DispatchReply & { existing?: boolean }) => {
      if (answered) return;
      answered = true;
      const { existing: _e, ...reply } = r;
      respond(msg, reply);
    };
    // The reply goes out before the commands, as soon as the job is recorded.
    answer(await this.dispatch(req, { onRecorded: answer }));
  }

  /**
   * Validates, records and sends one job. With `jid` (the reactor's deterministic ids) a job that
   * already exists is never created twice: the reply names it with `existing: true`.
   * `maxTargets` refuses a target that resolves to more peels.
   */
  async dispatch(
    req: DispatchRequest,
    opts: {
      jid?: string;
      maxTargets?: number;
      /** Depth of the event chain that asked for the job (the reactor's), see Command.event_depth. */
      eventDepth?: number;
      onRecorded?: (r: DispatchReply) => void;
    } = {},
  ): Promise<DispatchReply & { existing?: boolean }> {
    let peels: string[];
    let timeoutS: number;
    let queueTtlS: number;
    try {
      timeoutS = validate(req, this.deps.defaultTimeoutS);
      queueTtlS = validateQueueTtl(req, this.deps.defaultQueueTtlS ?? 0);
      peels = this.deps.fleet.resolve(req.target);
    } catch (err) {
      const prefix = err instanceof TargetSyntaxError ? "invalid target: " : "";
      return { error: prefix + errText(err) };
    }
    if (peels.length === 0) return { error: `no peels match ${req.target}` };
    if (opts.maxTargets !== undefined && peels.length > opts.maxTargets) {
      return {
        error: `${req.target} matches ${peels.length} peels, more than max_targets ${opts.maxTargets}`,
      };
    }
    if (opts.jid !== undefined && (await this.deps.store.get(opts.jid))) {
      return { jid: opts.jid, existing: true };
    }
    const statesRev = usesStateTree(req.fun) ? await this.deps.freshTrees?.() : undefined;
    const statuses: Record<string, PeelJobStatus> = {};
    for (const p of peels) statuses[p] = "pending";
    const record: JobRecord = {
      jid: opts.jid ?? newKsuid(),
      fun: req.fun,
      args: req.args ?? [],
      kwargs: req.kwargs ?? {},
      target: req.target,
      test: req.test === true,
      timeout_s: timeoutS,
      status: "running",
      peels: statuses,
      created_at: new Date().toISOString(),
      master: this.deps.masterId,
      ...(typeof req.user === "string" ? { user: req.user } : {}),
      ...(statesRev !== undefined ? { states_rev: statesRev } : {}),
      ...(opts.eventDepth ? { event_depth: opts.eventDepth } : {}),
      ...(queueTtlS > 0 ? { queue_ttl_s: queueTtlS } : {}),
    };
    const tracker = this.newTracker(record);
    // Listening starts before any peel can know the jid, so no ack or return is missed.
    tracker.listen();
    try {
      tracker.adopt(await this.deps.store.create(record));
    } catch (err) {
      tracker.detach();
      // Another master (or a redelivery racing this one) created it first: it is that one's job.
      if (opts.jid !== undefined && (await this.deps.store.get(opts.jid).catch(() => undefined))) {
        return { jid: opts.jid, existing: true };
      }
      return { error: `cannot record job: ${errText(err)}` };
    }
    this.trackers.set(record.jid, tracker);
    emitMasterEvent(this.deps.nc, masterTags.jobNew(record.jid), {
      jid: record.jid,
      fun: record.fun,
      target: record.target,
      peels,
      master: record.master,
      ...(record.user !== undefined ? { user: record.user } : {}),
    });
    const reply = { jid: record.jid, peels };
    opts.onRecorded?.(reply);
    tracker.sendCommands();
    return reply;
  }

  private newTracker(record: JobRecord): JobTracker {
    return new JobTracker(
      record,
      {
        nc: this.deps.nc,
        store: this.deps.store,
        signer: this.deps.signer,
        isOnline: (p) => this.deps.fleet.isOnline(p),
        unreachableAfterMs: this.deps.unreachableAfterMs,
        returnEvents: this.deps.returnEvents === true,
        ...(this.deps.queue ? { queue: this.deps.queue } : {}),
        queueDenied: (p) => this.deps.fleet.index.get(p)?.facts.peel_queue === PEEL_QUEUE_DENIED,
        log: this.deps.log,
      },
      (jid) => this.trackers.delete(jid),
    );
  }

  /**
   * Takes over a running job whose master is gone: claims it (CAS on the record, so two masters
   * never both follow it), then follows it to its end like its own. False when another won.
   */
  private async adoptOrphan(cur: StoredJob): Promise<boolean> {
    const previous = cur.record.master;
    let claimed: StoredJob;
    try {
      claimed = await this.deps.store.write({ ...cur.record, master: this.deps.masterId }, cur.revision);
    } catch (err) {
      if (err instanceof JobConflictError) return false;
      throw err;
    }
    const tracker = this.newTracker(claimed.record);
    tracker.adopt(claimed);
    this.trackers.set(claimed.record.jid, tracker);
    this.deps.log(`job ${claimed.record.jid}: taken over from master ${previous}, which is not running`);
    await tracker.resume();
    return true;
  }

  async handleKill(msg: Msg): Promise<void> {
    let jid: string;
    try {
      jid = decode<KillRequest>(msg.data).jid;
      if (!isKsuid(jid)) throw new Error(`not a job id: ${JSON.stringify(jid)}`);
    } catch (err) {
      respondKill(msg, { jid: "", error: errText(err) });
      return;
    }
    const tracker = this.trackers.get(jid);
    if (tracker) {
      const canceled = await tracker.cancel();
      respondKill(msg, { jid, status: tracker.snapshot.status, canceled });
      return;
    }
    const stored = await this.deps.store.get(jid);
    if (!stored) {
      respondKill(msg, { jid, error: `no job ${jid}` });
      return;
    }
    const rec = stored.record;
    if (isJobFinished(rec.status)) {
      respondKill(msg, { jid, status: rec.status, error: `job ${jid} already finished (${rec.status})` });
      return;
    }
    if (rec.master !== this.deps.masterId && (await this.deps.isMasterAlive(rec.master))) {
      await this.killIfOwnerSilent(msg, jid, rec.master);
      return;
    }
    respondKill(msg, await this.killOrphan(jid));
  }

  /**
   * Jobs nobody follows any more: their master is gone (or is this master before a restart).
   * One still inside its timeout (+ `graceMs`) is taken over and followed to its end; one past
   * it is finished at once: peels with a stored return get it, the others end as timeout (acked)
   * or unreachable. Returns the jids it finished at once.
   */
  sweepOrphans(graceMs = ORPHAN_GRACE_MS): Promise<string[]> {
    // Sweeps run on a short timer: one that is slow (a node lost) is joined, not doubled.
    this.sweeping ??= this.sweepOnce(graceMs).finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  private sweeping: Promise<string[]> | undefined;

  private async sweepOnce(graceMs: number): Promise<string[]> {
    const swept: string[] = [];
    for (const entry of await this.deps.store.active()) {
      const jid = entry.jid;
      if (this.trackers.has(jid)) continue;
      const cur = await this.deps.store.get(jid);
      if (!cur || isJobFinished(cur.record.status)) {
        // An index entry left behind by a master that died between the two writes.
        await this.deps.store.removeActive(jid).catch(() => {});
        continue;
      }
      const rec = cur.record;
      if (rec.master !== this.deps.masterId && (await this.deps.isMasterAlive(rec.master))) continue;
      const runMs = ((rec.queue_ttl_s ?? 0) + rec.timeout_s) * 1000;
      if (Date.now() < Date.parse(rec.created_at) + runMs + graceMs) {
        // Still inside its run: follow it as if it were ours, so it ends when its peels do.
        await this.adoptOrphan(cur);
        continue;
      }
      const returns = await this.deps.store.returnsOf(
        jid,
        Object.keys(rec.peels).filter((p) => !isPeelSettled(rec.peels[p]!)),
      );
      let changed = false;
      const updated = await this.deps.store.update(jid, (r) => {
        changed = false;
        if (isJobFinished(r.status)) return undefined;
        for (const [peel, st] of Object.entries(r.peels)) {
          if (isPeelSettled(st)) continue;
          const ret = returns.get(peel);
          if (ret) r.peels[peel] = ret.success ? "success" : "failed";
          else r.peels[peel] = st === "acked" ? "timeout" : st === "queued" ? "expired" : "unreachable";
        }
        r.status = settledJobStatus(r.peels);
        r.finished_at = new Date().toISOString();
        changed = true;
        return r;
      });
      if (!updated || !changed) continue;
      await this.deps.store.removeActive(jid).catch(() => {});
      this.publishDone(updated.record);
      this.deps.log(
        `job ${jid}: finished as ${updated.record.status} after its master ${rec.master} went away`,
      );
      swept.push(jid);
    }
    return swept;
  }

  private publishDone(rec: JobRecord): void {
    const ev: JobDoneEvent = {
      jid: rec.jid,
      fun: rec.fun,
      status: rec.status,
      peels: rec.peels,
      finished_at: rec.finished_at ?? new Date().toISOString(),
      master: this.deps.masterId,
    };
    emitMasterEvent(this.deps.nc, masterTags.jobDone(rec.jid), ev);
  }

  /**
   * The owner looks alive, so it should answer the kill; but it may have just died (its last
   * beat still counts). Watch for a few seconds: once the record is finished the owner did it
   * (a second answer is harmless: the requester keeps the first); once the owner has missed two
   * beats it is gone and this master kills the job itself, well inside the CLI's wait.
   */
  private async killIfOwnerSilent(msg: Msg, jid: string, owner: string): Promise<void> {
    const until = Date.now() + KILL_TAKEOVER_MS;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 250));
      const cur = await this.deps.store.get(jid);
      if (!cur) return;
      if (isJobFinished(cur.record.status)) {
        respondKill(msg, { jid, status: cur.record.status });
        return;
      }
      if (cur.record.master !== owner) return; // taken over: the new owner answers
      if (!(await this.deps.isMasterAlive(owner, 2 * MASTER_BEAT_MS))) {
        respondKill(msg, await this.killOrphan(jid));
        return;
      }
    }
  }

  /** Cancels a running job whose master is gone, writing the record with CAS. */
  private async killOrphan(jid: string): Promise<KillReply> {
    const canceled: string[] = [];
    let changed = false;
    const updated = await this.deps.store.update(jid, (r) => {
      changed = false;
      if (isJobFinished(r.status)) return undefined;
      changed = true;
      canceled.length = 0;
      for (const [peel, st] of Object.entries(r.peels)) {
        if (!isPeelSettled(st)) {
          r.peels[peel] = "canceled";
          canceled.push(peel);
        }
      }
      r.status = "canceled";
      r.finished_at = new Date().toISOString();
      return r;
    });
    if (!updated) return { jid, error: `no job ${jid}` };
    const rec = updated.record;
    if (!changed) return { jid, status: rec.status, error: `job ${jid} already finished (${rec.status})` };
    for (const peel of canceled) publishCancel(this.deps, jid, peel);
    await this.deps.store.removeActive(jid).catch(() => {});
    this.publishDone(rec);
    this.deps.log(`job ${jid}: canceled on behalf of master ${rec.master}, which is not running`);
    return { jid, status: "canceled", canceled };
  }
}

function validate(req: DispatchRequest, defaultTimeoutS: number): number {
  if (typeof req.target !== "string" || req.target.trim() === "") throw new Error("target is required");
  if (typeof req.fun !== "string" || !FUNCTION_NAME.test(req.fun)) {
    throw new Error(`invalid function ${JSON.stringify(req.fun)} (expected module.function)`);
  }
  if (req.args !== undefined && !Array.isArray(req.args)) throw new Error("args must be a list");
  if (
    req.kwargs !== undefined &&
    (req.kwargs === null || typeof req.kwargs !== "object" || Array.isArray(req.kwargs))
  ) {
    throw new Error("kwargs must be a mapping");
  }
  const t = req.timeout_s ?? defaultTimeoutS;
  if (typeof t !== "number" || !Number.isFinite(t) || t <= 0)
    throw new Error("timeout_s must be a positive number");
  return t;
}

/** Seconds to keep the command for offline peels: the request's, else the master's default. */
function validateQueueTtl(req: DispatchRequest, defaultS: number): number {
  const t = req.queue_ttl_s ?? defaultS;
  if (typeof t !== "number" || !Number.isFinite(t) || t < 0)
    throw new Error("queue_ttl_s must be a number of seconds ≥ 0");
  if (t * 1000 > MAX_QUEUE_TTL_MS)
    throw new Error(`queue_ttl_s ${t} is longer than the ${MAX_QUEUE_TTL_MS / 3_600_000} h maximum`);
  return t;
}

function respond(msg: Msg, reply: DispatchReply): void {
  msg.respond(encode(reply));
}

function respondKill(msg: Msg, reply: KillReply): void {
  msg.respond(encode(reply));
}
