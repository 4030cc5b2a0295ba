/**
 * One in-flight job on the master that dispatched it: sends the signed commands, follows the
 * job's acks and returns, decides when peels are unreachable or timed out, and writes the record
 * (coalesced, CAS) until the job finishes. Per-peel and job statuses are defined in docs/fleet.md.
 */
import type { KV } from "@nats-io/kv";
import type { KeyPair } from "@nats-io/nkeys";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { signCancel, signCommand } from "../auth/signing.js";
import { decodeAs, encode } from "../bus/codec.js";
import { ROOT, subjects } from "../bus/names.js";
import { relayedReason } from "../bus/validate.js";
import { emitMasterEvent, masterTags } from "../events/master-events.js";
import { dequeueCommand, enqueueCommand, notQueuedNote } from "../jobs/peel-queue.js";
import {
  isJobFinished,
  isPeelSettled,
  JobConflictError,
  type JobStore,
  type StoredJob,
  settledJobStatus,
} from "../jobs/store.js";
import type { Ack, Command, JobRecord, JobStatus, PeelJobStatus, PeelReturn } from "../jobs/wire.js";
import { ackSchema, peelReturnSchema } from "../jobs/wire-schema.js";
import { errText } from "../util/errors.js";

/** `data` of the master event `_master/job/<jid>/done` (src/events/master-events.ts). */
export interface JobDoneEvent {
  jid: string;
  fun: string;
  status: JobStatus;
  peels: Record<string, PeelJobStatus>;
  finished_at: string;
  master: string;
}

export interface TrackerDeps {
  nc: NatsConnection;
  store: JobStore;
  signer: KeyPair;
  isOnline(peel: string): boolean;
  unreachableAfterMs: number;
  /** Emit `_master/job/<jid>/ret/<peel>` for each return (DispatcherDeps.returnEvents). */
  returnEvents: boolean;
  /** The `peel-queue` bucket, for jobs sent with a queue TTL (src/jobs/peel-queue.ts). */
  queue?: KV;
  /** The peel published `peel_queue: denied`: its creds cannot read commands kept for it. */
  queueDenied?(peel: string): boolean;
  log(msg: string): void;
}

/** Reads of stored returns after a reconnect, 250 ms apart and doubling (about 8 s in all). */
const CATCH_UP_TRIES = 6;

/** Record writes are batched: a burst of acks from a big fleet becomes one KV write. */
const WRITE_DELAY_MS = 100;

export class JobTracker {
  private record: JobRecord;
  private revision = 0;
  private sub: Subscription | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private writeTimer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private finishing: Promise<void> | undefined;
  private readonly doneResolvers: (() => void)[] = [];
  private finishedFlag = false;

  constructor(
    record: JobRecord,
    private readonly deps: TrackerDeps,
    private readonly onFinished: (jid: string) => void,
  ) {
    this.record = record;
    this.unsettled = Object.values(record.peels).filter((st) => !isPeelSettled(st)).length;
  }

  /** Peels not settled yet, kept as a count: checking every peel on each ack is quadratic. */
  private unsettled: number;

  get jid(): string {
    return this.record.jid;
  }

  /** Listening and not finishing: every return of the job reaches this tracker. */
  get following(): boolean {
    return this.sub !== undefined && this.finishing === undefined;
  }

  get snapshot(): JobRecord {
    return structuredClone(this.record);
  }

  /** Resolves once the job has a terminal status in KV. */
  done(): Promise<void> {
    if (this.finishedFlag) return Promise.resolve();
    return new Promise((r) => this.doneResolvers.push(r));
  }

  /** Subscribes to the job's subjects; call before the record is created or commands are sent. */
  listen(): void {
    this.sub = this.deps.nc.subscribe(`${ROOT}.job.${this.jid}.>`, {
      callback: (err, msg) => {
        if (!err) this.onMessage(msg);
      },
    });
  }

  adopt(stored: StoredJob): void {
    this.record = stored.record;
    this.revision = stored.revision;
  }

  /** Signs and publishes the command to every peel, then arms the unreachable and deadline timers. */
  sendCommands(): void {
    this.publishCommands(Object.keys(this.record.peels));
    this.armTimers(this.record.timeout_s * 1000);
  }

  private publishCommands(peels: readonly string[]): void {
    for (const peel of peels) {
      const cmd = this.command(peel);
      this.deps.nc.publish(subjects.cmd(peel), encode(cmd));
      // Offline now: keep it for when the peel connects (it is also published, in case it is
      // just connecting; its job-id store runs it once either way).
      if (this.queueTtlMs > 0 && !this.deps.isOnline(peel)) this.queuePeel(peel, cmd);
    }
  }

  private command(peel: string): Command {
    const r = this.record;
    return signCommand(this.deps.signer, {
      jid: r.jid,
      fun: r.fun,
      args: r.args,
      kwargs: r.kwargs,
      test: r.test,
      peel,
      ts: Date.now(),
      timeout_s: r.timeout_s,
      ...(r.states_rev !== undefined ? { states_rev: r.states_rev } : {}),
      ...(r.event_depth ? { event_depth: r.event_depth } : {}),
      ...(this.queueTtlMs > 0 ? { queue_until: this.queueUntil } : {}),
    });
  }

  /** 0 unless the job was sent with `--queue`. */
  private get queueTtlMs(): number {
    return this.deps.queue ? (this.record.queue_ttl_s ?? 0) * 1000 : 0;
  }

  private get queueUntil(): number {
    return Date.parse(this.record.created_at) + this.queueTtlMs;
  }

  /** Peels this tracker queued: they get the queue TTL, not the job timeout, to take the job. */
  private readonly queuedPeels = new Set<string>();

  private queuePeel(peel: string, cmd: Command): void {
    if (this.deps.queueDenied?.(peel)) {
      // Its creds predate the queue permission: a kept command would wait out the TTL unread.
      this.record.peel_notes = { ...this.record.peel_notes, [peel]: notQueuedNote(peel) };
      this.setPeel(peel, "unreachable");
      return;
    }
    this.queuedPeels.add(peel);
    this.setPeel(peel, "queued");
    enqueueCommand(this.deps.queue!, cmd).catch((err: unknown) => {
      this.deps.log(`job ${this.jid}: cannot queue the command for ${peel}: ${errText(err)}`);
    });
  }

  private unqueue(peel: string): void {
    if (!this.queuedPeels.has(peel) || !this.deps.queue) return;
    dequeueCommand(this.deps.queue, peel, this.jid).catch(() => {
      // Harmless: an entry left behind expires, and the peel runs a job id only once.
    });
  }

  /**
   * Follows a job another master started (it died, or this master restarted): listens, takes
   * every return already stored, sends the command again to every peel that never acked it, and
   * keeps the job's own deadline. Call after adopt().
   *
   * A master killed between recording a job and publishing its commands leaves peels that never
   * heard of it: the resend is what runs the job. A peel that did get the first command refuses
   * the copy as a replay (it keeps every job id it received), so a job runs at most once per
   * peel either way.
   */
  async resume(): Promise<void> {
    this.listen();
    // Read after subscribing: a return stored in between is both read and heard, never neither.
    const silent = Object.keys(this.record.peels).filter((p) => !isPeelSettled(this.record.peels[p]!));
    const stored = await this.deps.store
      .returnsOf(this.jid, silent)
      .catch(() => new Map<string, PeelReturn>());
    for (const [peel, ret] of stored) {
      if (this.finishing) break;
      this.setPeel(peel, ret.success === true ? "success" : "failed");
    }
    if (this.finishing) return;
    if (this.unsettled === 0) {
      await this.finish();
      return;
    }
    for (const [peel, st] of Object.entries(this.record.peels))
      if (st === "queued") this.queuedPeels.add(peel);
    const left = Date.parse(this.record.created_at) + this.record.timeout_s * 1000 - Date.now();
    const unheard = Object.keys(this.record.peels).filter((p) => this.record.peels[p] === "pending");
    if (left > 0 && unheard.length > 0) {
      this.deps.log(
        `job ${this.jid}: sending the command again to ${unheard.length} peel(s) that never acked it`,
      );
      this.publishCommands(unheard);
    }
    this.armTimers(left);
  }

  /**
   * After a reconnect: returns published while this master was away were stored by their
   * peels but never heard, so read them now (retried while JetStream is still coming back).
   */
  async catchUp(): Promise<void> {
    for (let attempt = 0; attempt < CATCH_UP_TRIES && !this.finishing; attempt++) {
      const silent = Object.keys(this.record.peels).filter((p) => !isPeelSettled(this.record.peels[p]!));
      if (silent.length === 0) return;
      try {
        const stored = await this.deps.store.returnsOf(this.jid, silent);
        for (const [peel, ret] of stored) {
          if (this.finishing) return;
          this.setPeel(peel, ret.success === true ? "success" : "failed");
        }
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
      }
    }
  }

  private armTimers(deadlineInMs: number): void {
    const every = Math.max(50, Math.floor(this.deps.unreachableAfterMs / 2));
    const firstCheck = setTimeout(() => {
      this.checkUnreachable();
      this.timers.push(setInterval(() => this.checkUnreachable(), every));
    }, this.deps.unreachableAfterMs);
    this.timers.push(firstCheck);
    this.timers.push(setTimeout(() => void this.onDeadline(), Math.max(0, deadlineInMs)));
    if (this.queueTtlMs > 0) {
      // Queued peels: expired when the TTL ends untaken; one that took it gets the job timeout.
      const created = Date.parse(this.record.created_at);
      this.timers.push(setTimeout(() => this.expireQueued(), Math.max(0, this.queueUntil - Date.now())));
      this.timers.push(
        setTimeout(
          () => void this.onDeadline(true),
          Math.max(0, created + this.queueTtlMs + this.record.timeout_s * 1000 - Date.now()),
        ),
      );
    }
  }

  private expireQueued(): void {
    if (this.finishing) return;
    for (const [peel, st] of Object.entries(this.record.peels)) {
      if (st !== "queued") continue;
      this.unqueue(peel);
      this.setPeel(peel, "expired");
      if (this.finishing) return;
    }
  }

  /** Cancels every peel still working; the job ends as canceled. Returns the peels told to stop. */
  async cancel(): Promise<string[]> {
    const stopped: string[] = [];
    for (const [peel, st] of Object.entries(this.record.peels)) {
      if (st === "success" || st === "failed") continue;
      publishCancel(this.deps, this.jid, peel);
      if (!isPeelSettled(st)) {
        this.record.peels[peel] = "canceled";
        stopped.push(peel);
      }
    }
    await this.finish("canceled");
    return stopped;
  }

  /** Stops following the job without finishing it (master shutdown). */
  detach(): void {
    this.clearTimers();
    this.sub?.unsubscribe();
    this.sub = undefined;
  }

  private onMessage(msg: Msg): void {
    if (this.finishing) return;
    // zester.job.<jid>.<kind>.<peel>: identity comes from the subject, never the payload.
    const parts = msg.subject.split(".");
    const kind = parts[3];
    const peel = parts[4];
    if (peel === undefined || parts.length !== 5 || !(peel in this.record.peels)) return;
    const relayed = relayedReason(msg, () => true);
    if (relayed) {
      this.deps.log(`job ${this.jid}: ignored a ${kind} for ${peel}: ${relayed}`);
      return;
    }
    const cur = this.record.peels[peel]!;
    if (kind === "ack") {
      let ack: Ack;
      try {
        ack = decodeAs(ackSchema, msg.data);
      } catch (err) {
        this.deps.log(`job ${this.jid}: bad ack for ${peel}: ${errText(err)}`);
        return;
      }
      if (ack.jid !== this.jid) {
        this.deps.log(`job ${this.jid}: ignored an ack for ${peel} that names job ${ack.jid.slice(0, 40)}`);
        return;
      }
      this.unqueue(peel);
      if (cur === "pending" || cur === "unreachable" || cur === "queued") this.setPeel(peel, "acked");
    } else if (kind === "return") {
      let ret: PeelReturn;
      try {
        ret = decodeAs(peelReturnSchema, msg.data);
      } catch (err) {
        this.deps.log(`job ${this.jid}: bad return from ${peel}: ${errText(err)}`);
        return;
      }
      this.onReturn(peel, ret);
    }
  }

  /**
   * The peel stored the return in `job-returns` (`<jid>.<peel>`, a key only it may write) before
   * publishing it, so the record may count it at once; the master writes no copy of its own
   * (that was one KV round-trip per peel per job).
   */
  private onReturn(peel: string, ret: PeelReturn): void {
    const success = ret.success === true;
    this.unqueue(peel);
    if (this.deps.returnEvents) {
      emitMasterEvent(this.deps.nc, masterTags.jobReturn(this.jid, peel), {
        jid: this.jid,
        peel,
        fun: this.record.fun,
        success,
      });
    }
    this.setPeel(peel, success ? "success" : "failed");
  }

  private setPeel(peel: string, status: PeelJobStatus): void {
    const before = this.record.peels[peel];
    if (before === status) return;
    this.record.peels[peel] = status;
    const wasSettled = before !== undefined && isPeelSettled(before);
    if (wasSettled !== isPeelSettled(status)) this.unsettled += wasSettled ? 1 : -1;
    if (this.unsettled === 0) {
      void this.finish();
      return;
    }
    this.scheduleWrite();
  }

  private checkUnreachable(): void {
    if (this.finishing) return;
    for (const [peel, st] of Object.entries(this.record.peels)) {
      if (st !== "pending" || this.deps.isOnline(peel)) continue;
      // Gone before it took the job: a queued job keeps the command for it instead.
      if (this.queueTtlMs > 0 && Date.now() < this.queueUntil) this.queuePeel(peel, this.command(peel));
      else this.setPeel(peel, "unreachable");
      if (this.finishing) return;
    }
  }

  /**
   * The job timeout (or, with `final`, the queue TTL plus the timeout). Peels this tracker queued
   * are left to the final deadline: they had until the TTL to take the job, then the timeout.
   */
  private async onDeadline(final = false): Promise<void> {
    if (this.finishing) return;
    // A return whose message we missed (reconnect) may still be in KV: take it over a timeout.
    // Only silent peels are read, in parallel batches; a failure (connection down) reads as none.
    const waiting = (p: string) => !final && this.queueTtlMs > 0 && this.queuedPeels.has(p);
    const silent = Object.keys(this.record.peels).filter(
      (p) => !isPeelSettled(this.record.peels[p]!) && !waiting(p),
    );
    if (silent.length === 0) return;
    const stored = await this.deps.store
      .returnsOf(this.jid, silent)
      .catch(() => new Map<string, PeelReturn>());
    for (const peel of silent) {
      const st = this.record.peels[peel]!;
      if (isPeelSettled(st)) continue;
      const ret = stored.get(peel);
      let next: PeelJobStatus;
      if (ret) next = ret.success ? "success" : "failed";
      else if (st === "queued") next = "expired";
      else if (st === "acked" || this.deps.isOnline(peel)) next = "timeout";
      else next = "unreachable";
      this.unqueue(peel);
      this.setPeel(peel, next);
      if (this.finishing) return;
    }
  }

  private scheduleWrite(): void {
    if (this.writeTimer || this.finishing) return;
    this.writeTimer = setTimeout(() => {
      this.writeTimer = undefined;
      this.writing = this.writing.then(async () => {
        await this.write();
      });
    }, WRITE_DELAY_MS);
  }

  /** Writes the in-memory record; on a CAS conflict another master finished the job (a kill takeover). */
  private async write(): Promise<boolean> {
    try {
      const s = await this.deps.store.write(this.record, this.revision);
      this.revision = s.revision;
      return true;
    } catch (err) {
      if (!(err instanceof JobConflictError)) {
        this.deps.log(`job ${this.jid}: writing the record failed: ${errText(err)}`);
        return false;
      }
      const cur = await this.deps.store.get(this.jid);
      if (cur && isJobFinished(cur.record.status)) {
        this.record = cur.record;
        this.revision = cur.revision;
        this.finishing ??= this.cleanup();
        return false;
      }
      if (cur && cur.record.master !== this.record.master) {
        // Another master took the job over while this one looked dead: it follows it now.
        this.deps.log(`job ${this.jid}: master ${cur.record.master} took it over; no longer following it`);
        this.record = cur.record;
        this.revision = cur.revision;
        this.finishing ??= this.cleanup();
        return false;
      }
      if (cur) {
        this.revision = cur.revision;
        return this.write();
      }
      return false;
    }
  }

  private finish(forced?: Exclude<JobStatus, "running">): Promise<void> {
    if (this.finishing) return this.finishing;
    this.finishing = (async () => {
      this.clearTimers();
      await this.writing;
      this.record.status = forced ?? settledJobStatus(this.record.peels);
      this.record.finished_at = new Date().toISOString();
      const wrote = await this.write();
      if (wrote) {
        await this.deps.store.removeActive(this.jid).catch(() => {});
        const ev: JobDoneEvent = {
          jid: this.jid,
          fun: this.record.fun,
          status: this.record.status,
          peels: this.record.peels,
          finished_at: this.record.finished_at!,
          master: this.record.master,
        };
        emitMasterEvent(this.deps.nc, masterTags.jobDone(this.jid), ev);
      }
      await this.cleanup();
    })();
    return this.finishing;
  }

  private async cleanup(): Promise<void> {
    this.clearTimers();
    this.sub?.unsubscribe();
    this.finishedFlag = true;
    for (const r of this.doneResolvers.splice(0)) r();
    this.onFinished(this.jid);
  }

  private clearTimers(): void {
    for (const t of this.timers.splice(0)) clearTimeout(t);
    if (this.writeTimer) clearTimeout(this.writeTimer);
    this.writeTimer = undefined;
  }
}

export function publishCancel(deps: Pick<TrackerDeps, "nc" | "signer">, jid: string, peel: string): void {
  deps.nc.publish(subjects.jobCancel(jid, peel), encode(signCancel(deps.signer, jid, peel)));
}
