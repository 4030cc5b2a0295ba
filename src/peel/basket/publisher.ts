/**
 * The peel's side of the basket: measures each configured function at start, on its interval
 * and after a reconnection, and writes `<peel>.<function>` only when the value differs from the
 * stored one. Keys of functions no longer configured are removed. While the bus is away values
 * are still measured; the newest is written when it comes back.
 */
import type { KV } from "@nats-io/kv";
import { errText } from "../../util/errors.js";
import type { PeelLogger } from "../peel.js";
import type { BasketConfig, BasketFunctionSpec } from "./config.js";
import { basketKey, encodeEntry, parseEntry, storedFunctionsOf } from "./store.js";

export interface BasketPublisherOptions {
  peel: string;
  log: PeelLogger;
  /** Measures one function; throws with a message for the log when it cannot. */
  measure: (spec: BasketFunctionSpec) => Promise<unknown>;
  /** The open bucket, or undefined while disconnected. */
  bucket: () => KV | undefined;
  onWrite?: (fn: string) => void;
}

interface Slot {
  spec: BasketFunctionSpec;
  timer: NodeJS.Timeout | undefined;
  /** JSON of the value known to be stored (written by us or found in KV). */
  stored: string | undefined;
  /** Measured but not written yet (bus away). */
  pending: { json: string; value: unknown; ts: string } | undefined;
  running: Promise<void> | undefined;
}

export class BasketPublisher {
  private readonly slots = new Map<string, Slot>();
  private configured = false;
  private stopped = false;
  private readonly reported = new Set<string>();

  constructor(private readonly opts: BasketPublisherOptions) {}

  /** The configured function names (for beacons.list-like introspection and tests). */
  get functions(): string[] {
    return [...this.slots.keys()].sort();
  }

  /** Applies a new configuration: new or changed functions are measured at once. */
  configure(cfg: BasketConfig): void {
    if (this.stopped) return;
    for (const e of cfg.errors) {
      if (this.reported.has(e)) continue;
      this.reported.add(e);
      this.opts.log.error(`basket: ${e}`);
    }
    const next = new Map(cfg.functions.map((s) => [s.name, s]));
    for (const [name, slot] of this.slots) {
      const s = next.get(name);
      if (!s || JSON.stringify(s) !== JSON.stringify(slot.spec)) {
        if (slot.timer) clearInterval(slot.timer);
        this.slots.delete(name);
      }
    }
    for (const [name, spec] of next) {
      if (this.slots.has(name)) continue;
      const slot: Slot = {
        spec,
        timer: undefined,
        stored: undefined,
        pending: undefined,
        running: undefined,
      };
      slot.timer = setInterval(() => void this.tick(slot), spec.intervalMs);
      slot.timer.unref?.();
      this.slots.set(name, slot);
      void this.tick(slot);
    }
    this.configured = true;
    void this.removeUnconfigured();
  }

  /** After a (re)connection: writes what waited and clears keys of dropped functions. */
  onConnected(): void {
    if (!this.configured || this.stopped) return;
    for (const slot of this.slots.values()) {
      if (slot.pending) void this.write(slot);
      else if (slot.stored === undefined) void this.tick(slot);
    }
    void this.removeUnconfigured();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.slots.values()) if (s.timer) clearInterval(s.timer);
    await Promise.allSettled([...this.slots.values()].map((s) => s.running));
  }

  /** Measures one function and writes it when it changed. Ticks of one function never overlap. */
  tick(slot: Slot): Promise<void> {
    if (slot.running || this.stopped) return slot.running ?? Promise.resolve();
    slot.running = (async () => {
      let value: unknown;
      try {
        value = await this.opts.measure(slot.spec);
      } catch (err) {
        const msg = `basket: ${slot.spec.name} (${slot.spec.function}): ${errText(err)}`;
        if (!this.reported.has(msg)) this.opts.log.error(msg);
        this.reported.add(msg);
        return;
      }
      const json = JSON.stringify(value ?? null);
      if (json === slot.stored) {
        slot.pending = undefined;
        return;
      }
      slot.pending = { json, value: value ?? null, ts: new Date().toISOString() };
      await this.write(slot);
    })().finally(() => {
      slot.running = undefined;
    });
    return slot.running;
  }

  private async write(slot: Slot): Promise<void> {
    const kv = this.opts.bucket();
    const p = slot.pending;
    if (!kv || !p || this.stopped) return;
    const key = basketKey(this.opts.peel, slot.spec.name);
    try {
      if (slot.stored === undefined) {
        // First write since start: a restart with an unchanged value rewrites nothing.
        const cur = await kv.get(key);
        const e = cur && cur.operation === "PUT" ? parseEntry(key, cur.value) : undefined;
        if (e && JSON.stringify(e.value) === p.json && e.interval_s === slot.spec.intervalMs / 1000) {
          slot.stored = p.json;
          slot.pending = undefined;
          return;
        }
      }
      await kv.put(
        key,
        encodeEntry({
          peel: this.opts.peel,
          function: slot.spec.name,
          value: p.value,
          ts: p.ts,
          interval_s: slot.spec.intervalMs / 1000,
        }),
      );
      slot.stored = p.json;
      if (slot.pending === p) slot.pending = undefined;
      this.opts.onWrite?.(slot.spec.name);
    } catch (err) {
      this.opts.log.warn(`basket: cannot write ${key}: ${errText(err)}; retrying on reconnect`);
    }
  }

  private async removeUnconfigured(): Promise<void> {
    const kv = this.opts.bucket();
    if (!kv) return;
    try {
      for (const fn of await storedFunctionsOf(kv, this.opts.peel)) {
        if (this.slots.has(fn)) continue;
        // A delete marker, not a purge: buckets peels write refuse rollups (bus/stream-policy.ts).
        await kv.delete(basketKey(this.opts.peel, fn));
        this.opts.log.info(`basket: removed ${this.opts.peel}.${fn} (no longer in basket_functions)`);
      }
    } catch (err) {
      this.opts.log.warn(`basket: cannot clean up old keys: ${errText(err)}`);
    }
  }
}
