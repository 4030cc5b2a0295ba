/**
 * Resolves a program's options from flags, `ZESTER_*` environment variables and YAML config files
 * with one precedence everywhere: flag > env > file > default. Every value remembers where it came
 * from, for `--print-config` and for error messages that point at the right place.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { errText } from "../util/errors.js";
import { suggestion } from "../util/suggest.js";
import {
  type ConfigValues,
  coerce,
  envName,
  flagName,
  type OptionSpec,
  type OptionTable,
  OptionValueError,
} from "./options.js";

// The yaml package costs ~25 ms of start-up: loaded only when a config file exists or is printed.
const requireLazy = createRequire(import.meta.url);
const yaml = () => requireLazy("yaml") as typeof import("yaml");

/** Bad options, env or config file: printed without a stack trace, exit code 1. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

export type Origin =
  | { kind: "flag"; flag: string }
  | { kind: "env"; name: string }
  | { kind: "file"; path: string; line: number }
  | { kind: "default" };

export function originText(o: Origin): string {
  switch (o.kind) {
    case "flag":
      return `flag ${o.flag}`;
    case "env":
      return `env ${o.name}`;
    case "file":
      return `file ${o.path}:${o.line}`;
    case "default":
      return "default";
  }
}

export interface ConfigFile {
  path: string;
  /** A missing file is an error (it was named with --config or its env variable). */
  required: boolean;
  /**
   * Another program's file, read only for these keys (the CLI reading the master's file on a
   * master host); its other keys are that program's business, not refused here.
   */
  keys?: readonly string[];
}

export interface ConfigRequest<T extends OptionTable> {
  /** `zester-master`: used in messages. */
  program: string;
  options: T;
  argv: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** The file read when neither `--config` nor `configEnv` names one. */
  defaultFile?: string;
  /** Environment variable naming the config file, e.g. ZESTER_MASTER_CONFIG. */
  configEnv?: string;
  /** Files below the program's own file in precedence (lowest first). */
  baseFiles?: readonly ConfigFile[];
  /** Whether words that are not options are accepted (the CLI's target and function). */
  positionals?: boolean;
}

export interface Config<T extends OptionTable> {
  values: ConfigValues<T>;
  origins: { [K in keyof T]: Origin };
  positionals: string[];
  /** The words after `--` (also the tail of `positionals`): never options, never key=value. */
  literal: string[];
  /** Config files that existed and were read, lowest precedence first. */
  files: string[];
  help: boolean;
  printConfig: boolean;
}

interface ParsedArgv {
  given: Map<string, { raw: string | boolean; flag: string }>;
  positionals: string[];
  literal: string[];
  config?: string;
  help: boolean;
  printConfig: boolean;
}

/** Flags anywhere on the line (`--x v`, `--x=v`, `-t v`); `--` ends the options. */
export function parseArgv(
  program: string,
  options: OptionTable,
  argv: readonly string[],
  positionals: boolean,
): ParsedArgv {
  const byFlag = new Map<string, string>();
  for (const [key, o] of Object.entries(options)) {
    byFlag.set(flagName(key), key);
    if (o.short) byFlag.set(`-${o.short}`, key);
    for (const a of o.aliases ?? []) byFlag.set(a, key);
  }
  const out: ParsedArgv = { given: new Map(), positionals: [], literal: [], help: false, printConfig: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      if (!positionals && i + 1 < argv.length) throw new ConfigError(`unexpected argument ${argv[i + 1]}`);
      out.literal = argv.slice(i + 1);
      out.positionals.push(...out.literal);
      break;
    }
    // "-5" is a value (a negative number), not an option.
    if (!a.startsWith("-") || a === "-" || /^-\d/.test(a)) {
      if (!positionals)
        throw new ConfigError(`unexpected argument ${JSON.stringify(a)}; options start with --`);
      out.positionals.push(a);
      continue;
    }
    const eq = a.startsWith("--") ? a.indexOf("=") : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const inline = eq > 0 ? a.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) throw new ConfigError(`${flag} needs a value`);
      return v;
    };
    if (flag === "--help" || flag === "-h") {
      out.help = true;
      continue;
    }
    if (flag === "--print-config") {
      out.printConfig = true;
      continue;
    }
    if (flag === "--config") {
      out.config = value();
      continue;
    }
    const key = byFlag.get(flag);
    if (key === undefined) {
      const known = [...byFlag.keys(), "--help", "--config", "--print-config"].filter((f) =>
        f.startsWith("--"),
      );
      throw new ConfigError(`unknown option ${flag}${suggestion(flag, known)}; see ${program} --help`);
    }
    const o = options[key]!;
    out.given.set(key, { raw: o.kind === "boolean" ? (inline ?? true) : value(), flag });
  }
  return out;
}

/** Reads, validates and merges everything; bad input of any origin is a ConfigError naming it. */
export function loadConfig<T extends OptionTable>(req: ConfigRequest<T>): Config<T> {
  const env = req.env ?? process.env;
  const parsed = parseArgv(req.program, req.options, req.argv, req.positionals ?? false);
  const named = parsed.config ?? (req.configEnv ? env[req.configEnv] || undefined : undefined);
  const files: ConfigFile[] = [...(req.baseFiles ?? [])];
  if (named !== undefined) files.push({ path: named, required: true });
  else if (req.defaultFile !== undefined) files.push({ path: req.defaultFile, required: false });

  const values: Record<string, unknown> = {};
  const origins: Record<string, Origin> = {};
  for (const [key, o] of Object.entries(req.options)) {
    if (o.default !== undefined) values[key] = o.default;
    origins[key] = { kind: "default" };
  }
  const read: string[] = [];
  for (const f of files) {
    const text = readConfigFile(f);
    if (text === undefined) continue;
    read.push(f.path);
    for (const e of fileEntries(f, text, req.options)) {
      values[e.key] = e.value;
      origins[e.key] = { kind: "file", path: f.path, line: e.line };
    }
  }
  for (const [key, o] of Object.entries(req.options)) {
    const name = envName(key, o);
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    values[key] = coerceOrThrow(o, raw, true, name);
    origins[key] = { kind: "env", name };
  }
  for (const [key, g] of parsed.given) {
    values[key] = coerceOrThrow(req.options[key]!, g.raw, true, g.flag);
    origins[key] = { kind: "flag", flag: g.flag };
  }
  return {
    values: values as ConfigValues<T>,
    origins: origins as { [K in keyof T]: Origin },
    positionals: parsed.positionals,
    literal: parsed.literal,
    files: read,
    help: parsed.help,
    printConfig: parsed.printConfig,
  };
}

function coerceOrThrow(o: OptionSpec, raw: unknown, text: boolean, where: string): unknown {
  try {
    return coerce(o, raw, text);
  } catch (err) {
    if (err instanceof OptionValueError) throw new ConfigError(`${where} ${err.message}`);
    throw err;
  }
}

/** The file's text, or undefined when an optional file is absent (only ENOENT means absent). */
function readConfigFile(f: ConfigFile): string | undefined {
  try {
    return readFileSync(f.path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && !f.required) return undefined;
    throw new ConfigError(`cannot read config file ${f.path}: ${code ?? errText(err)}`);
  }
}

interface FileEntry {
  key: string;
  value: unknown;
  line: number;
}

function fileEntries(f: ConfigFile, text: string, options: OptionTable): FileEntry[] {
  const { isMap, isNode, isScalar, LineCounter, parseDocument } = yaml();
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number | undefined) => {
    const p = lc.linePos(offset ?? 0);
    return { line: p.line, text: `${f.path}:${p.line}:${p.col}` };
  };
  const first = doc.errors[0];
  if (first) throw new ConfigError(`${at(first.pos[0]).text}: ${first.message.split("\n")[0]}`);
  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) return [];
  if (!isMap(root))
    throw new ConfigError(`${at(root.range?.[0]).text}: expected a mapping of option names to values`);
  const problems: string[] = [];
  const out: FileEntry[] = [];
  const keys = Object.keys(options);
  for (const pair of root.items) {
    const k = pair.key;
    const pos = at(isScalar(k) ? k.range?.[0] : undefined);
    const key = isScalar(k) ? String(k.value) : undefined;
    if (key === undefined) {
      problems.push(`${pos.text}: option names must be plain keys`);
      continue;
    }
    const o = f.keys === undefined || f.keys.includes(key) ? options[key] : undefined;
    if (f.keys !== undefined && o === undefined) continue;
    if (o === undefined) {
      problems.push(`${pos.text}: unknown key "${key}"${suggestion(key, keys)}`);
      continue;
    }
    const node = pair.value;
    const value = node === null || node === undefined ? null : (node as { toJSON(): unknown }).toJSON();
    if (value === null) continue;
    try {
      out.push({ key, value: coerce(o, value, false), line: pos.line });
    } catch (err) {
      if (!(err instanceof OptionValueError)) throw err;
      const vpos = isNode(node) ? at(node.range?.[0]) : pos;
      problems.push(`${vpos.text}: ${key} ${err.message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems.join("\n"));
  return out;
}

/**
 * The effective configuration as YAML a config file could hold, each line commented with its
 * origin; unset options are listed commented out, secrets are never shown.
 */
export function formatConfig<T extends OptionTable>(program: string, options: T, cfg: Config<T>): string {
  const lines = [`# ${program}: effective configuration (flag > env > file > default)`];
  if (cfg.files.length > 0) lines.push(`# files read: ${cfg.files.join(", ")}`);
  else lines.push("# files read: none");
  for (const [key, o] of Object.entries(options)) {
    const v = (cfg.values as Record<string, unknown>)[key];
    const origin = originText(cfg.origins[key]!);
    if (v === undefined) {
      lines.push(`${`# ${key}:`.padEnd(40)}  # unset${o.defaultText ? `: ${o.defaultText}` : ""}`);
      continue;
    }
    const line = `${key}: ${o.secret ? '"<hidden>"' : displayValue(o, v)}`;
    lines.push(`${line.padEnd(40)}  # ${origin}`);
  }
  return `${lines.join("\n")}\n`;
}

function displayValue(o: OptionSpec, v: unknown): string {
  // Durations are kept in ms; a file holds them as seconds.
  const plain = o.kind === "duration" ? durationText(v as number) : v;
  return yaml().stringify(plain, { collectionStyle: "flow", lineWidth: 0 }).trimEnd();
}

/** `--help` text: options grouped under their headings, each with its env variable and default. */
export function formatOptionsHelp(options: OptionTable): string {
  const groups = new Map<string, string[]>();
  const width = 24;
  for (const [key, o] of Object.entries(options)) {
    const value = o.kind === "boolean" ? "" : ` ${o.valueName ?? "V"}`;
    const names = [...(o.short ? [`-${o.short}`] : []), flagName(key), ...(o.aliases ?? [])];
    const flag = `${names.join(", ")}${value}`;
    const dflt =
      o.defaultText ?? (o.default !== undefined && o.kind !== "boolean" ? displayDefault(o) : undefined);
    const where = [`env ${envName(key, o)}`, ...(dflt !== undefined ? [`default ${dflt}`] : [])].join(", ");
    const pad = flag.length + 2 > width ? `\n  ${" ".repeat(width)}` : " ".repeat(width - flag.length);
    const list = groups.get(o.group ?? "Options") ?? [];
    list.push(`  ${flag}${pad}${o.help}\n  ${" ".repeat(width)}${where}`);
    groups.set(o.group ?? "Options", list);
  }
  return [...groups].map(([g, l]) => `${g}:\n${l.join("\n")}\n`).join("\n");
}

function displayDefault(o: OptionSpec): string {
  if (o.kind === "duration") return durationText(o.default as number);
  if (o.kind === "list") return (o.default as string[]).join(",");
  if (o.kind === "map") return JSON.stringify(o.default);
  return String(o.default);
}

/** Milliseconds in the largest unit that divides them: `30m`, `90s`, `1500ms`. */
function durationText(ms: number): string {
  for (const [unit, size] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
