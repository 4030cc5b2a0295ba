/**
 * The state engine's front door: compile a states tree (sls list or highstate) and run it.
 * Used by `zester local` and by the peel.
 */
import { saltGrains } from "../facts/grains.js";
import type { BasketReader } from "../modules/basket.js";
import type { ModuleContext } from "../modules/types.js";
import { TemplateRenderer } from "../template/render.js";
import { loadCached, storeCached } from "./cache.js";
import type { CompileOptions, Facts, Program } from "./compile.js";
import { type RunSummary, type StateResult, summarize } from "./result.js";
import { runProgram } from "./runner.js";
import { CompileTracker } from "./sls.js";

export interface EngineOptions {
  statesDir: string;
  settings?: Record<string, unknown>;
  /** Collected at most once, and only when something needs facts. */
  facts?: () => Promise<Facts>;
  /** Peel id for top.zy matching; defaults to facts.id. */
  peelId?: string;
  test?: boolean;
  concurrency?: number;
  failhard?: boolean;
  signal?: AbortSignal;
  onResult?: (r: StateResult) => void;
  /** Directory for the compile cache; no caching without one. */
  cacheDir?: string;
  /** The fleet's basket for templates (a connected peel). */
  basket?: BasketReader;
}

export type Target =
  | { kind: "highstate" }
  | { kind: "sls"; refs: string[] }
  | { kind: "inline"; fun: string; id: string; args: Record<string, unknown> };

export interface RunReport {
  results: StateResult[];
  summary: RunSummary;
}

function memo(f: () => Promise<Facts>): () => Promise<Facts> {
  let p: Promise<Facts> | undefined;
  return () => {
    p ??= f();
    return p;
  };
}

/** Shared pieces of one engine run: lazy facts, one template renderer, module contexts. */
class Session {
  readonly facts: () => Promise<Facts>;
  readonly settings: Record<string, unknown>;
  readonly renderer: TemplateRenderer;
  private loaded: Facts | undefined;

  constructor(readonly opts: EngineOptions) {
    const source = opts.facts ?? (async () => ({}));
    const load = memo(source);
    this.facts = async () => {
      this.loaded = await load();
      return this.loaded;
    };
    this.settings = opts.settings ?? {};
    this.renderer = new TemplateRenderer({ searchPath: opts.statesDir });
  }

  render: ModuleContext["render"] = async (template, extra, source) => {
    const facts = await this.facts();
    return this.renderer.render(
      template,
      { facts, grains: saltGrains(facts), settings: this.settings, ...extra },
      source,
    );
  };

  context(facts: Facts): ModuleContext {
    const ctx: ModuleContext = {
      test: this.opts.test === true,
      id: "template",
      facts,
      settings: this.settings,
      statesDir: this.opts.statesDir,
      render: this.render,
    };
    if (this.opts.basket) ctx.basket = this.opts.basket;
    return ctx;
  }

  compileOptions(track: CompileTracker): CompileOptions & { peelId?: string } {
    const o: CompileOptions & { peelId?: string } = {
      statesDir: this.opts.statesDir,
      facts: this.facts,
      settings: this.settings,
      context: (f) => this.context(f),
      track,
    };
    if (this.opts.peelId !== undefined) o.peelId = this.opts.peelId;
    return o;
  }
}

export function compileTarget(target: Target, opts: EngineOptions): Promise<Program> {
  return compileWith(new Session(opts), target);
}

async function compileWith(session: Session, target: Target): Promise<Program> {
  const { cacheDir } = session.opts;
  // Inline states come from the command line: nothing to cache.
  const cacheable = cacheDir !== undefined && target.kind !== "inline";
  const key = {
    statesDir: session.opts.statesDir,
    target,
    settings: session.settings,
    ...(target.kind === "highstate" && session.opts.peelId !== undefined
      ? { peelId: session.opts.peelId }
      : {}),
  };
  if (cacheable) {
    const hit = await loadCached(cacheDir, key, session.facts);
    if (hit) return hit;
  }
  const track = new CompileTracker();
  const co = session.compileOptions(track);
  // The compiler pulls in the YAML parser; a cache hit never needs it.
  let program: Program;
  switch (target.kind) {
    case "highstate":
      program = await (await import("./top.js")).compileHighstate(co);
      break;
    case "sls":
      program = await (await import("./compile.js")).compileSls(target.refs, co);
      break;
    case "inline":
      program = await (await import("./compile.js")).compileInline(target.fun, target.id, target.args, co);
      break;
  }
  if (cacheable) await storeCached(cacheDir, key, program, track);
  return program;
}

/**
 * Families whose states never read `ctx.facts` (templates they render collect facts lazily);
 * anything else, or a `{fun: ...}` guard, gets facts collected up front.
 */
const FACT_FREE_FAMILIES: ReadonlySet<string> = new Set(["test", "file", "cmd"]);

function needsFacts(s: Program["states"][number]): boolean {
  if (!FACT_FREE_FAMILIES.has(s.fun.split(".")[0]!)) return true;
  return [...s.onlyif, ...s.unless].some((g) => "fun" in g);
}

/** Compiles then runs; throws CompileError (nothing executed) when the tree has errors. */
export async function applyTarget(target: Target, opts: EngineOptions): Promise<RunReport> {
  const started = performance.now();
  const session = new Session(opts);
  const program = await compileWith(session, target);
  let facts = program.facts;
  if (!facts) {
    facts = program.states.some(needsFacts) ? await session.facts() : {};
  }
  const runOpts: Parameters<typeof runProgram>[1] = {
    facts,
    settings: session.settings,
    statesDir: opts.statesDir,
    render: session.render,
  };
  if (opts.test !== undefined) runOpts.test = opts.test;
  if (opts.concurrency !== undefined) runOpts.concurrency = opts.concurrency;
  if (opts.failhard !== undefined) runOpts.failhard = opts.failhard;
  if (opts.signal) runOpts.signal = opts.signal;
  if (opts.onResult) runOpts.onResult = opts.onResult;
  const results = await runProgram(program, runOpts);
  return { results, summary: summarize(results, performance.now() - started) };
}

/** Planned execution order with the reason each state waits, for `state.show_order`. */
export function plannedOrder(
  program: Program,
): { name: string; sls?: string; after: string[]; order?: number | string }[] {
  const g = program.graph;
  const indeg = g.indegree.slice();
  const queue: number[] = [];
  for (let i = 0; i < g.nodeCount; i++) if (indeg[i] === 0) queue.push(i);
  const out: { name: string; sls?: string; after: string[]; order?: number | string }[] = [];
  for (let h = 0; h < queue.length; h++) {
    const n = queue[h]!;
    for (const m of g.succ[n]!) if (--indeg[m]! === 0) queue.push(m);
    if (n >= g.stateCount) continue;
    const s = program.states[n]!;
    const after: string[] = [];
    for (const r of s.requisites) {
      for (const t of r.targets) after.push(`${r.kind} ${program.states[t]!.name}`);
    }
    const row: { name: string; sls?: string; after: string[]; order?: number | string } = {
      name: s.name,
      after,
    };
    if (s.sls) row.sls = s.sls;
    if (s.order !== undefined)
      row.order = Number.isFinite(s.order) ? s.order : s.order < 0 ? "first" : "last";
    out.push(row);
  }
  return out;
}
