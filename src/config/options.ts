/**
 * Option tables: one entry per option gives its file key, and from it the flag (`--nats-url` for
 * `nats_url`) and the environment variable (`ZESTER_NATS_URL`), so adding an option is one line
 * in the table of the program that takes it.
 */
import { parseInterval } from "../util/duration.js";
import { suggestion } from "../util/suggest.js";

interface OptionBase {
  help: string;
  /** Heading the option is listed under in `--help`. */
  group?: string;
  /** Environment variable instead of the derived `ZESTER_<KEY>`. */
  env?: string;
  /** One-letter alias, e.g. "t" for `-t`. */
  short?: string;
  /** Other flags for the same option, e.g. `--out` (Salt's name) for `--format`. */
  aliases?: readonly string[];
  /** Placeholder in `--help`, e.g. "URL". */
  valueName?: string;
  /** What the default is when it is computed at run time (`<auth-dir>/master.creds`). */
  defaultText?: string;
  /** Never printed by `--print-config` (tokens). */
  secret?: boolean;
}

export interface StringOption extends OptionBase {
  kind: "string";
  default?: string;
  /** Allowed values; anything else is refused with a did-you-mean. */
  choices?: readonly string[];
}
export interface BooleanOption extends OptionBase {
  kind: "boolean";
  default: boolean;
}
/** A positive number of seconds. */
export interface SecondsOption extends OptionBase {
  kind: "seconds";
  default?: number;
}
/** A whole number ≥ 0. */
export interface CountOption extends OptionBase {
  kind: "count";
  default?: number;
}
/** `30s`, `5m`, `1h` (a bare number is seconds); the value is in milliseconds. */
export interface DurationOption extends OptionBase {
  kind: "duration";
  default?: number;
}
/** Comma-separated on a flag or in env, a sequence (or a comma-separated string) in a file. */
export interface ListOption extends OptionBase {
  kind: "list";
  default?: readonly string[];
}
/**
 * Name → text; a JSON object on a flag or in env (`{"web": "G@role:web"}`). A list of names as a
 * value stands for the `L@` list of them (Salt's nodegroup lists).
 */
export interface MapOption extends OptionBase {
  kind: "map";
  default?: Readonly<Record<string, string>>;
}

export type OptionSpec =
  | StringOption
  | BooleanOption
  | SecondsOption
  | CountOption
  | DurationOption
  | ListOption
  | MapOption;

export type OptionTable = Readonly<Record<string, OptionSpec>>;

type KindValue<O extends OptionSpec> = O extends BooleanOption
  ? boolean
  : O extends SecondsOption | CountOption | DurationOption
    ? number
    : O extends ListOption
      ? readonly string[]
      : O extends MapOption
        ? Readonly<Record<string, string>>
        : string;

/** The resolved values of a table: options with a default are always set. */
export type ConfigValues<T extends OptionTable> = {
  [K in keyof T]: T[K] extends { default: unknown } ? KindValue<T[K]> : KindValue<T[K]> | undefined;
};

export const flagName = (key: string): string => `--${key.replace(/_/g, "-")}`;
export const envName = (key: string, o: OptionSpec): string => o.env ?? `ZESTER_${key.toUpperCase()}`;

/** Why a raw value was refused; the caller adds where the value came from. */
export class OptionValueError extends Error {
  override name = "OptionValueError";
}

const TRUE = new Set(["1", "true", "yes", "on"]);
const FALSE = new Set(["0", "false", "no", "off", ""]);

/**
 * Turns a raw value into the option's type. `text` is true for flags and env (always strings),
 * false for file values (YAML scalars, sequences, mappings).
 */
export function coerce(o: OptionSpec, raw: unknown, text: boolean): unknown {
  const shown = JSON.stringify(raw);
  switch (o.kind) {
    case "string": {
      if (typeof raw !== "string" && (text || (typeof raw !== "number" && typeof raw !== "boolean")))
        throw new OptionValueError(`must be text, not ${shown}`);
      const s = String(raw);
      if (o.choices && !o.choices.includes(s)) {
        const list = `${o.choices.slice(0, -1).join(", ")} or ${o.choices.at(-1)}`;
        throw new OptionValueError(`must be ${list}, not ${shown}${suggestion(s, o.choices)}`);
      }
      return s;
    }
    case "boolean": {
      if (typeof raw === "boolean") return raw;
      if (typeof raw === "string" && text) {
        const v = raw.trim().toLowerCase();
        if (TRUE.has(v)) return true;
        if (FALSE.has(v)) return false;
      }
      throw new OptionValueError(`must be true or false, not ${shown}`);
    }
    case "seconds": {
      const n =
        typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : NaN;
      if (!Number.isFinite(n) || n <= 0)
        throw new OptionValueError(`must be a positive number of seconds, not ${shown}`);
      return n;
    }
    case "count": {
      const n =
        typeof raw === "number"
          ? raw
          : typeof raw === "string" && /^\s*\d+\s*$/.test(raw)
            ? Number(raw)
            : NaN;
      if (!Number.isInteger(n) || n < 0)
        throw new OptionValueError(`must be a whole number ≥ 0, not ${shown}`);
      return n;
    }
    case "duration": {
      const ms = parseInterval(raw);
      if (ms === undefined)
        throw new OptionValueError(`must be a duration such as 30s, 5m or 1h, not ${shown}`);
      return ms;
    }
    case "list": {
      const items =
        typeof raw === "string"
          ? raw.split(",")
          : Array.isArray(raw) && !text && raw.every((x) => typeof x === "string" || typeof x === "number")
            ? raw.map(String)
            : undefined;
      if (items === undefined) throw new OptionValueError(`must be a list of names, not ${shown}`);
      return items.map((x) => x.trim()).filter((x) => x !== "");
    }
    case "map":
      return coerceMap(raw, text);
  }
}

function coerceMap(raw: unknown, text: boolean): Record<string, string> {
  let v = raw;
  if (text) {
    if (typeof raw !== "string") throw new OptionValueError("must be a mapping");
    try {
      v = JSON.parse(raw);
    } catch {
      throw new OptionValueError(
        `must be a JSON object such as {"web": "G@role:web"}, not ${JSON.stringify(raw)}`,
      );
    }
  }
  if (!v || typeof v !== "object" || Array.isArray(v))
    throw new OptionValueError("must be a mapping of names to text");
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (Array.isArray(x) && x.length > 0 && x.every((i) => typeof i === "string" && !/[,\s]/.test(i))) {
      out[k] = `L@${x.join(",")}`;
      continue;
    }
    if (typeof x !== "string") {
      throw new OptionValueError(
        `${k} must be a target expression or a list of peel ids, not ${JSON.stringify(x)}`,
      );
    }
    out[k] = x;
  }
  return out;
}
