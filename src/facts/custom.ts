import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { YAMLMap } from "yaml";
import { parseInterval } from "../util/duration.js";
import { errText } from "../util/errors.js";
import { run } from "../util/exec.js";
import { isENOENT } from "../util/files.js";
import { suggestion } from "../util/suggest.js";

const requireLazy = createRequire(import.meta.url);

export const DEFAULT_CUSTOM_FACTS_DIR = "/etc/zester/facts";
/** Without an `interval`, a command fact is re-run at most once a minute. */
export const DEFAULT_CMD_INTERVAL_MS = 60_000;
export const DEFAULT_CMD_TIMEOUT_MS = 10_000;

/** Facts the system owns; a custom file may not replace them. */
const RESERVED = new Set(["id", "_errors"]);
const ENTRY_KEYS = ["value", "cmd", "interval", "timeout"];

export interface CustomFactDef {
  name: string;
  /** `file:line` of the definition, for error messages. */
  where: string;
  /** Static facts carry `value`; command facts carry `cmd`. */
  value?: unknown;
  cmd?: string;
  intervalMs: number;
  timeoutMs: number;
}

export { parseInterval };

export interface ParsedFactsFile {
  defs: CustomFactDef[];
  errors: string[];
}

/** Parses one facts file. Every problem is reported as `file:line:col: message`; good entries survive bad ones. */
export function parseFactsFile(text: string, file: string): ParsedFactsFile {
  // Loaded only when a custom facts file exists: most machines have none, and the YAML parser
  // costs ~20 ms of start-up for every `zester local` run.
  const { isMap, isScalar, LineCounter, parseDocument } = requireLazy("yaml") as typeof import("yaml");
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const at = (offset: number | undefined) => {
    const p = lc.linePos(offset ?? 0);
    return `${file}:${p.line}:${p.col}`;
  };
  if (doc.errors.length > 0) {
    return { defs: [], errors: doc.errors.map((e) => `${at(e.pos[0])}: ${e.message.split("\n")[0]}`) };
  }
  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) return { defs: [], errors: [] };
  if (!isMap(root)) return { defs: [], errors: [`${at(root.range?.[0])}: expected a mapping of fact names`] };

  const defs: CustomFactDef[] = [];
  const errors: string[] = [];
  for (const pair of (root as YAMLMap).items) {
    const keyNode = pair.key;
    const name = isScalar(keyNode) ? String(keyNode.value) : "";
    const where = at(isScalar(keyNode) ? keyNode.range?.[0] : undefined);
    if (name === "") {
      errors.push(`${where}: fact names must be plain strings`);
      continue;
    }
    if (RESERVED.has(name)) {
      errors.push(`${where}: "${name}" is a built-in fact and cannot be set by a custom fact`);
      continue;
    }
    const valueNode = pair.value;
    if (!isMap(valueNode)) {
      errors.push(`${where}: fact "${name}" must be a mapping with "value" or "cmd"`);
      continue;
    }
    const entry = valueNode.toJSON() as Record<string, unknown>;
    const problems: string[] = [];
    for (const k of Object.keys(entry)) {
      if (!ENTRY_KEYS.includes(k)) problems.push(`unknown key "${k}"${suggestion(k, ENTRY_KEYS)}`);
    }
    const hasValue = "value" in entry;
    const hasCmd = "cmd" in entry;
    if (hasValue === hasCmd) problems.push('needs exactly one of "value" or "cmd"');
    if (hasCmd && (typeof entry.cmd !== "string" || entry.cmd.trim() === "")) {
      problems.push('"cmd" must be a non-empty string');
    }
    if (hasValue && ("interval" in entry || "timeout" in entry)) {
      problems.push('"interval" and "timeout" only apply to "cmd" facts');
    }
    const intervalMs = "interval" in entry ? parseInterval(entry.interval) : DEFAULT_CMD_INTERVAL_MS;
    if (intervalMs === undefined)
      problems.push(`bad interval ${JSON.stringify(entry.interval)} (use e.g. 30s, 5m, 1h)`);
    const timeoutMs = "timeout" in entry ? parseInterval(entry.timeout) : DEFAULT_CMD_TIMEOUT_MS;
    if (timeoutMs === undefined || timeoutMs === 0) {
      problems.push(`bad timeout ${JSON.stringify(entry.timeout)} (use e.g. 10s)`);
    }
    if (problems.length > 0) {
      errors.push(`${where}: fact "${name}": ${problems.join("; ")}`);
      continue;
    }
    const def: CustomFactDef = { name, where, intervalMs: intervalMs!, timeoutMs: timeoutMs! };
    if (hasValue) def.value = entry.value;
    else def.cmd = entry.cmd as string;
    defs.push(def);
  }
  return { defs, errors };
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: string };

interface CacheEntry {
  startedAt: number;
  outcome: Promise<Outcome>;
}

/** Command output as a fact: JSON when it parses (numbers, booleans, objects), the trimmed text otherwise. */
export function interpretOutput(stdout: string): unknown {
  const text = stdout.trim();
  if (text === "") return "";
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Remembers command-fact results between collections so a command runs again only once its
 * interval has passed. The peel holds one for its lifetime; concurrent collections share an
 * in-flight run instead of starting a second one. Failures are cached too, so a broken command
 * is not retried on every collection.
 */
export class CustomFactCache {
  private readonly entries = new Map<string, CacheEntry>();
  /** How many commands were actually started; lets callers (and tests) see the cache working. */
  commandsRun = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** The fact's result, running the command only when there is no result younger than its interval. */
  resolve(def: CustomFactDef, cwd: string): Promise<Outcome> {
    const key = cacheKey(def);
    const cached = this.entries.get(key);
    const t = this.now();
    if (cached && t - cached.startedAt < def.intervalMs) return cached.outcome;
    this.commandsRun++;
    const outcome = runFactCommand(def, cwd);
    this.entries.set(key, { startedAt: t, outcome });
    return outcome;
  }

  /** Drops entries for facts no longer defined, so edited or removed files do not leak memory. */
  retain(defs: readonly CustomFactDef[]): void {
    const keep = new Set(defs.map(cacheKey));
    for (const k of this.entries.keys()) if (!keep.has(k)) this.entries.delete(k);
    const intervals = defs.filter((d) => d.cmd !== undefined).map((d) => d.intervalMs);
    this.shortestMs = intervals.length > 0 ? Math.min(...intervals) : undefined;
  }

  /**
   * The shortest interval among the command facts of the last collection: the peel collects at
   * least that often, so `interval: 5s` means every 5 s and not at the next facts cycle.
   */
  get shortestIntervalMs(): number | undefined {
    return this.shortestMs;
  }

  /** Forgets every result, so the next collection runs each command again (facts.refresh). */
  expire(): void {
    this.entries.clear();
  }

  private shortestMs: number | undefined;
}

function cacheKey(def: CustomFactDef): string {
  return `${def.name}\0${def.cmd ?? ""}`;
}

/** run() kills the command's whole process group at the deadline, so nothing outlives it. */
async function runFactCommand(def: CustomFactDef, cwd: string): Promise<Outcome> {
  try {
    const res = await run(def.cmd!, { cwd, timeoutMs: def.timeoutMs });
    if (res.killed === "timeout") return { ok: false, error: `command timed out after ${def.timeoutMs} ms` };
    if (res.signal) return { ok: false, error: `command killed by ${res.signal}` };
    if (res.retcode !== 0) {
      const detail = res.stderr.trim().split("\n")[0] ?? "";
      return { ok: false, error: `command exited ${res.retcode}${detail ? `: ${detail}` : ""}` };
    }
    return { ok: true, value: interpretOutput(res.stdout) };
  } catch (err) {
    return { ok: false, error: `command failed to start: ${errText(err)}` };
  }
}

export interface CustomFactsResult {
  facts: Record<string, unknown>;
  /** Keyed `custom:<file>` or `custom:<fact>`; values name the file and line. */
  errors: Record<string, string>;
}

/** Reads every *.yaml / *.yml in `dir` (a missing dir means no custom facts) and resolves the facts. */
export async function collectCustom(dir: string, cache: CustomFactCache): Promise<CustomFactsResult> {
  const facts: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (isENOENT(err)) return { facts, errors };
    throw err;
  }
  const files = names.filter((n) => /\.ya?ml$/.test(n) && !n.startsWith(".")).sort();
  const all: CustomFactDef[] = [];
  const seen = new Map<string, string>();
  for (const f of files) {
    const path = join(dir, f);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if (isENOENT(err)) continue; // removed between readdir and read
      errors[`custom:${f}`] = `${path}: ${errText(err)}`;
      continue;
    }
    const parsed = parseFactsFile(text, path);
    if (parsed.errors.length > 0) errors[`custom:${f}`] = parsed.errors.join("\n");
    for (const def of parsed.defs) {
      const first = seen.get(def.name);
      if (first !== undefined) {
        errors[`custom:${def.name}`] = `${def.where}: fact "${def.name}" is already defined at ${first}`;
        continue;
      }
      seen.set(def.name, def.where);
      all.push(def);
    }
  }
  cache.retain(all);
  await Promise.all(
    all.map(async (def) => {
      if (def.cmd === undefined) {
        facts[def.name] = def.value;
        return;
      }
      const out = await cache.resolve(def, dir);
      if (out.ok) facts[def.name] = out.value;
      else errors[`custom:${def.name}`] = `${def.where}: fact "${def.name}": ${out.error}`;
    }),
  );
  // Object key order follows definition order, not command completion order.
  const ordered: Record<string, unknown> = {};
  for (const def of all) if (def.name in facts) ordered[def.name] = facts[def.name];
  return { facts: ordered, errors };
}
