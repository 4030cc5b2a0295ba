/**
 * Late returns correct finished job records. A return can reach the bus after its job was
 * finished: kept in a peel's outbox through an outage, or landing while the owner was writing
 * the final record. The peel stores it in `job-returns` and publishes it; one master (queue
 * group) hears it here, waits a moment for the owner's own write, and then, if the record still
 * calls that peel timeout or unreachable, sets it to success or failed and recomputes the job's
 * status (CAS, so it never overwrites another writer). Returns are grouped per job, so a burst
 * from a big job costs one record read per job, not one per peel.
 */
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { decodeAs } from "../bus/codec.js";
import { ROOT } from "../bus/names.js";
import { relayedReason } from "../bus/validate.js";
import { isJobFinished, type JobStore, settledJobStatus } from "../jobs/store.js";
import type { PeelJobStatus } from "../jobs/wire.js";
import { peelReturnSchema } from "../jobs/wire-schema.js";
import { errText } from "../util/errors.js";

/** The first look waits this long: the owner's tracker writes its record within ~100 ms. */
export const LATE_RETURN_DELAY_MS = 1_000;
/** A job still running at the first look is looked at again on this backoff, then let go. */
const RECHECK_MS = [2_000, 5_000, 15_000];
/** Statuses a return overrules: the peel did answer after all. */
const OVERRULED: ReadonlySet<PeelJobStatus> = new Set(["timeout", "unreachable", "pending", "acked"]);

export interface LateReturnDeps {
  nc: NatsConnection;
  store: JobStore;
  /** The queue group all masters share, so each return is looked at by one of them. */
  queue: string;
  log(msg: string): void;
  /**
   * True when this master's own tracker follows the job and will hear the return itself (the
   * common case): nothing to correct, so the return is not decoded or looked at again.
   */
  follows?(jid: string): boolean;
  /** Called with the corrected record's jid and new status (events, tests). */
  onCorrected?(jid: string, status: string): void;
}

export class LateReturnCorrector {
  private sub: Subscription | undefined;
  /** jid → peel → whether its return succeeded, waiting for a look at the record. */
  private readonly waiting = new Map<string, Map<string, boolean>>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly deps: LateReturnDeps) {}

  start(): void {
    this.sub = this.deps.nc.subscribe(`${ROOT}.job.*.return.*`, {
      queue: this.deps.queue,
      callback: (err, msg) => {
        if (!err) this.onReturn(msg);
      },
    });
  }

  stop(): void {
    this.stopped = true;
    this.sub?.unsubscribe();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.waiting.clear();
  }

  private onReturn(msg: Msg): void {
    // zester.job.<jid>.return.<peel>: identity from the subject; only `success` is read.
    const parts = msg.subject.split(".");
    const jid = parts[2];
    const peel = parts[4];
    if (parts.length !== 5 || !jid || !peel) return;
    if (this.deps.follows?.(jid)) return;
    // Bytes a peel stored and had the server deliver here (a consumer, a direct get or a publish
    // ack with this subject as reply-to) could otherwise rewrite another peel's outcome.
    const relayed = relayedReason(msg, () => true);
    if (relayed) {
      this.deps.log(`job ${jid}: ignored a late return for ${peel}: ${relayed}`);
      return;
    }
    let success: boolean;
    try {
      const ret = decodeAs(peelReturnSchema, msg.data);
      success = ret.success === true;
    } catch {
      return;
    }
    let peels = this.waiting.get(jid);
    if (!peels) {
      peels = new Map();
      this.waiting.set(jid, peels);
    }
    peels.set(peel, success);
    this.schedule(jid, LATE_RETURN_DELAY_MS, 0);
  }

  private schedule(jid: string, ms: number, attempt: number): void {
    if (this.stopped || this.timers.has(jid)) return;
    this.timers.set(
      jid,
      setTimeout(() => {
        this.timers.delete(jid);
        void this.check(jid, attempt).catch((err) =>
          this.deps.log(`job ${jid}: checking late returns failed: ${errText(err)}`),
        );
      }, ms),
    );
  }

  private async check(jid: string, attempt: number): Promise<void> {
    const peels = this.waiting.get(jid);
    if (!peels || this.stopped) return;
    this.waiting.delete(jid);
    const cur = await this.deps.store.get(jid);
    if (!cur) return;
    if (!isJobFinished(cur.record.status)) {
      // Its owner (or whoever takes it over) reads stored returns; look again in case it missed these.
      const left = [...peels].filter(([p]) => OVERRULED.has(cur.record.peels[p] ?? "success"));
      const next = RECHECK_MS[attempt];
      if (left.length === 0 || next === undefined) return;
      this.requeue(jid, left);
      this.schedule(jid, next, attempt + 1);
      return;
    }
    let corrected: string[] = [];
    const updated = await this.deps.store.update(jid, (r) => {
      corrected = [];
      if (!isJobFinished(r.status)) return undefined;
      for (const [peel, success] of peels) {
        const st = r.peels[peel];
        if (st === undefined || !OVERRULED.has(st)) continue;
        r.peels[peel] = success ? "success" : "failed";
        corrected.push(peel);
      }
      if (corrected.length === 0) return undefined;
      // A kill is the operator's word: the job stays canceled, only the peels' truth changes.
      if (r.status !== "canceled") r.status = settledJobStatus(r.peels);
      return r;
    });
    if (!updated || corrected.length === 0) return;
    this.deps.log(
      `job ${jid}: late return(s) from ${corrected.join(", ")} corrected the record (now ${updated.record.status})`,
    );
    this.deps.onCorrected?.(jid, updated.record.status);
  }

  private requeue(jid: string, entries: [string, boolean][]): void {
    let peels = this.waiting.get(jid);
    if (!peels) {
      peels = new Map();
      this.waiting.set(jid, peels);
    }
    for (const [p, s] of entries) if (!peels.has(p)) peels.set(p, s);
  }
}

/** Calls `onReconnect` after every reconnect of `nc`, until it closes. */
export async function followReconnects(nc: NatsConnection, onReconnect: () => void): Promise<void> {
  for await (const s of nc.status()) if (s.type === "reconnect") onReconnect();
}
