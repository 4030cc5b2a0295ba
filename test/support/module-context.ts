/**
 * Builds real ModuleContexts for module tests and runs one state function the way the engine does:
 * aliases resolved, defaults filled, the primary param defaulted to the id, plan, then apply unless
 * in test mode. Rendering uses the real template engine, so templates are really rendered.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  isFailedPlan,
  type ModuleContext,
  type Params,
  type Plan,
  type StateFunction,
} from "../../src/modules/types.js";
import { stateParams } from "../../src/state/compile.js";
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

export interface RunResult {
  result: boolean;
  changed: boolean;
  /** True in test mode when the plan has changes. */
  pending: boolean;
  comment: string;
  changes: Record<string, unknown>;
  diff?: string;
  plan: Plan;
}

async function finish(plan: Plan, ctx: ModuleContext): Promise<RunResult> {
  const base = { comment: plan.comment, changes: plan.changes, plan } as RunResult;
  if (plan.diff !== undefined) base.diff = plan.diff;
  if (isFailedPlan(plan)) return { ...base, result: false, changed: false, pending: false };
  const hasChanges = Object.keys(plan.changes).length > 0;
  if (ctx.test || !hasChanges || !plan.apply)
    return { ...base, result: true, changed: false, pending: hasChanges };
  const out = await plan.apply();
  return {
    ...base,
    result: out?.result ?? true,
    changed: Object.keys(out?.changes ?? plan.changes).length > 0,
    pending: false,
    comment: out?.comment ?? plan.comment,
    changes: out?.changes ?? plan.changes,
  };
}

/** Runs a state like the engine: plan, then apply unless ctx.test. */
export async function runState(fn: StateFunction, params: Params, ctx: ModuleContext): Promise<RunResult> {
  const p = normalizeParams(fn, ctx.id, params);
  if (typeof p === "string") return finish({ changes: {}, comment: p, failed: true }, ctx);
  return finish(await fn.plan(p, ctx), ctx);
}

/** Runs a state's watch behaviour (Salt's mod_watch). */
export async function runWatch(fn: StateFunction, params: Params, ctx: ModuleContext): Promise<RunResult> {
  if (!fn.watch) throw new Error("state has no watch()");
  const p = normalizeParams(fn, ctx.id, params);
  if (typeof p === "string") return finish({ changes: {}, comment: p, failed: true }, ctx);
  return finish(await fn.watch(p, ctx), ctx);
}

/** A fresh temp directory, removed by the returned cleanup function. */
export async function tempDir(
  prefix = "zester-mod-",
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
