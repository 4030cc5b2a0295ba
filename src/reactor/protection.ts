/**
 * Loop and storm protection, per master: a maximum depth for chained events, a token bucket per
 * source (the event's origin), `throttle:` per rule and source, and a breaker per rule that opens
 * when the rule fires too often and closes after a cool-down. Every refusal is counted by reason.
 */

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

  constructor(
    o: ProtectionOptions = {},
    private readonly now: () => number = Date.now,
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
    return [...this.breakers].filter(([, b]) => t < b.openUntil).map(([r]) => r);
  }
}
