/**
 * Compile cache. A second no-op run of an unchanged tree should cost little more than Node's own
 * start-up, so a compiled program is stored with what it depended on (file stamps, absent files,
 * settings, facts if templates used them, the parameter schemas it was validated against) and
 * reused only while all of that is unchanged. Anything not trackable disables caching.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { resolveState } from "../modules/index.js";
import type { StateFunction } from "../modules/types.js";
import { isENOENT } from "../util/files.js";
import type { CompiledState, Facts, Program } from "./compile.js";
import type { Graph } from "./graph.js";
import { type CompileTracker, stampOf } from "./sls.js";

const FORMAT = 2;

export interface CacheKey {
  statesDir: string;
  target: unknown;
  peelId?: string;
  settings: Record<string, unknown>;
}

interface Entry {
  format: number;
  settings: string;
  facts?: string;
  specs: string;
  files: [string, string | null][];
  states: (Omit<CompiledState, "order"> & { order?: number | "first" | "last" })[];
  graph: Graph;
}

function sha(data: string): string {
  return createHash("sha256").update(data).digest("hex");
}

function entryPath(dir: string, key: CacheKey): string {
  const name = sha(JSON.stringify([resolve(key.statesDir), key.target, key.peelId ?? null]));
  return join(dir, `${name.slice(0, 32)}.json`);
}

function specsHash(functions: ReadonlyMap<string, StateFunction>): string {
  const parts = [...functions.keys()].sort().map((k) => {
    const f = functions.get(k)!;
    return [k, f.primary, f.params, typeof f.watch];
  });
  return sha(JSON.stringify(parts));
}

/** The cached program, or undefined on any difference (or any error reading the cache). */
export async function loadCached(
  dir: string,
  key: CacheKey,
  facts: () => Promise<Facts>,
): Promise<Program | undefined> {
  let entry: Entry;
  try {
    entry = JSON.parse(await readFile(entryPath(dir, key), "utf8")) as Entry;
  } catch {
    return undefined;
  }
  if (entry.format !== FORMAT || entry.settings !== sha(JSON.stringify(key.settings))) return undefined;
  const stamps = await Promise.all(
    entry.files.map(async ([file]) => {
      try {
        return stampOf(await stat(join(key.statesDir, file)));
      } catch (err) {
        if (isENOENT(err) || (err as NodeJS.ErrnoException).code === "ENOTDIR") return null;
        return "error";
      }
    }),
  );
  for (let i = 0; i < stamps.length; i++) if (stamps[i] !== entry.files[i]![1]) return undefined;
  let loadedFacts: Facts | undefined;
  if (entry.facts !== undefined) {
    loadedFacts = await facts();
    if (sha(JSON.stringify(loadedFacts)) !== entry.facts) return undefined;
  }
  const functions = new Map<string, StateFunction>();
  for (const fun of new Set(entry.states.map((s) => s.fun))) {
    const r = await resolveState(fun);
    if (!r.ok) return undefined;
    functions.set(fun, r.fn);
  }
  if (specsHash(functions) !== entry.specs) return undefined;
  const states: CompiledState[] = entry.states.map((s) => {
    const { order, ...rest } = s;
    const c: CompiledState = rest;
    if (order !== undefined) {
      c.order =
        order === "first" ? Number.NEGATIVE_INFINITY : order === "last" ? Number.POSITIVE_INFINITY : order;
    }
    return c;
  });
  const program: Program = { states, functions, graph: entry.graph };
  if (loadedFacts) program.facts = loadedFacts;
  return program;
}

/** Stores a program if everything it depended on was tracked; failures to write are ignored. */
export async function storeCached(
  dir: string,
  key: CacheKey,
  program: Program,
  track: CompileTracker,
): Promise<void> {
  if (!track.cacheable) return;
  if (track.usedFacts && !program.facts) return;
  const entry: Entry = {
    format: FORMAT,
    settings: sha(JSON.stringify(key.settings)),
    specs: specsHash(program.functions),
    files: [...track.files.entries()],
    states: program.states.map((s) => {
      const { order, ...rest } = s;
      if (order === undefined) return rest;
      return { ...rest, order: Number.isFinite(order) ? order : order < 0 ? "first" : "last" };
    }),
    graph: program.graph,
  };
  if (track.usedFacts && program.facts) entry.facts = sha(JSON.stringify(program.facts));
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const path = entryPath(dir, key);
    const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
    await writeFile(tmp, JSON.stringify(entry), { mode: 0o600 });
    await rename(tmp, path);
  } catch {
    // A cache that cannot be written only costs speed.
  }
}
