/**
 * Validation and coercion of a state's or function's arguments against its ParamSpec map.
 * Requisites and other engine keywords are not the module's business: the engine removes them
 * before validation (see ENGINE_KEYS).
 */
import { didYouMean } from "../util/suggest.js";
import type { ParamSpec, Params, ParamType } from "./types.js";

/** Requisite kinds, in the order the engine evaluates them. */
export const REQUISITE_KINDS = [
  "require",
  "require_any",
  "watch",
  "watch_any",
  "onchanges",
  "onchanges_any",
  "onfail",
  "onfail_any",
  "onfail_all",
  "prereq",
  "listen",
] as const;
export type RequisiteKind = (typeof REQUISITE_KINDS)[number];

const REQUISITE_SET: ReadonlySet<string> = new Set(REQUISITE_KINDS);

/** Keywords every state accepts; the engine handles them, modules never see them. */
export const ENGINE_KEYWORDS: ReadonlySet<string> = new Set([
  "onlyif",
  "unless",
  "order",
  "failhard",
  "retry",
  "names",
  "use",
  "parallel",
  "check_cmd",
  // Salt's global state argument `reload_modules` reloads Salt's module cache, which Zester does
  // not have (modules resolve per call); accepted so Salt trees compile.
  "reload_modules",
  "watch_drift",
]);

export function isRequisiteKind(key: string): key is RequisiteKind {
  return REQUISITE_SET.has(key);
}

/** `require_in` → `require`; undefined for anything that is not an `_in` requisite. */
export function inRequisiteBase(key: string): RequisiteKind | undefined {
  if (!key.endsWith("_in")) return undefined;
  const base = key.slice(0, -3);
  return isRequisiteKind(base) ? base : undefined;
}

export function isEngineKey(key: string): boolean {
  return ENGINE_KEYWORDS.has(key) || isRequisiteKind(key) || inRequisiteBase(key) !== undefined;
}

/** Every name the engine accepts, for did-you-mean over a mistyped key. */
export function engineKeyNames(): string[] {
  const out = [...ENGINE_KEYWORDS];
  for (const k of REQUISITE_KINDS) out.push(k, `${k}_in`);
  return out;
}

/**
 * A call's positional arguments mapped onto the function's declared positional parameter names,
 * joined with its keyword arguments: the one copy of this rule (`zester local`, `salt[...]`,
 * guards, module.run). More positionals than names, or a name given both ways, is an error, as
 * in Salt, where the Python call itself refuses it ("got multiple values for argument").
 */
export function keywordArgs(
  fun: string,
  positional: readonly string[],
  args: readonly unknown[],
  kwargs: Params,
): { ok: true; params: Params } | { ok: false; error: string } {
  if (args.length > positional.length) {
    return {
      ok: false,
      error: `${fun} takes at most ${positional.length} positional argument(s), got ${args.length}`,
    };
  }
  const params: Params = { ...kwargs };
  for (const [i, a] of args.entries()) {
    const key = positional[i]!;
    if (key in params) return { ok: false, error: `${fun}: ${key} given both in args and kwargs` };
    params[key] = a;
  }
  return { ok: true, params };
}

export interface ParamIssue {
  /** The key as the user wrote it (or the canonical name for a missing required one). */
  key: string;
  message: string;
  /** The key is no parameter of the function (the caller decides whether that is fatal). */
  unknown?: true;
}

export interface ValidatedParams {
  params: Params;
  issues: ParamIssue[];
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "list";
  if (typeof v === "object") return "map";
  return typeof v;
}

function describe(t: ParamType | readonly ParamType[]): string {
  return typeof t === "string" ? t : t.join(" or ");
}

/** Coerces one value to one type, or returns undefined when it cannot be that type. */
function coerceTo(v: unknown, t: ParamType): { ok: true; value: unknown } | undefined {
  switch (t) {
    case "any":
      return { ok: true, value: v };
    case "string":
      if (typeof v === "string") return { ok: true, value: v };
      // YAML 1.2 reads 0644 as 644 and 1.10 as 1.1: scalars become their YAML spelling.
      if (typeof v === "number" || typeof v === "boolean") return { ok: true, value: String(v) };
      return undefined;
    case "number":
      if (typeof v === "number" && Number.isFinite(v)) return { ok: true, value: v };
      if (typeof v === "string" && v.trim() !== "" && Number.isFinite(Number(v)))
        return { ok: true, value: Number(v) };
      return undefined;
    case "integer":
      if (typeof v === "number" && Number.isInteger(v)) return { ok: true, value: v };
      if (typeof v === "string" && /^[-+]?\d+$/.test(v.trim())) return { ok: true, value: Number(v) };
      return undefined;
    case "boolean":
      if (typeof v === "boolean") return { ok: true, value: v };
      if (typeof v === "string") {
        const l = v.toLowerCase();
        if (l === "true" || l === "yes" || l === "on") return { ok: true, value: true };
        if (l === "false" || l === "no" || l === "off") return { ok: true, value: false };
      }
      return undefined;
    case "list":
      return Array.isArray(v) ? { ok: true, value: v } : undefined;
    case "map":
      return v !== null && typeof v === "object" && !Array.isArray(v) ? { ok: true, value: v } : undefined;
  }
}

function coerce(v: unknown, spec: ParamSpec): { value: unknown } | { error: string } {
  const types: readonly ParamType[] = typeof spec.type === "string" ? [spec.type] : spec.type;
  // Exact type first, so ["string","number"] keeps a number a number.
  let hit: { ok: true; value: unknown } | undefined;
  for (const t of types) {
    if (t === "any" || typeName(v) === (t === "integer" ? "number" : t)) {
      hit = coerceTo(v, t);
      if (hit) break;
    }
  }
  if (!hit) {
    for (const t of types) {
      hit = coerceTo(v, t);
      if (hit) break;
    }
  }
  if (!hit) return { error: `must be ${describe(spec.type)}, got ${typeName(v)}` };
  let value = hit.value;
  if (spec.enum && typeof value === "string" && !spec.enum.includes(value)) {
    const s = didYouMean(value, spec.enum);
    return {
      error: `must be one of ${spec.enum.join(", ")}, got "${value}"${s ? ` (did you mean "${s}"?)` : ""}`,
    };
  }
  if (spec.items && Array.isArray(value)) {
    const out: unknown[] = [];
    for (let i = 0; i < value.length; i++) {
      const c = coerceTo(value[i], spec.items);
      if (!c) return { error: `item ${i + 1} must be ${spec.items}, got ${typeName(value[i])}` };
      out.push(c.value);
    }
    value = out;
  }
  return { value };
}

/**
 * Checks `args` against `specs`: resolves aliases, applies defaults, reports missing required
 * keys, ill-typed values and unknown keys (with a did-you-mean). Every problem is returned, not
 * just the first, so a compile can report them all at once.
 */
export function validateParams(
  specs: Record<string, ParamSpec>,
  args: Params,
  opts: { extra?: boolean } = {},
): ValidatedParams {
  const issues: ParamIssue[] = [];
  const params: Params = {};
  const alias = new Map<string, string>();
  for (const [name, spec] of Object.entries(specs)) {
    alias.set(name, name);
    for (const a of spec.aliases ?? []) alias.set(a, name);
  }
  const givenAs = new Map<string, string>();
  for (const [key, value] of Object.entries(args)) {
    const name = alias.get(key);
    if (name === undefined && opts.extra) {
      // Salt's **kwargs: the function takes any further key as it is.
      if (value !== null && value !== undefined) params[key] = value;
      continue;
    }
    if (name === undefined) {
      const s = didYouMean(key, alias.keys());
      issues.push({
        key,
        message: `unknown parameter "${key}"${s ? ` (did you mean "${s}"?)` : ""}`,
        unknown: true,
      });
      continue;
    }
    const prev = givenAs.get(name);
    if (prev !== undefined) {
      issues.push({ key, message: `"${key}" and "${prev}" are the same parameter; give only one` });
      continue;
    }
    givenAs.set(name, key);
    if (value === null || value === undefined) continue;
    const c = coerce(value, specs[name]!);
    if ("error" in c) issues.push({ key, message: `parameter "${key}" ${c.error}` });
    else params[name] = c.value;
  }
  for (const [name, spec] of Object.entries(specs)) {
    if (params[name] !== undefined) continue;
    if (spec.default !== undefined) params[name] = structuredClone(spec.default);
    else if (spec.required && !givenAs.has(name)) {
      issues.push({ key: name, message: `missing required parameter "${name}"` });
    }
  }
  return { params, issues };
}
