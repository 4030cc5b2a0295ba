/**
 * An advisory leader lease in the `leases` bucket. The holder creates the key (CAS on "absent")
 * and renews it with CAS on the revision it wrote last, so a master that lost the lease finds out
 * on its next renewal. NATS 2.9 has no per-key TTL: a dead holder's lease lapses when its value
 * stays unchanged for LEASE_LAPSE_MS (the bucket's max_age is only the backstop), and a holder
 * that stops cleanly deletes it, which the others watch for (watchLeaseReleases).
 */
import type { KV } from "@nats-io/kv";
import { type KvWatchEntry, KvWatchInclude } from "@nats-io/kv";
import { decode, encode } from "../bus/codec.js";
import { errText } from "../util/errors.js";

export interface LeaseValue {
  holder: string;
  renewed_at: string;
}

/** How often a holder renews (and a non-holder retries). */
export const LEASE_RENEW_MS = 3_000;
/**
 * A lease whose value has not changed for this long (measured on the watcher's own clock, so
 * clock skew between masters and server plays no part) belongs to a dead holder and may be
 * taken. Well under the bucket TTL, which stays the backstop.
 */
export const LEASE_LAPSE_MS = 10_000;

export class Lease {
  private revision: number | undefined;
  /** Another holder's revision as first seen, and when: the lapse clock. */
  private seen: { revision: number; at: number } | undefined;

  constructor(
    private readonly kv: KV,
    readonly key: string,
    readonly holder: string,
    private readonly lapseMs = LEASE_LAPSE_MS,
  ) {}

  /** True while this instance believes it holds the lease (until the next failed renewal). */
  get held(): boolean {
    return this.revision !== undefined;
  }

  /**
   * Acquires or renews; false when another holder has it. Calls are serialised: a renewal timer
   * and a release seen by the watch may ask at once, and two creates from one holder would have
   * the loser conclude that someone else holds the lease.
   */
  acquire(): Promise<boolean> {
    const run = this.chain.then(() => this.acquireNow());
    this.chain = run.catch(() => false);
    return run;
  }

  private chain: Promise<unknown> = Promise.resolve();

  private async acquireNow(): Promise<boolean> {
    const value = encode<LeaseValue>({ holder: this.holder, renewed_at: new Date().toISOString() });
    if (this.revision !== undefined) {
      try {
        this.revision = await this.kv.update(this.key, value, this.revision);
        return true;
      } catch {
        // Lost it (expired and taken, or deleted): fall through to a fresh look.
        this.revision = undefined;
      }
    }
    const cur = await this.kv.get(this.key);
    try {
      if (cur === null || cur.operation !== "PUT") {
        this.revision = await this.kv.create(this.key, value);
        return true;
      }
      // A restarted master with the same id takes back its own lease at once.
      if (decode<LeaseValue>(cur.value).holder === this.holder || this.lapsed(cur.revision)) {
        this.revision = await this.kv.update(this.key, value, cur.revision);
        this.seen = undefined;
        return true;
      }
    } catch {
      // Someone else won the race for the key.
    }
    return false;
  }

  /** True once another holder's lease has stayed at one revision for LEASE_LAPSE_MS. */
  private lapsed(revision: number, now = Date.now()): boolean {
    if (this.seen?.revision !== revision) {
      this.seen = { revision, at: now };
      return false;
    }
    return now - this.seen.at >= this.lapseMs;
  }

  /** Gives the lease up so another master can take it without waiting for expiry. */
  async release(): Promise<void> {
    if (this.revision === undefined) return;
    const rev = this.revision;
    this.revision = undefined;
    try {
      await this.kv.delete(this.key, { previousSeq: rev });
    } catch {
      // Already lost: nothing to release.
    }
  }

  async currentHolder(): Promise<string | undefined> {
    const cur = await this.kv.get(this.key);
    if (cur === null || cur.operation !== "PUT") return undefined;
    return decode<LeaseValue>(cur.value).holder;
  }
}

/**
 * One tree publisher behind its advisory lease (states, settings): every publish and every
 * lease-bound job runs in one queue, and only while this master holds the lease.
 */
export class LeasedPublisher<T> {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    /** "state" or "settings": names the lease in log lines. */
    private readonly what: string,
    readonly lease: Lease,
    private readonly publishNow: () => Promise<T>,
    private readonly log: (msg: string) => void,
    private readonly stopped: () => boolean,
  ) {}

  get held(): boolean {
    return this.lease.held;
  }

  /** Publishes if this master holds (or can take) the lease; undefined when another holds it. */
  publish(): Promise<T | undefined> {
    const run = this.queue.then(async () => {
      if (this.stopped() || !(await this.lease.acquire())) return undefined;
      return this.publishNow();
    });
    this.queue = run.catch(() => {});
    return run;
  }

  /** Queues `job` behind pending publishes; it runs only if the lease is still held then. */
  enqueue(job: () => Promise<unknown>): void {
    this.queue = this.queue
      .then(async () => {
        if (!this.stopped() && this.lease.held) await job();
      })
      .catch((err: unknown) => this.log(`${this.what} publisher: ${errText(err)}`));
  }

  /** Renews the lease; a master that has just taken it publishes at once. */
  async renew(): Promise<void> {
    const had = this.lease.held;
    try {
      if ((await this.lease.acquire()) && !had) {
        this.log(`took the ${this.what}-publisher lease`);
        await this.publish();
      }
    } catch (err) {
      this.log(`${this.what} lease renewal failed: ${errText(err)}`);
    }
  }

  /** Waits for queued work, then lets the lease go so another master takes over at once. */
  async stop(): Promise<void> {
    await this.queue.catch(() => {});
    await this.lease.release().catch(() => {});
  }
}

/**
 * Calls `onReleased(key)` whenever a lease is deleted (a holder's clean stop), so the other
 * masters take it at once instead of at their next retry. Returns the stop function.
 */
export async function watchLeaseReleases(kv: KV, onReleased: (key: string) => void): Promise<() => void> {
  const w = await kv.watch({ include: KvWatchInclude.UpdatesOnly });
  void (async () => {
    for await (const e of w as AsyncIterable<KvWatchEntry>) {
      if (e.operation !== "PUT") onReleased(e.key);
    }
  })().catch(() => {});
  return () => w.stop();
}
