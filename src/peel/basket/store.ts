/**
 * The `basket` bucket: key `<peel>.<function>`, value a BasketEntry. Written only by that peel
 * (its credentials allow no other key), read directly by peels, the CLI and the master.
 * Entries come from other machines, so every read validates them and skips what does not fit.
 */
import type { KV } from "@nats-io/kv";
import { decode, encode } from "../../bus/codec.js";
import { assertPeelId, assertSubjectTail, isValidPeelId } from "../../bus/names.js";

export interface BasketEntry {
  v: 1;
  peel: string;
  function: string;
  value: unknown;
  /** When this value was measured and written (ISO); unchanged values are not rewritten. */
  ts: string;
  /** How often the peel measures it: an entry much older than this and its peel is silent. */
  interval_s: number;
}

/** One answer of basket.get / mine.get, Salt's `{minion: value}` as a list sorted by peel id. */
export interface BasketRow {
  peel_id: string;
  value: unknown;
  /** When the value was written. */
  updated_at: string;
}

export function basketKey(peel: string, fn: string): string {
  return `${assertPeelId(peel)}.${assertSubjectTail("basket function name", fn)}`;
}

/** Splits `<peel>.<function>`; undefined for keys that are not basket keys. */
export function splitBasketKey(key: string): { peel: string; fn: string } | undefined {
  const dot = key.indexOf(".");
  if (dot <= 0 || dot === key.length - 1) return undefined;
  const peel = key.slice(0, dot);
  return isValidPeelId(peel) ? { peel, fn: key.slice(dot + 1) } : undefined;
}

export function encodeEntry(e: Omit<BasketEntry, "v">): Uint8Array {
  return encode(e);
}

/** The entry stored under `key`, or undefined when it is not one (wrong peel or function, bad shape). */
export function parseEntry(key: string, data: Uint8Array): BasketEntry | undefined {
  const k = splitBasketKey(key);
  if (!k) return undefined;
  let e: Partial<BasketEntry>;
  try {
    e = decode<Partial<BasketEntry>>(data);
  } catch {
    return undefined;
  }
  // Identity comes from the key (which only that peel can write), never from the payload.
  if (e.peel !== k.peel || e.function !== k.fn) return undefined;
  if (typeof e.ts !== "string" || Number.isNaN(Date.parse(e.ts))) return undefined;
  if (!("value" in e)) return undefined;
  return {
    v: 1,
    peel: k.peel,
    function: k.fn,
    value: e.value,
    ts: e.ts,
    interval_s: typeof e.interval_s === "number" && e.interval_s > 0 ? e.interval_s : 0,
  };
}

async function allKeys(kv: KV, filter?: string): Promise<string[]> {
  const out: string[] = [];
  for await (const k of await kv.keys(filter)) out.push(k);
  return out;
}

async function entryAt(kv: KV, key: string): Promise<BasketEntry | undefined> {
  const e = await kv.get(key);
  if (e?.operation !== "PUT") return undefined;
  return parseEntry(key, e.value);
}

/**
 * Every stored entry of `fn` whose peel passes `keep`, sorted by peel id. `keep` sees only the
 * peel id so callers can match targets on facts they load themselves.
 */
export async function readFunction(
  kv: KV,
  fn: string,
  keep: (peels: string[]) => Promise<Set<string>> | Set<string>,
): Promise<BasketRow[]> {
  assertSubjectTail("basket function name", fn);
  const peels = (await allKeys(kv))
    .map(splitBasketKey)
    .filter((k): k is { peel: string; fn: string } => k?.fn === fn)
    .map((k) => k.peel);
  const wanted = await keep(peels);
  const rows = await Promise.all(
    peels
      .filter((p) => wanted.has(p))
      .map(async (p) => {
        const e = await entryAt(kv, basketKey(p, fn));
        return e ? { peel_id: p, value: e.value, updated_at: e.ts } : undefined;
      }),
  );
  return rows.filter((r): r is BasketRow => r !== undefined).sort((a, b) => (a.peel_id < b.peel_id ? -1 : 1));
}

/** Every entry of one peel, sorted by function name. */
export async function readPeel(kv: KV, peel: string): Promise<BasketEntry[]> {
  assertPeelId(peel);
  const keys = (await allKeys(kv, `${peel}.>`)).filter((k) => splitBasketKey(k)?.peel === peel);
  const entries = await Promise.all(keys.map((k) => entryAt(kv, k)));
  return entries
    .filter((e): e is BasketEntry => e !== undefined)
    .sort((a, b) => (a.function < b.function ? -1 : 1));
}

/** Function names this peel has keys for (stale ones included), for the peel's own clean-up. */
export async function storedFunctionsOf(kv: KV, peel: string): Promise<string[]> {
  return (await allKeys(kv, `${assertPeelId(peel)}.>`))
    .map(splitBasketKey)
    .filter((k): k is { peel: string; fn: string } => k?.peel === peel)
    .map((k) => k.fn);
}

/** Removes every entry of a peel (revoked or removed); returns how many keys were purged. */
export async function purgePeel(kv: KV, peel: string): Promise<number> {
  const fns = await storedFunctionsOf(kv, peel);
  // Delete markers: the basket refuses the rollup a purge is (bus/stream-policy.ts); history 1 keeps only them.
  for (const fn of fns) await kv.delete(basketKey(peel, fn));
  return fns.length;
}
