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
import { type AloneReason, buildSchedule, type Wait } from "./schedule.js";
import { selectStates } from "./select.js";
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
  /** Run only these states (by name) and what reacts to them: a drift repair. */
  only?: readonly string[];
  /** Keeps pre-images for `state.revert` (real runs only). */
  recorder?: import("./runner.js").StateUndoRecorder;
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
  if (s.params.contents_grains !== undefined) return true;
  return [...s.onlyif, ...s.unless].some((g) => "fun" in g);
}

/** Compiles then runs; throws CompileError (nothing executed) when the tree has errors. */
export async function applyTarget(target: Target, opts: EngineOptions): Promise<RunReport> {
  const started = performance.now();
  const session = new Session(opts);
  const compiled = await compileWith(session, target);
  const program = opts.only ? selectStates(compiled, new Set(opts.only)) : compiled;
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
  if (opts.recorder && !opts.test) runOpts.recorder = opts.recorder;
  const results = await runProgram(program, runOpts);
  return { results, summary: summarize(results, performance.now() - started) };
}

export interface OrderRow {
  name: string;
  sls?: string;
  /** 1-based place in Salt's order: the run_num the state will get. */
  position: number;
  /** Requisites, as `<kind> <state name>`. */
  after: string[];
  /** Every reason the state waits: requisites, declaration order, footprint conflicts. */
  waits: string[];
  order?: number | string;
}

/** Salt's order for `state.show_order`, with the reason each state waits for the ones it does. */
export function plannedOrder(program: Program, opts: { failhard?: boolean } = {}): OrderRow[] {
  const sched = buildSchedule(program, { sequential: opts.failhard === true });
  const name = (i: number) => program.states[i]!.name;
  return sched.seq.map((i, p) => {
    const s = program.states[i]!;
    const after: string[] = [];
    for (const r of s.requisites) for (const t of r.targets) after.push(`${r.kind} ${name(t)}`);
    const row: OrderRow = {
      name: s.name,
      position: p + 1,
      after,
      waits: sched.waits[i]!.map((w) => describeWait(w, i, name)),
    };
    if (s.sls) row.sls = s.sls;
    if (s.order !== undefined)
      row.order = Number.isFinite(s.order) ? s.order : s.order < 0 ? "first" : "last";
    return row;
  });
}

const ALONE: Record<AloneReason, string> = {
  "unknown footprint": "runs alone: its footprint is unknown",
  failhard: "runs alone: failhard",
  order: "runs alone: explicit order",
  guard: "has onlyif/unless/check_cmd, which may read anything",
};

function describeWait(w: Wait, self: number, name: (i: number) => string): string {
  switch (w.why) {
    case "requisite":
      return `${w.kind} ${name(w.on)}`;
    case "sequence":
      return `declaration order: after ${name(w.on)} (${w.alone === self ? "this state" : name(w.on)} ${ALONE[w.because]})`;
    case "footprint":
      return `footprint: ${w.mine} overlaps ${w.theirs} of ${name(w.on)}`;
  }
}
