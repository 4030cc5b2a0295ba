/**
 * The reactor's limits shared by every master, in the `reactor-limits` bucket. Masters share one
 * durable consumer on `events`, so counting in memory would give each limit once per master.
 *
 * - throttle: key `throttle.<rule>.<source>` holds the last firing `{at, event}`; a firing is
 *   allowed only by a compare-and-set at the revision read (create when absent). Losing the CAS
 *   means another master fired: throttled. The same event handled again (a redelivery after a
 *   master died) is allowed, since its job ids are derived from the event id anyway.
 * - rate (per source) and breaker (per rule): shared token buckets `rate.<source>` and
 *   `breaker.<rule>`, from which a master takes a batch of tokens by CAS and spends them locally,
 *   so there is one KV round trip per batch rather than per event. A master can hold at most one
 *   unspent batch, which bounds how far the masters together may overshoot.
 *
 * Every call resolves `undefined` when the bucket cannot be reached; the caller then counts
 * locally (fail safe: the reactor keeps running) and logs.
 */

import type { KV } from "@nats-io/kv";

const CAS_TRIES = 8;

/** Rule globs hold `*` and `/`, which KV keys cannot: every key part is base64url. */
function part(s: string): string {
  return Buffer.from(s).toString("base64url") || "_";
}

export const limitKeys = {
  throttle: (rule: string, source: string) => `throttle.${part(rule)}.${part(source)}`,
  rate: (source: string) => `rate.${part(source)}`,
  breaker: (rule: string) => `breaker.${part(rule)}`,
};

interface Bucket {
  tokens: number;
  at: number;
  open_until?: number;
}

/** The revision-guarded write conflicted: someone else wrote the key since we read it. */
function isCasLoss(err: unknown): boolean {
  const m = String((err as Error)?.message ?? err);
  return /wrong last sequence|key exists|wrong last msg/i.test(m);
}

export interface TokenSpec {
  capacity: number;
  perSecond: number;
  batch: number;
  /** Breaker only: how long an emptied bucket stays open. */
  openMs?: number;
}

export type TakeResult = { tokens: number } | { open: true; opened: boolean; until: number };

export class SharedLimits {
  constructor(
    private readonly kv: KV,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when this event may fire `rule` for `source`; false when throttled; undefined: unreachable. */
  async throttle(key: string, windowMs: number, eventId: string): Promise<boolean | undefined> {
    try {
      const e = await this.kv.get(key);
      const t = this.now();
      const value = new TextEncoder().encode(JSON.stringify({ at: t, event: eventId }));
      if (e && e.operation === "PUT" && e.value.length > 0) {
        const last = JSON.parse(e.string()) as { at: number; event: string };
        if (last.event === eventId) return true;
        if (t - last.at < windowMs) return false;
        await this.kv.update(key, value, e.revision);
      } else {
        await this.kv.create(key, value);
      }
      return true;
    } catch (err) {
      if (isCasLoss(err)) return false;
      return undefined;
    }
  }

  /**
   * Takes up to `spec.batch` tokens from the shared bucket `key` (refilled at `perSecond` up to
   * `capacity`). With `openMs` (a breaker), an empty bucket opens for that long; `opened` is true
   * only for the one master whose write opened it.
   */
  async take(key: string, spec: TokenSpec): Promise<TakeResult | undefined> {
    try {
      for (let i = 0; i < CAS_TRIES; i++) {
        const e = await this.kv.get(key);
        const t = this.now();
        const prev: Bucket | undefined =
          e && e.operation === "PUT" && e.value.length > 0 ? (JSON.parse(e.string()) as Bucket) : undefined;
        const b: Bucket = prev
          ? {
              ...prev,
              tokens: Math.min(spec.capacity, prev.tokens + ((t - prev.at) / 1000) * spec.perSecond),
              at: t,
            }
          : { tokens: spec.capacity, at: t };
        if (b.open_until !== undefined && t < b.open_until)
          return { open: true, opened: false, until: b.open_until };
        let result: TakeResult;
        if (b.tokens < 1) {
          if (spec.openMs === undefined) {
            result = { tokens: 0 };
          } else {
            b.open_until = t + spec.openMs;
            b.tokens = spec.capacity;
            result = { open: true, opened: true, until: b.open_until };
          }
        } else {
          const n = Math.min(spec.batch, Math.floor(b.tokens));
          b.tokens -= n;
          delete b.open_until;
          result = { tokens: n };
        }
        if ("tokens" in result && result.tokens === 0) return result;
        const value = new TextEncoder().encode(JSON.stringify(b));
        try {
          if (e) await this.kv.update(key, value, e.revision);
          else await this.kv.create(key, value);
          return result;
        } catch (err) {
          if (!isCasLoss(err)) throw err;
        }
      }
      // Lost every compare-and-set to other masters: undecided, so the caller counts locally.
      return undefined;
    } catch {
      return undefined;
    }
  }
}
