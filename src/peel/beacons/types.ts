/**
 * The beacon contract. One beacon module per file in this folder: it checks its own options
 * (unknown keys are errors with a did-you-mean) and returns an instance that either polls on the
 * beacon's interval or watches and reports as things happen. A beacon only observes; it never
 * changes the machine.
 */
import type { Facts } from "../../facts/index.js";

export type BeaconData = Record<string, unknown>;

export interface BeaconContext {
  peel: string;
  facts: () => Promise<Facts>;
}

export interface BeaconInstance {
  /** Called every interval; each returned mapping becomes one event. */
  poll?(): Promise<BeaconData[]>;
  /** Starts watching; `emit` makes one event. Returns what stops it. */
  watch?(emit: (data: BeaconData) => void, fail: (err: unknown) => void): () => void;
}

export interface BeaconModule {
  doc: string;
  /** Options this module understands, besides the common ones (interval, ...). */
  keys: readonly string[];
  /** Checks the options; throws with a message naming the bad one. */
  create(options: Record<string, unknown>, ctx: BeaconContext): BeaconInstance;
}

export function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** `63%`, `63` or 63 → 63; undefined when it is not a percentage in 0..100. */
export function percent(v: unknown): number | undefined {
  const n =
    typeof v === "number" ? v : typeof v === "string" ? Number(v.trim().replace(/%$/, "")) : Number.NaN;
  return Number.isFinite(n) && n >= 0 && n <= 100 ? n : undefined;
}

export function boolOption(v: unknown, name: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== "boolean") throw new Error(`${name} must be true or false`);
  return v;
}
