/**
 * An advisory leader lease in the `leases` bucket. The holder creates the key (CAS on "absent")
 * and renews it with CAS on the revision it wrote last, so a master that lost the lease finds out
 * on its next renewal. NATS 2.9 has no per-key TTL: the bucket's max_age is what lets a dead
 * holder's lease lapse, so renewals must come well inside LEASE_TTL_MS.
 */
import type { KV } from "@nats-io/kv";
import { decode, encode } from "../bus/codec.js";
import { LEASE_TTL_MS } from "../bus/names.js";

export interface LeaseValue {
  holder: string;
  renewed_at: string;
}

/** How often a holder renews (and a non-holder retries): a third of the bucket TTL. */
export const LEASE_RENEW_MS = Math.floor(LEASE_TTL_MS / 3);

export class Lease {
  private revision: number | undefined;

  constructor(
    private readonly kv: KV,
    readonly key: string,
    readonly holder: string,
  ) {}

  /** True while this instance believes it holds the lease (until the next failed renewal). */
  get held(): boolean {
    return this.revision !== undefined;
  }

  /** Acquires or renews; false when another holder has it. */
  async acquire(): Promise<boolean> {
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
      if (decode<LeaseValue>(cur.value).holder === this.holder) {
        this.revision = await this.kv.update(this.key, value, cur.revision);
        return true;
      }
    } catch {
      // Someone else won the race for the key.
    }
    return false;
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
