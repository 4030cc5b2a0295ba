/**
 * Builds real ModuleContexts for module tests and runs one state function with the engine's own
 * code: compile's stateParams (aliases, defaults, the primary param defaulted to the id) and the
 * runner's attemptState (plan, then apply unless in test mode), so a module test also catches
 * drift in the engine. Rendering uses the real template engine, so templates are really rendered.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ModuleContext, Params, StateFunction } from "../../src/modules/types.js";
import { stateParams } from "../../src/state/compile.js";
import { type Attempt, attemptState } from "../../src/state/runner.js";
import { TemplateRenderer } from "../../src/template/render.js";

export interface ContextOptions {
  test?: boolean;
  id?: string;
  statesDir?: string;
  facts?: Record<string, unknown>;
  settings?: Record<string, unknown>;
  call?: ModuleContext["call"];
  signal?: AbortSignal;
}

export function moduleContext(opts: ContextOptions = {}): ModuleContext {
  const renderer = new TemplateRenderer();
  const facts = opts.facts ?? { os: "Debian", cpu_count: 2 };
  const settings = opts.settings ?? {};
  const ctx: ModuleContext = {
    test: opts.test ?? false,
    id: opts.id ?? "test-state",
    facts,
    settings,
    render: (template, extra, source) =>
      renderer.render(template, { facts, settings, grains: facts, pillar: settings, ...extra }, source),
  };
  if (opts.statesDir !== undefined) ctx.statesDir = opts.statesDir;
  if (opts.call) ctx.call = opts.call;
  if (opts.signal) ctx.signal = opts.signal;
  return ctx;
}

/**
 * The params the engine would hand the function: compile's own stateParams (primary param
 * defaulted to the state id, aliases, defaults, types). Returns the issues as one message
 * instead of throwing, so a test sees what a user would. Stricter than a compile in one way on
 * purpose: an unknown key is an error here (compile warns and ignores it, as Salt does), so a
 * typo in a test cannot pass silently.
 */
export function normalizeParams(fn: StateFunction, id: string, params: Params): Params | string {
  const v = stateParams(fn, id, params);
  if (v.issues.length > 0) return v.issues.map((i) => i.message).join("; ");
  return v.params;
}

/** One state's outcome, as the runner's attempt reports it. */
export type RunResult = Attempt;

/** Runs a state like the engine: the runner's own attempt (plan, then apply unless ctx.test). */
export async function runState(fn: StateFunction, params: Params, ctx: ModuleContext): Promise<RunResult> {
  const p = normalizeParams(fn, ctx.id, params);
  if (typeof p === "string")
    return { result: false, changed: false, pending: false, comment: p, changes: {} };
  return attemptState(fn, p, ctx);
}

/** Runs a state's watch behaviour (Salt's mod_watch) through the runner's attempt. */
export async function runWatch(fn: StateFunction, params: Params, ctx: ModuleContext): Promise<RunResult> {
  if (!fn.watch) throw new Error("state has no watch()");
  const p = normalizeParams(fn, ctx.id, params);
  if (typeof p === "string")
    return { result: false, changed: false, pending: false, comment: p, changes: {} };
  return attemptState(fn, p, ctx, { watch: true });
}

/** A fresh temp directory, removed by the returned cleanup function. */
export async function tempDir(
  prefix = "zester-mod-",
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
