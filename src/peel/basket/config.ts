/**
 * What a peel publishes to the basket, read from its settings: `basket_functions` (Zester's
 * name) or `mine_functions` (Salt's, so Salt pillars work unchanged).
 *
 *   basket_functions:
 *     network.ip_addrs: 5m                                # function (or fact path) and interval
 *     disk.usage: {function: disk.usage, interval: 1m}    # explicit function, args, kwargs
 *     root_disk: [{mine_function: disk.usage}, /]        # Salt's list form: function, then arguments
 *
 * A bad entry is reported and skipped; the others are still published.
 */
import { assertSubjectTail } from "../../bus/names.js";
import { parseInterval } from "../../util/duration.js";
import { errText } from "../../util/errors.js";
import { suggestion } from "../../util/suggest.js";

export interface BasketFunctionSpec {
  /** The key part after `<peel>.`: what readers ask for. */
  name: string;
  /** The function to call, or a fact path (`os`, `network.ip_addrs`). */
  function: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  intervalMs: number;
}

export interface BasketConfig {
  functions: BasketFunctionSpec[];
  /** One message per skipped entry, naming the setting and the entry. */
  errors: string[];
}

/** Salt's mine_interval default (60 minutes). */
export const DEFAULT_BASKET_INTERVAL_MS = 60 * 60_000;
/** Faster than this would turn the basket into a metrics pipe. */
export const MIN_BASKET_INTERVAL_MS = 1_000;

const OBJECT_KEYS = ["function", "mine_function", "interval", "args", "kwargs"] as const;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

function interval(v: unknown, where: string): number {
  const ms = parseInterval(v);
  if (ms === undefined)
    throw new Error(`${where}: interval ${JSON.stringify(v)} is not a duration (30s, 5m, 1h)`);
  if (ms < MIN_BASKET_INTERVAL_MS) throw new Error(`${where}: interval must be at least 1s`);
  return ms;
}

function entry(name: string, raw: unknown, defaultMs: number, where: string): BasketFunctionSpec {
  assertSubjectTail("basket function name", name);
  const spec: BasketFunctionSpec = { name, function: name, args: [], kwargs: {}, intervalMs: defaultMs };
  if (raw === null || raw === undefined) return spec;
  if (typeof raw === "string" || typeof raw === "number") {
    spec.intervalMs = interval(raw, where);
    return spec;
  }
  if (Array.isArray(raw)) {
    for (const item of raw) {
      if (
        isPlainObject(item) &&
        (typeof item.mine_function === "string" || typeof item.function === "string")
      ) {
        spec.function = String(item.mine_function ?? item.function);
      } else if (isPlainObject(item) && "interval" in item && Object.keys(item).length === 1) {
        spec.intervalMs = interval(item.interval, where);
      } else if (isPlainObject(item)) {
        Object.assign(spec.kwargs, item);
      } else {
        spec.args.push(item);
      }
    }
    return spec;
  }
  if (!isPlainObject(raw)) throw new Error(`${where}: expected an interval, a mapping or a list`);
  for (const k of Object.keys(raw)) {
    if (!(OBJECT_KEYS as readonly string[]).includes(k)) {
      throw new Error(
        `${where}: unknown key "${k}"${suggestion(k, OBJECT_KEYS)}; allowed: ${OBJECT_KEYS.join(", ")}`,
      );
    }
  }
  const fn = raw.function ?? raw.mine_function;
  if (fn !== undefined) {
    if (typeof fn !== "string" || fn === "") throw new Error(`${where}: function must be a non-empty string`);
    spec.function = fn;
  }
  if (raw.interval !== undefined) spec.intervalMs = interval(raw.interval, where);
  if (raw.args !== undefined) {
    if (!Array.isArray(raw.args)) throw new Error(`${where}: args must be a list`);
    spec.args = [...raw.args];
  }
  if (raw.kwargs !== undefined) {
    if (!isPlainObject(raw.kwargs)) throw new Error(`${where}: kwargs must be a mapping`);
    spec.kwargs = { ...raw.kwargs };
  }
  return spec;
}

/** Reads the basket functions out of resolved settings; absent keys mean "publish nothing". */
export function basketConfig(settings: Record<string, unknown>): BasketConfig {
  const out: BasketConfig = { functions: [], errors: [] };
  let defaultMs = DEFAULT_BASKET_INTERVAL_MS;
  const rawDefault = settings.basket_interval ?? settings.mine_interval;
  if (rawDefault !== undefined) {
    try {
      // Salt's mine_interval is in minutes; basket_interval is a duration like every other one.
      defaultMs =
        settings.basket_interval === undefined && typeof rawDefault === "number"
          ? rawDefault * 60_000
          : interval(rawDefault, "basket_interval");
    } catch (err) {
      out.errors.push(errText(err));
    }
  }
  const byName = new Map<string, BasketFunctionSpec>();
  for (const key of ["mine_functions", "basket_functions"] as const) {
    const raw = settings[key];
    if (raw === undefined || raw === null) continue;
    if (!isPlainObject(raw)) {
      out.errors.push(`${key}: expected a mapping of function name to interval or options`);
      continue;
    }
    for (const [name, value] of Object.entries(raw)) {
      try {
        // basket_functions wins over mine_functions for the same name.
        byName.set(name, entry(name, value, defaultMs, `${key}.${name}`));
      } catch (err) {
        out.errors.push(errText(err).startsWith(key) ? errText(err) : `${key}.${name}: ${errText(err)}`);
      }
    }
  }
  out.functions = [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  return out;
}
