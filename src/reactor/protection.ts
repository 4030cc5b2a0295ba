/**
 * Loop and storm protection: a maximum depth for chained events, a token bucket per source (the
 * event's origin), `throttle:` per rule and source, and a breaker per rule that opens when the
 * rule fires too often and closes after a cool-down. Every refusal is counted by reason.
 *
 * With a `SharedLimits` (the `reactor-limits` bucket) the rate, throttle and breaker are shared by
 * every master (the `admit*Shared` methods); when the bucket cannot be reached they fall back to
 * this master's own counts and log, so the reactor keeps running.
 */

import { limitKeys, type SharedLimits, type TakeResult, type TokenSpec } from "./shared-limits.js";

export interface ProtectionOptions {
  /** Chained events deeper than this are dropped (default 5). */
  maxDepth?: number;
  /** Sustained events per second accepted from one source (default 100). */
  ratePerSecond?: number;
  /** Burst allowed above that rate (default 500). */
  rateBurst?: number;
  /** A rule that fires more than this many times within breakerWindowMs opens (default 600). */
  breakerMaxFires?: number;
  breakerWindowMs?: number;
  /** How long an open breaker stays open (default 60 s). */
  breakerOpenMs?: number;
}

export type DropReason = "depth" | "rate" | "throttle" | "breaker" | "age" | "spoof" | "invalid";

interface Bucket {
  tokens: number;
  at: number;
}

interface Breaker {
  fires: number[];
  openUntil: number;
}

export class Protection {
  readonly maxDepth: number;
  private readonly rate: number;
  private readonly burst: number;
  private readonly maxFires: number;
  private readonly windowMs: number;
  private readonly openMs: number;
  private readonly buckets = new Map<string, Bucket>();
  private readonly throttled = new Map<string, number>();
  private readonly breakers = new Map<string, Breaker>();
  readonly drops: Record<DropReason, number> = {
    depth: 0,
    rate: 0,
    throttle: 0,
    breaker: 0,
    age: 0,
    spoof: 0,
    invalid: 0,
  };

  /** Tokens taken from the shared buckets and not yet spent, by key. */
  private readonly grants = new Map<string, number>();
  /** Shared breakers seen open, until when. */
  private readonly sharedOpen = new Map<string, number>();
  private readonly takes = new Map<string, Promise<TakeResult | undefined>>();
  private lastFallbackLog = 0;

  constructor(
    o: ProtectionOptions = {},
    private readonly now: () => number = Date.now,
    private readonly shared?: SharedLimits,
    private readonly log: (msg: string) => void = () => {},
  ) {
    this.maxDepth = o.maxDepth ?? 5;
    this.rate = o.ratePerSecond ?? 100;
    this.burst = o.rateBurst ?? 500;
    this.maxFires = o.breakerMaxFires ?? 600;
    this.windowMs = o.breakerWindowMs ?? 60_000;
    this.openMs = o.breakerOpenMs ?? 60_000;
  }

  drop(reason: DropReason): false {
    this.drops[reason]++;
    return false;
  }

  /** Takes one token from the source's bucket; false (counted) when it is empty. */
  admitSource(source: string): boolean {
    const t = this.now();
    const b = this.buckets.get(source) ?? { tokens: this.burst, at: t };
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.rate);
    b.at = t;
    this.buckets.set(source, b);
    if (b.tokens < 1) return this.drop("rate");
    b.tokens -= 1;
    return true;
  }

  /** At most one firing per `throttleMs` for a rule and source; false (counted) inside the window. */
  admitThrottle(rule: string, source: string, throttleMs: number | undefined): boolean {
    if (throttleMs === undefined) return true;
    const key = `${rule}\0${source}`;
    const t = this.now();
    const last = this.throttled.get(key);
    if (last !== undefined && t - last < throttleMs) return this.drop("throttle");
    this.throttled.set(key, t);
    return true;
  }

  /**
   * Records a firing of `rule`; false (counted) while its breaker is open. Returns "opened" on
   * the firing that opens it, so the caller can say so once.
   */
  admitRule(rule: string): boolean | "opened" {
    const t = this.now();
    const b = this.breakers.get(rule) ?? { fires: [], openUntil: 0 };
    this.breakers.set(rule, b);
    if (t < b.openUntil) return this.drop("breaker");
    while (b.fires.length > 0 && b.fires[0]! <= t - this.windowMs) b.fires.shift();
    b.fires.push(t);
    if (b.fires.length > this.maxFires) {
      b.openUntil = t + this.openMs;
      b.fires = [];
      this.drop("breaker");
      return "opened";
    }
    return true;
  }

  /** Rules whose breaker is open now. */
  openBreakers(): string[] {
    const t = this.now();
    const local = [...this.breakers].filter(([, b]) => t < b.openUntil).map(([r]) => r);
    const shared = [...this.sharedOpen]
      .filter(([r, until]) => t < until && !local.includes(r))
      .map(([r]) => r);
    return [...local, ...shared];
  }

  private fallback(what: string): void {
    const t = this.now();
    if (t - this.lastFallbackLog < 10_000) return;
    this.lastFallbackLog = t;
    this.log(`reactor: the reactor-limits bucket is unreachable: counting ${what} on this master only`);
  }

  private batch(n: number): number {
    return Math.max(1, Math.ceil(n / 20));
  }

  /**
   * One take from a shared bucket at a time per key on this master: concurrent handlers wait for
   * the batch in flight instead of racing each other's compare-and-set. `first` is true only for
   * the caller whose take it was (so an opened breaker is announced once).
   */
  private takeOnce(key: string, spec: TokenSpec): Promise<{ r: TakeResult | undefined; first: boolean }> {
    const pending = this.takes.get(key);
    if (pending) return pending.then((r) => ({ r, first: false }));
    const p = this.shared!.take(key, spec).then((r) => {
      this.takes.delete(key);
      if (r && "tokens" in r) this.grants.set(key, (this.grants.get(key) ?? 0) + r.tokens);
      return r;
    });
    this.takes.set(key, p);
    return p.then((r) => ({ r, first: true }));
  }

  /** Spends one granted token of `key`, true when there was one. */
  private spend(key: string): boolean {
    const have = this.grants.get(key) ?? 0;
    if (have < 1) return false;
    this.grants.set(key, have - 1);
    return true;
  }

  /** admitSource, shared by every master: tokens are taken from `rate.<source>` in batches. */
  async admitSourceShared(source: string): Promise<boolean> {
    if (!this.shared) return this.admitSource(source);
    const key = limitKeys.rate(source);
    const spec = { capacity: this.burst, perSecond: this.rate, batch: this.batch(this.burst) };
    while (!this.spend(key)) {
      const { r } = await this.takeOnce(key, spec);
      if (r === undefined) {
        this.fallback("the rate limit");
        return this.admitSource(source);
      }
      if (!("tokens" in r) || r.tokens < 1) return this.drop("rate");
    }
    return true;
  }

  /** admitThrottle, shared: the firing must win a compare-and-set on `throttle.<rule>.<source>`. */
  async admitThrottleShared(
    rule: string,
    source: string,
    throttleMs: number | undefined,
    eventId: string,
  ): Promise<boolean> {
    if (throttleMs === undefined) return true;
    if (!this.shared) return this.admitThrottle(rule, source, throttleMs);
    const ok = await this.shared.throttle(limitKeys.throttle(rule, source), throttleMs, eventId);
    if (ok === undefined) {
      this.fallback("throttles");
      return this.admitThrottle(rule, source, throttleMs);
    }
    return ok ? true : this.drop("throttle");
  }

  /** admitRule, shared: firings spend tokens of `breaker.<rule>`; an empty bucket opens it. */
  async admitRuleShared(rule: string): Promise<boolean | "opened"> {
    if (!this.shared) return this.admitRule(rule);
    const key = limitKeys.breaker(rule);
    const spec = {
      capacity: this.maxFires,
      perSecond: this.maxFires / (this.windowMs / 1000),
      batch: this.batch(this.maxFires),
      openMs: this.openMs,
    };
    while (!this.spend(key)) {
      if (this.now() < (this.sharedOpen.get(rule) ?? 0)) return this.drop("breaker");
      const { r, first } = await this.takeOnce(key, spec);
      if (r === undefined) {
        this.fallback("breaker firings");
        return this.admitRule(rule);
      }
      if ("open" in r) {
        this.sharedOpen.set(rule, r.until);
        this.drop("breaker");
        return r.opened && first ? "opened" : false;
      }
      if (r.tokens < 1) return this.drop("breaker");
    }
    return true;
  }
}
