/**
 * What a peel can be asked to run: its own functions (facts, sys, state runs) plus every
 * execution function and state function of the module registry. Nothing here knows about NATS:
 * the Peel hands in a call and gets back the fields of a PeelReturn.
 */

import { EVENT_SEND_DOC, peelEventSend } from "../events/peel-send.js";
import { saltGrains } from "../facts/grains.js";
import type { Facts } from "../facts/index.js";
import type { BasketReader } from "../modules/basket.js";
import { loadAllFamilies, loadFamily } from "../modules/index.js";
import type { ExecFunction, ModuleContext, StateFunction } from "../modules/types.js";
import type { RunSummary, StateResult } from "../state/result.js";
import { errText } from "../util/errors.js";
import type { BeaconStatus } from "./beacons/runner.js";
import type { RunSettings, SettingsSource } from "./settings.js";

export interface PeelCall {
  fun: string;
  args: readonly unknown[];
  kwargs: Record<string, unknown>;
  test: boolean;
  /** Only these states (by name) and what reacts to them: a drift repair. */
  only?: readonly string[];
}

export interface PeelFunctionContext {
  peelId: string;
  /** The job (or scheduled run) this call is: a state run is kept for state.revert under it. */
  jid?: string;
  /** Where state runs are kept for state.revert; nothing is kept without it. */
  revertDir?: string;
  /** Directory of the cached state revision, undefined when none has been synced yet. */
  statesDir: () => Promise<string | undefined>;
  /** Used for inline states when no tree is cached (they may not need one). */
  emptyStatesDir: string;
  facts: () => Promise<Facts>;
  /**
   * Fresh settings (pillar) for a state run or a settings.* call: fetched and resolved, or the
   * snapshot while the bus is away. Throws when neither is possible or resolution fails.
   */
  settings: () => Promise<RunSettings>;
  /** The latest settings without fetching, for execution functions (`{}` when none). */
  lastSettings: () => Promise<Record<string, unknown>>;
  /** Compile cache directory; no caching without one. */
  compileCacheDir?: string;
  /** Depth of the event chain behind the job being run (Command.event_depth); events it sends carry it. */
  eventDepth?: number;
  /** The peel's connection for `event.send` (undefined while disconnected). */
  bus?: () => import("@nats-io/transport-node").NatsConnection | undefined;
  signal: AbortSignal;
  /** The fleet's basket for basket.get / mine.get and templates. */
  basket?: BasketReader;
  /** Collects facts now (command facts re-run whatever their interval) and publishes them. */
  refreshFacts?: () => Promise<void>;
  /** The beacons this peel runs, with their last events. */
  beacons?: () => BeaconStatus[];
}

export interface FunctionOutcome {
  success: boolean;
  return?: unknown;
  results?: StateResult[];
  summary?: RunSummary;
  error?: string;
  /** Where the settings the call used came from; "snapshot" means the bus could not be used. */
  settings_source?: SettingsSource;
  /** Why the snapshot was used. */
  settings_warning?: string;
  /** The run was kept: state.revert <run> undoes it. */
  revert?: import("../revert/record.js").RevertNote;
}

type Builtin = {
  doc: string;
  readOnly: boolean;
  run(call: PeelCall, ctx: PeelFunctionContext): Promise<FunctionOutcome>;
};

/** Reads `a:b:0` out of nested objects and arrays. */
export function getByColonPath(data: unknown, path: string): unknown {
  let cur: unknown = data;
  for (const part of path.split(":")) {
    if (cur === null || typeof cur !== "object") return undefined;
    if (Array.isArray(cur)) {
      if (!/^\d+$/.test(part)) return undefined;
      cur = cur[Number(part)];
    } else {
      cur = Object.hasOwn(cur, part) ? (cur as Record<string, unknown>)[part] : undefined;
    }
  }
  return cur;
}

function ok(value: unknown): FunctionOutcome {
  return { success: true, return: value ?? null };
}

function fail(error: string): FunctionOutcome {
  return { success: false, error };
}

/** `state.apply a,b c` → ["a", "b", "c"]; Salt also accepts the sls list as `mods=`. */
export function slsRefs(call: PeelCall): string[] {
  const raw = [...call.args];
  const mods = call.kwargs.mods;
  if (typeof mods === "string") raw.push(mods);
  else if (Array.isArray(mods)) raw.push(...mods);
  return raw
    .flatMap((a) => (Array.isArray(a) ? a : [a]))
    .flatMap((a) => String(a).split(","))
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

export function wantsTest(call: PeelCall): boolean {
  const t = call.kwargs.test;
  return call.test || t === true || t === "true" || t === "True";
}

/** Salt's `state.apply failhard=True`: the run stops at the first failed state. */
function wantsFailhard(call: PeelCall): boolean {
  const f = call.kwargs.failhard;
  return f === true || f === "true" || f === "True";
}

async function engineOptions(
  ctx: PeelFunctionContext,
  test: boolean,
  statesDir: string,
  settings: Record<string, unknown>,
  failhard = false,
  only?: readonly string[],
) {
  const opts: import("../state/engine.js").EngineOptions = {
    statesDir,
    settings,
    facts: ctx.facts,
    peelId: ctx.peelId,
    test,
    signal: ctx.signal,
  };
  if (ctx.compileCacheDir !== undefined) opts.cacheDir = ctx.compileCacheDir;
  if (ctx.basket !== undefined) opts.basket = ctx.basket;
  if (failhard) opts.failhard = true;
  if (only !== undefined) opts.only = only;
  return opts;
}

const NO_TREE = "no state tree cached on this peel yet (waiting for a state-files revision from a master)";

/** Resolves settings for a call; a failure is the call's failure, with the resolver's message. */
async function withSettings(
  ctx: PeelFunctionContext,
  body: (s: RunSettings) => Promise<FunctionOutcome>,
): Promise<FunctionOutcome> {
  let s: RunSettings;
  try {
    s = await ctx.settings();
  } catch (err) {
    return fail(`settings could not be resolved: ${errText(err)}`);
  }
  const out = await body(s);
  out.settings_source = s.source;
  if (s.warning !== undefined) out.settings_warning = s.warning;
  return out;
}

function stateRun(
  ctx: PeelFunctionContext,
  test: boolean,
  target: import("../state/engine.js").Target,
  failhard = false,
  only?: readonly string[],
): Promise<FunctionOutcome> {
  return withSettings(ctx, (s) => stateRunWith(ctx, test, target, s.settings, failhard, only));
}

async function stateRunWith(
  ctx: PeelFunctionContext,
  test: boolean,
  target: import("../state/engine.js").Target,
  settings: Record<string, unknown>,
  failhard: boolean,
  only?: readonly string[],
): Promise<FunctionOutcome> {
  const statesDir =
    target.kind === "inline" ? ((await ctx.statesDir()) ?? ctx.emptyStatesDir) : await ctx.statesDir();
  if (statesDir === undefined) return fail(NO_TREE);
  const engine = await import("../state/engine.js");
  const { CompileError } = await import("../state/diagnostics.js");
  try {
    const opts = await engineOptions(ctx, test, statesDir, settings, failhard, only);
    const keep = !test && ctx.jid !== undefined && ctx.revertDir !== undefined;
    const rv = keep ? await import("../revert/run.js") : undefined;
    const store = rv ? new rv.RevertStore(ctx.revertDir!) : undefined;
    const recorder = rv && store ? new rv.RunRecorder(store) : undefined;
    if (recorder) opts.recorder = recorder;
    const report = await engine.applyTarget(target, opts);
    const out: FunctionOutcome = {
      success: report.summary.failed === 0,
      results: report.results,
      summary: report.summary,
    };
    if (rv && store && recorder) {
      const kept = await rv.keepRun(store, recorder, {
        id: ctx.jid!,
        fun: runName(target),
        machine: ctx.peelId,
        ...(target.kind === "sls" ? { args: target.refs } : {}),
      });
      if (kept.note) out.revert = kept.note;
    }
    if (ctx.signal.aborted) {
      out.success = false;
      out.error = "canceled";
    } else if (!out.success) {
      out.error = `${report.summary.failed} of ${report.summary.total} states failed`;
    }
    return out;
  } catch (err) {
    if (err instanceof CompileError) return fail(err.message);
    if (ctx.signal.aborted) return fail("canceled");
    throw err;
  }
}

function runName(target: import("../state/engine.js").Target): string {
  if (target.kind === "inline") return `${target.fun} ${target.id}`;
  return target.kind === "highstate" ? "state.highstate" : "state.apply";
}

/** state.revert <jid> [force=true]: undoes what that job's state run changed on this peel. */
async function revertCall(call: PeelCall, ctx: PeelFunctionContext): Promise<FunctionOutcome> {
  const [id, ...rest] = call.args;
  const { force, test: _t, ...others } = call.kwargs;
  if (typeof id !== "string" || rest.length > 0)
    return fail("state.revert needs one job id (the jid of the run to undo; state.runs lists them)");
  if (Object.keys(others).length > 0)
    return fail(`state.revert takes force=true only, not ${Object.keys(others).join(", ")}`);
  if (ctx.revertDir === undefined) return fail("no runs are kept here");
  const rv = await import("../revert/run.js");
  try {
    const report = await rv.revertById(new rv.RevertStore(ctx.revertDir), id, {
      test: wantsTest(call),
      force: rv.truthy(force),
      signal: ctx.signal,
    });
    const out: FunctionOutcome = {
      success: report.summary.failed === 0,
      results: report.results,
      summary: report.summary,
    };
    if (!out.success)
      out.error = `${report.summary.failed} of ${report.summary.total} states could not be reverted`;
    return out;
  } catch (err) {
    if (err instanceof rv.RunNotFound) return fail(err.message);
    throw err;
  }
}

function showStates(
  call: PeelCall,
  ctx: PeelFunctionContext,
  kind: "sls" | "order" | "highstate",
): Promise<FunctionOutcome> {
  const refs = kind === "highstate" ? [] : slsRefs(call);
  if (kind === "sls" && refs.length === 0) return Promise.resolve(fail("state.show_sls needs an sls name"));
  return withSettings(ctx, (s) => showStatesWith(ctx, kind, refs, s.settings));
}

async function showStatesWith(
  ctx: PeelFunctionContext,
  kind: "sls" | "order" | "highstate",
  refs: string[],
  settings: Record<string, unknown>,
): Promise<FunctionOutcome> {
  const statesDir = await ctx.statesDir();
  if (statesDir === undefined) return fail(NO_TREE);
  const engine = await import("../state/engine.js");
  const { CompileError } = await import("../state/diagnostics.js");
  try {
    const program = await engine.compileTarget(
      refs.length === 0 ? { kind: "highstate" } : { kind: "sls", refs },
      await engineOptions(ctx, false, statesDir, settings),
    );
    if (kind === "order") return ok(engine.plannedOrder(program));
    return ok(
      program.states.map((s) => ({
        name: s.name,
        id: s.id,
        function: s.fun,
        sls: s.sls,
        source: `${s.pos.file}:${s.pos.line}:${s.pos.col}`,
        params: s.params,
        requisites: s.requisites.map((r) => ({ [r.kind]: r.targets.map((t) => program.states[t]!.name) })),
      })),
    );
  } catch (err) {
    if (err instanceof CompileError) return fail(err.message);
    throw err;
  }
}

async function apply(call: PeelCall, ctx: PeelFunctionContext, test: boolean): Promise<FunctionOutcome> {
  const refs = slsRefs(call);
  const target = refs.length === 0 ? { kind: "highstate" as const } : { kind: "sls" as const, refs };
  return stateRun(ctx, test, target, wantsFailhard(call), call.only);
}

const factsFunctions = (
  prefix: string,
  view: (facts: Record<string, unknown>) => Record<string, unknown> = (f) => f,
): Record<string, Builtin> => ({
  [`${prefix}.items`]: {
    doc: `Returns all ${prefix} of this peel.`,
    readOnly: true,
    run: async (_c, ctx) => ok(view(await ctx.facts())),
  },
  [`${prefix}.get`]: {
    doc: "Returns one fact by colon path (`os`, `network:interfaces:eth0`); `default` when absent (empty string).",
    readOnly: true,
    run: async (call, ctx) => {
      const key = call.args[0] ?? call.kwargs.key;
      if (typeof key !== "string" || key === "") return fail(`${prefix}.get needs a key`);
      const value = getByColonPath(view(await ctx.facts()), key);
      return ok(value === undefined ? (call.args[1] ?? call.kwargs.default ?? "") : value);
    },
  },
  [`${prefix}.keys`]: {
    doc: "Returns the top-level fact names.",
    readOnly: true,
    run: async (_c, ctx) => ok(Object.keys(view(await ctx.facts())).sort()),
  },
});

const settingsFunctions = (prefix: string): Record<string, Builtin> => ({
  [`${prefix}.items`]: {
    doc: "Returns this peel's settings, freshly resolved (secrets masked in the return).",
    readOnly: true,
    run: (_c, ctx) => withSettings(ctx, async (s) => ok(s.settings)),
  },
  [`${prefix}.get`]: {
    doc: "Returns one setting by colon path (`db:password`); `default` when absent (empty string).",
    readOnly: true,
    run: (call, ctx) => {
      const key = call.args[0] ?? call.kwargs.key;
      if (typeof key !== "string" || key === "") return Promise.resolve(fail(`${prefix}.get needs a key`));
      return withSettings(ctx, async (s) => {
        const value = getByColonPath(s.settings, key);
        return ok(value === undefined ? (call.args[1] ?? call.kwargs.default ?? "") : value);
      });
    },
  },
  [`${prefix}.keys`]: {
    doc: "Returns the top-level setting names.",
    readOnly: true,
    run: (_c, ctx) => withSettings(ctx, async (s) => ok(Object.keys(s.settings).sort())),
  },
});

type AnyFunction = { kind: "state"; fn: StateFunction } | { kind: "exec"; fn: ExecFunction };

async function registryFunctions(): Promise<Map<string, AnyFunction[]>> {
  const { families } = await loadAllFamilies();
  const out = new Map<string, AnyFunction[]>();
  for (const f of families) {
    for (const [n, fn] of Object.entries(f.exec ?? {})) out.set(`${f.name}.${n}`, [{ kind: "exec", fn }]);
    for (const [n, fn] of Object.entries(f.states)) {
      const name = `${f.name}.${n}`;
      out.set(name, [...(out.get(name) ?? []), { kind: "state", fn }]);
    }
  }
  return out;
}

const refreshFacts: Builtin = {
  doc: "Collects facts now (custom command facts run again whatever their interval) and publishes them; returns True.",
  readOnly: true,
  run: async (_c, ctx) => {
    if (!ctx.refreshFacts) return fail("facts cannot be refreshed here (no peel)");
    await ctx.refreshFacts();
    return ok(true);
  },
};

const refreshSettings: Builtin = {
  doc: "Salt's name for settings.refresh: fetches and resolves settings now and saves the snapshot; returns True.",
  readOnly: true,
  run: (_c, ctx) => withSettings(ctx, async () => ok(true)),
};

const BUILTINS: Record<string, Builtin> = {
  "facts.refresh": refreshFacts,
  "saltutil.refresh_grains": refreshFacts,
  "saltutil.refresh_pillar": refreshSettings,
  ...factsFunctions("facts"),
  ...factsFunctions("grains", saltGrains),
  ...settingsFunctions("settings"),
  ...settingsFunctions("pillar"),
  "settings.refresh": {
    doc: "Fetches and resolves settings now and saves the last-known-good snapshot; returns where they came from.",
    readOnly: true,
    run: (_c, ctx) =>
      withSettings(ctx, async (s) =>
        ok({
          source: s.source,
          ...(s.rev !== undefined ? { rev: s.rev } : {}),
          keys: Object.keys(s.settings).length,
        }),
      ),
  },
  "beacons.list": {
    doc: "The beacons this peel runs (from the settings key `beacons:`): module, interval, events sent, the last event and the last error.",
    readOnly: true,
    run: async (_c, ctx) =>
      ctx.beacons ? ok(ctx.beacons()) : fail("no beacons run here (only a peel runs beacons)"),
  },
  "sys.doc": {
    doc: "Documentation of every function, or of those under a module or function name given as argument.",
    readOnly: true,
    run: async (call) => {
      const what = call.args[0] === undefined ? undefined : String(call.args[0]);
      const docs: Record<string, string> = {};
      for (const [name, b] of Object.entries(BUILTINS)) docs[name] = b.doc;
      for (const [name, fns] of await registryFunctions()) {
        docs[name] = fns.map((f) => `${f.fn.doc}${f.kind === "state" ? " (state)" : ""}`).join("\n");
      }
      const picked = Object.fromEntries(
        Object.entries(docs)
          .filter(([n]) => what === undefined || n === what || n.startsWith(`${what}.`))
          .sort(([a], [b]) => a.localeCompare(b)),
      );
      if (what !== undefined && Object.keys(picked).length === 0)
        return fail(`no function or module "${what}"`);
      return ok(picked);
    },
  },
  "sys.list_functions": {
    doc: "Names of every function this peel runs, optionally only those of one module.",
    readOnly: true,
    run: async (call) => {
      const mod = call.args[0] === undefined ? undefined : String(call.args[0]);
      const names = [...Object.keys(BUILTINS), ...(await registryFunctions()).keys()];
      return ok([...new Set(names)].filter((n) => mod === undefined || n.startsWith(`${mod}.`)).sort());
    },
  },
  "event.send": {
    doc: EVENT_SEND_DOC,
    readOnly: true,
    run: async (call, ctx) => {
      const r = await peelEventSend(ctx.bus?.(), ctx.peelId, call, ctx.eventDepth ?? 0);
      return r.success ? ok(r.value) : fail(r.error);
    },
  },
  "state.apply": {
    doc: "Applies the given sls files (comma separated), or the highstate from top.zy without any.",
    readOnly: false,
    run: (call, ctx) => apply(call, ctx, wantsTest(call)),
  },
  "state.sls": {
    doc: "Applies the given sls files.",
    readOnly: false,
    run: (call, ctx) =>
      slsRefs(call).length === 0
        ? Promise.resolve(fail("state.sls needs an sls name"))
        : apply(call, ctx, wantsTest(call)),
  },
  "state.highstate": {
    doc: "Applies every sls that top.zy assigns to this peel.",
    readOnly: false,
    run: (call, ctx) => stateRun(ctx, wantsTest(call), { kind: "highstate" }, wantsFailhard(call)),
  },
  "state.test": {
    doc: "state.apply as a dry run: reports what would change, changes nothing.",
    readOnly: false,
    run: (call, ctx) => apply(call, ctx, true),
  },
  "state.single": {
    doc: "Runs one state function: state.single <module.function> <id> [key=value ...].",
    readOnly: false,
    run: (call, ctx) => {
      const [fun, ...rest] = call.args;
      if (typeof fun !== "string") return Promise.resolve(fail("state.single needs <module.function> <id>"));
      return inlineState({ ...call, fun, args: rest }, ctx);
    },
  },
  "state.revert": {
    doc: "Undoes what a state run changed: state.revert <jid> [force=true]; refuses resources changed since the run unless forced; test=true shows the diff (docs/revert.md).",
    readOnly: false,
    run: (call, ctx) => revertCall(call, ctx),
  },
  "state.runs": {
    doc: "The state runs kept on this peel for state.revert, newest first: jid, what ran, states revertable.",
    readOnly: true,
    run: async (_c, ctx) => {
      if (ctx.revertDir === undefined) return ok([]);
      const rv = await import("../revert/run.js");
      return ok(await rv.listRuns(new rv.RevertStore(ctx.revertDir)));
    },
  },
  "state.show_sls": {
    doc: "The compiled states of the given sls files, without running them.",
    readOnly: true,
    run: (call, ctx) => showStates(call, ctx, "sls"),
  },
  "state.show_highstate": {
    doc: "The compiled highstate of this peel, without running it.",
    readOnly: true,
    run: (call, ctx) => showStates(call, ctx, "highstate"),
  },
  "state.show_order": {
    doc: "The planned execution order of the given sls files (or the highstate).",
    readOnly: true,
    run: (call, ctx) => showStates(call, ctx, "order"),
  },
};

function inlineState(call: PeelCall, ctx: PeelFunctionContext): Promise<FunctionOutcome> {
  const { test: _test, ...kwargs } = call.kwargs;
  const first = call.args[0];
  const id = first !== undefined ? String(first) : typeof kwargs.name === "string" ? kwargs.name : undefined;
  if (id === undefined) return Promise.resolve(fail(`${call.fun} needs a state id (or name=...)`));
  if (call.args.length > 1) {
    return Promise.resolve(
      fail(`${call.fun} takes one positional argument (the state id); use key=value for the rest`),
    );
  }
  return stateRun(ctx, wantsTest(call), { kind: "inline", fun: call.fun, id, args: kwargs });
}

async function lookup(fun: string): Promise<Builtin | AnyFunction | undefined> {
  if (Object.hasOwn(BUILTINS, fun)) return BUILTINS[fun];
  const dot = fun.indexOf(".");
  if (dot <= 0) return undefined;
  const fam = await loadFamily(fun.slice(0, dot)).catch(() => undefined);
  const name = fun.slice(dot + 1);
  if (!fam) return undefined;
  // An execution function wins over a state of the same name (`cmd.run` runs a command).
  if (fam.exec && Object.hasOwn(fam.exec, name)) return { kind: "exec", fn: fam.exec[name]! };
  if (Object.hasOwn(fam.states, name)) return { kind: "state", fn: fam.states[name]! };
  return undefined;
}

/**
 * Read-only functions run next to anything else; the rest wait their turn in the peel's queue.
 * Unknown names count as read-only: they fail at once without touching anything.
 */
export async function isReadOnlyFunction(fun: string): Promise<boolean> {
  const f = await lookup(fun);
  if (f === undefined) return true;
  if ("kind" in f) return f.kind === "exec" && f.fn.readOnly === true;
  return f.readOnly;
}

/** Runs one call. Never throws for a failure of the function itself: that is `success: false`. */
export async function runPeelFunction(call: PeelCall, ctx: PeelFunctionContext): Promise<FunctionOutcome> {
  try {
    const f = await lookup(call.fun);
    if (f === undefined) return fail(await unknownFunction(call.fun));
    if (!("kind" in f)) return await f.run(call, ctx);
    if (f.kind === "state") return await inlineState(call, ctx);
    return await execCall(call, ctx);
  } catch (err) {
    if (ctx.signal.aborted) return fail("canceled");
    return fail(errText(err));
  }
}

async function execCall(call: PeelCall, ctx: PeelFunctionContext): Promise<FunctionOutcome> {
  const { callExec, retcodeError } = await import("../state/exec.js");
  const statesDir = (await ctx.statesDir()) ?? ctx.emptyStatesDir;
  // test.* never reads facts: keeps test.ping instant even on a slow machine.
  const facts = call.fun.startsWith("test.") ? {} : await ctx.facts();
  const settings = call.fun.startsWith("test.") ? {} : await ctx.lastSettings();
  const { TemplateRenderer } = await import("../template/render.js");
  const renderer = new TemplateRenderer({ searchPath: statesDir });
  const { test: _test, ...kwargs } = call.kwargs;
  const mctx: ModuleContext = {
    test: wantsTest(call),
    id: call.fun,
    statesDir,
    facts,
    settings,
    signal: ctx.signal,
    render: (t, extra, source) =>
      renderer.render(t, { facts, grains: saltGrains(facts), settings, ...extra }, source),
  };
  if (ctx.basket !== undefined) mctx.basket = ctx.basket;
  let retcode: number | undefined;
  mctx.retcode = (code) => {
    retcode = code;
  };
  const value = await callExec(call.fun, call.args, kwargs, mctx);
  if (ctx.signal.aborted) return fail("canceled");
  if (retcode !== undefined)
    return { success: false, return: value ?? null, error: retcodeError(call.fun, retcode) };
  return ok(value);
}

/** Undefined for a function this version can run, else the refusal with a did-you-mean. */
export async function unknownFunctionError(fun: string): Promise<string | undefined> {
  return (await lookup(fun)) === undefined ? await unknownFunction(fun) : undefined;
}

async function unknownFunction(fun: string): Promise<string> {
  const { didYouMean } = await import("../util/suggest.js");
  const names = [...Object.keys(BUILTINS), ...(await registryFunctions()).keys()];
  const s = didYouMean(fun, names);
  return `unknown function "${fun}"${s ? ` (did you mean "${s}"?)` : ""}`;
}
