/**
 * How `G@`/`I@` read a value out of facts or settings and compare it. Shared by the per-peel
 * matcher and the index so the two cannot disagree.
 *
 * Values are compared as lower-cased strings ("tokens"), as Salt does for grains: `G@os:debian`
 * matches `Debian`. Lists match when any element matches; objects match a `:` glob against their
 * keys; null and missing values match nothing, not even `!=`. `G@` reads a fact and, where
 * Salt's grain of that name differs (`os`: `linux` and `Debian`), both, as one list.
 */
import { DERIVED_GRAINS, grainValue } from "../facts/grains.js";
import type { DataOp } from "./ast.js";

/** Walks `path` through objects (by key) and arrays (by numeric index). */
export function readPath(root: unknown, path: readonly string[]): unknown {
  let cur: unknown = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    if (Array.isArray(cur)) {
      if (!/^\d+$/.test(seg)) return undefined;
      cur = cur[Number(seg)];
    } else {
      if (!Object.hasOwn(cur, seg)) return undefined;
      cur = (cur as Record<string, unknown>)[seg];
    }
  }
  return cur;
}

function asList(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [v];
}

/**
 * What `G@` sees at `path`: the fact there, merged with Salt's grain of the same top-level name
 * when that differs, so `G@os:linux` and `G@os:Debian` both match a Debian peel and
 * `G@os!=Debian` matches neither reading. Objects are never merged: the fact wins.
 */
export function factReading(facts: unknown, path: readonly string[]): unknown {
  const v = readPath(facts, path);
  const key = path[0];
  if (key === undefined || !DERIVED_GRAINS.has(key) || facts === null || typeof facts !== "object") return v;
  const g = readPath(grainValue(facts as Record<string, unknown>, key), path.slice(1));
  if (g === undefined || g === null) return v;
  if (v === undefined || v === null) return g;
  const isObj = (x: unknown) => typeof x === "object" && !Array.isArray(x);
  if (isObj(v) || isObj(g)) return v;
  const merged = [...asList(v)];
  for (const e of asList(g)) if (!merged.includes(e)) merged.push(e);
  return merged.length === 1 ? merged[0] : merged;
}

export function scalarToken(v: unknown): string | undefined {
  if (typeof v === "string") return v.toLowerCase();
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint")
    return String(v).toLowerCase();
  return undefined;
}

/** What a value offers to matching: scalar tokens (itself or list elements) and object keys. */
export interface ValueTokens {
  /** Scalars and scalar list elements; compared by `:` and by the comparison operators. */
  values: string[];
  /** Object keys, lower-cased; only `:` sees them. */
  keys: string[];
  /** Scalars and lists take part in comparisons; objects and null do not. */
  comparable: boolean;
}

const EMPTY: ValueTokens = { values: [], keys: [], comparable: false };

export function valueTokens(v: unknown): ValueTokens {
  if (v === null || v === undefined) return EMPTY;
  const t = scalarToken(v);
  if (t !== undefined) return { values: [t], keys: [], comparable: true };
  if (Array.isArray(v)) {
    const values: string[] = [];
    for (const e of v) {
      const et = scalarToken(e);
      if (et !== undefined) values.push(et);
    }
    return { values, keys: [], comparable: true };
  }
  if (typeof v === "object")
    return { values: [], keys: Object.keys(v).map((k) => k.toLowerCase()), comparable: false };
  return EMPTY;
}

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/;

export function asNumber(token: string): number | undefined {
  return NUMBER.test(token) ? Number(token) : undefined;
}

/** A compiled comparison against a literal: numeric when both sides are numbers, else by string. */
export function comparator(op: Exclude<DataOp, ":">, literal: string): (token: string) => boolean {
  const lit = literal.toLowerCase();
  const litNum = asNumber(lit);
  const cmp = (token: string): number => {
    const n = litNum === undefined ? undefined : asNumber(token);
    if (n !== undefined && litNum !== undefined) return n < litNum ? -1 : n > litNum ? 1 : 0;
    return token < lit ? -1 : token > lit ? 1 : 0;
  };
  switch (op) {
    case ">=":
      return (t) => cmp(t) >= 0;
    case "<=":
      return (t) => cmp(t) <= 0;
    case ">":
      return (t) => cmp(t) > 0;
    case "<":
      return (t) => cmp(t) < 0;
    case "!=":
      // `!=` is answered as "no element equals", so this is the equality test it negates.
      return (t) => cmp(t) === 0;
  }
}
