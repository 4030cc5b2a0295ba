/**
 * The runner: walks the graph with Kahn's algorithm, runs independent states concurrently in a
 * bounded pool, and applies Salt's requisite semantics from the finished targets' outcomes.
 */
import { setTimeout as delay } from "node:timers/promises";
import type { RequisiteKind } from "../modules/params.js";
import {
  isFailedPlan,
  type ModuleContext,
  type Params,
  type StateFunction,
  type Undo,
} from "../modules/types.js";
import { errText } from "../util/errors.js";
import { run as runCommand } from "../util/exec.js";
import { MinHeap } from "../util/heap.js";
import type { CompiledState, Facts, Guard, Program } from "./compile.js";
import { callExec } from "./exec.js";
import type { StateResult } from "./result.js";
import { buildSchedule } from "./schedule.js";
import { SKIP_SENTENCES, type SkipReason, type SkipStatus } from "./skip.js";

export interface RunOptions {
  /** Dry run: plan only, report pending changes, change nothing. */
  test?: boolean;
  /** States run at once; default 8. */
  concurrency?: number;
  /** Stop starting states after the first failure (as if every state had failhard). */
  failhard?: boolean;
  facts: Facts;
  settings: Record<string, unknown>;
  statesDir?: string;
  signal?: AbortSignal;
  render?: ModuleContext["render"];
  /** Called as each state finishes (progress output, events). */
  onResult?: (r: StateResult) => void;
  /** Keeps pre-images of what the run changes, for `state.revert` (src/revert/recorder.ts). */
  recorder?: StateUndoRecorder;
}

/** The state a recorder is told about. */
export interface UndoStateInfo {
  name: string;
  id: string;
  fun: string;
  sls?: string;
  signal?: AbortSignal;
}

/**
 * Hooks around every apply of a real run: before() keeps the pre-images of what the plan's
 * `undo` names (a failure fails the state before anything changes), after() the post-images.
 */
export interface StateUndoRecorder {
  before(s: UndoStateInfo, undo: Undo): Promise<void>;
  after(s: UndoStateInfo, changed: boolean): Promise<void>;
}

/** Why a change with no `undo` cannot be reverted, from the state function's revert doc. */
export function cannotRevert(fn: StateFunction): string {
  const doc = fn.revert;
  if (doc === undefined) return "its module family keeps no pre-image (no revert support yet)";
  const m = /^cannot be reverted:\s*(.*)$/s.exec(doc);
  return m ? m[1]! : "this change keeps no pre-image";
}

type Status = "ok" | "failed" | "blocked" | "notrun";

interface Outcome {
  status: Status;
  /** Changed, or would change in test mode: what onchanges/watch look at. */
  changed: boolean;
}

type Decision =
  | {
      status: "run";
      /** A watch target changed: run the watch action if the state itself changed nothing. */
      watchTriggered: boolean;
    }
  | Skip;

/** A state that will not run, and why. */
interface Skip {
  status: SkipStatus;
  reason: SkipReason;
  /** Default: the reason's sentence. */
  comment?: string;
}

/** What one plan (and apply, unless testing) of a state came to. */
export interface Attempt {
  result: boolean;
  changed: boolean;
  pending: boolean;
  comment: string;
  changes: Record<string, unknown>;
  diff?: string;
}

const noRender: ModuleContext["render"] = async () => {
  throw new Error("template rendering is not available in this run");
};

/** Runs a compiled program; returns one result per state (and per listener), in run order. */
export async function runProgram(program: Program, opts: RunOptions): Promise<StateResult[]> {
  return new Runner(program, opts).run();
}

class Runner {
  private readonly states: readonly CompiledState[];
  private readonly outcomes: (Outcome | undefined)[];
  private readonly results: (StateResult | undefined)[];
  private readonly prereqOf: Map<number, number[]> = new Map();
  private readonly test: boolean;
  private runNum = 0;
  private pos: number[] = [];
  private stopReason: Extract<SkipReason, "failhard" | "cancelled"> | undefined;

  constructor(
    private readonly program: Program,
    private readonly opts: RunOptions,
  ) {
    this.states = program.states;
    this.outcomes = new Array(this.states.length);
    this.results = new Array(this.states.length);
    this.test = opts.test === true;
    for (const s of this.states) {
      for (const r of s.requisites) {
        if (r.kind !== "prereq") continue;
        for (const t of r.targets) {
          const l = this.prereqOf.get(t);
          if (l) l.push(s.index);
          else this.prereqOf.set(t, [s.index]);
        }
      }
    }
  }

  async run(): Promise<StateResult[]> {
    const sched = buildSchedule(this.program, { sequential: this.opts.failhard === true });
    this.pos = sched.pos;
    this.runNum = this.states.length;
    const indeg = sched.indegree.slice();
    // Ready states start in Salt's order, so a bounded pool never starves an earlier state.
    const ready = new MinHeap<number>((a, b) => a - b);
    for (const i of sched.seq) if (indeg[i] === 0) ready.push(sched.pos[i]!);
    const limit = Math.max(1, this.opts.concurrency ?? 8);
    let running = 0;
    let finished = 0;
    const total = this.states.length;

    await new Promise<void>((resolve) => {
      const complete = (i: number) => {
        finished++;
        for (const m of sched.succ[i]!) if (--indeg[m]! === 0) ready.push(sched.pos[m]!);
      };
      const pump = () => {
        if (this.opts.signal?.aborted && !this.stopReason) this.stopReason = "cancelled";
        while (running < limit && ready.size > 0 && !this.stopReason) {
          const i = sched.seq[ready.pop()!]!;
          running++;
          this.execute(i).then(
            () => {
              running--;
              complete(i);
              pump();
            },
            (err: unknown) => {
              // execute() turns module errors into results; reaching here is an engine bug.
              running--;
              this.record(i, this.failure(i, `internal error: ${errText(err)}`));
              complete(i);
              pump();
            },
          );
        }
        if (running === 0 && (finished === total || this.stopReason || ready.size === 0)) resolve();
      };
      pump();
    });

    const out: StateResult[] = [];
    for (let i = 0; i < this.states.length; i++) {
      let r = this.results[i];
      if (!r) {
        const reason = this.stopReason ?? "not reached";
        r = this.base(this.states[i]!);
        r.result = false;
        r.skipped = true;
        r.skip_reason = reason;
        r.comment = SKIP_SENTENCES[reason];
        this.results[i] = r;
      }
      out.push(r);
    }
    out.sort((a, b) => a.run_num - b.run_num);
    if (!this.stopReason) out.push(...(await this.listeners()));
    return out;
  }

  /** run_num is the state's place in Salt's order, whatever overlapped in time. */
  private base(s: CompiledState): StateResult {
    const r: StateResult = {
      name: s.name,
      id: s.id,
      module: s.fun,
      result: true,
      changed: false,
      comment: "",
      changes: {},
      skipped: false,
      duration_ms: 0,
      run_num: this.pos[s.index]! + 1,
    };
    if (s.sls) r.sls = s.sls;
    if (s.warnings) r.warnings = [...s.warnings];
    return r;
  }

  private failure(i: number, comment: string): StateResult {
    const r = this.base(this.states[i]!);
    r.result = false;
    r.comment = comment;
    return r;
  }

  private record(i: number, r: StateResult): void {
    r.started_at ??= startedAt(r.duration_ms);
    this.results[i] = r;
    let status: Status;
    if (r.skipped) status = r.result ? "notrun" : "blocked";
    else status = r.result ? "ok" : "failed";
    this.outcomes[i] = { status, changed: status === "ok" && (r.changed || r.pending === true) };
    // Salt ignores failhard in test mode: a dry run shows everything that would happen.
    if (status === "failed" && !this.test && (this.opts.failhard || this.states[i]!.failhard))
      this.stopReason ??= "failhard";
    this.opts.onResult?.(r);
  }

  private context(s: CompiledState): ModuleContext {
    const ctx: ModuleContext = {
      test: this.test,
      id: s.id,
      facts: this.opts.facts,
      settings: this.opts.settings,
      render: this.opts.render ?? noRender,
      call: (fun, args) => callExec(fun, [], args, ctx),
    };
    if (s.sls) ctx.sls = s.sls;
    if (this.opts.statesDir) ctx.statesDir = this.opts.statesDir;
    if (this.opts.signal) ctx.signal = this.opts.signal;
    return ctx;
  }

  /** Requisite verdict for state i from its targets' outcomes (all finished: graph edges). */
  private decide(i: number, forPrereq = false): Decision {
    const s = this.states[i]!;
    const byKind = new Map<RequisiteKind, number[]>();
    for (const r of s.requisites) {
      if (r.kind === "listen" || r.kind === "prereq") continue;
      const l = byKind.get(r.kind);
      if (l) l.push(...r.targets);
      else byKind.set(r.kind, [...r.targets]);
    }
    const st = (t: number) => this.outcomes[t] ?? { status: "blocked" as Status, changed: false };
    const bad = (t: number) => {
      const x = st(t).status;
      return x === "failed" || x === "blocked";
    };
    const changed = (t: number) => st(t).changed;
    // While judging a prereq target, other states prereq'ing it may still be waiting to run.
    if (!forPrereq) {
      for (const d of this.prereqOf.get(i) ?? []) {
        if (bad(d)) return { status: "blocked", reason: "prereq_failed" };
      }
    }
    const req = byKind.get("require");
    if (req?.some(bad)) return { status: "blocked", reason: "require_failed" };
    const reqAny = byKind.get("require_any");
    if (reqAny && reqAny.length > 0 && reqAny.every(bad))
      return { status: "blocked", reason: "require_any_failed" };
    const watch = byKind.get("watch");
    if (watch?.some(bad)) return { status: "blocked", reason: "watch_failed" };
    const watchAny = byKind.get("watch_any");
    if (watchAny && watchAny.length > 0 && watchAny.every(bad))
      return { status: "blocked", reason: "watch_any_failed" };
    const onch = [...(byKind.get("onchanges") ?? []), ...(byKind.get("onchanges_any") ?? [])];
    if (onch.length > 0 && !onch.some(changed)) return { status: "notrun", reason: "onchanges_not_met" };
    const onfail = [...(byKind.get("onfail") ?? []), ...(byKind.get("onfail_any") ?? [])];
    if (onfail.length > 0 && !onfail.some(bad)) return { status: "notrun", reason: "onfail_not_met" };
    const onfailAll = byKind.get("onfail_all");
    if (onfailAll && onfailAll.length > 0 && !onfailAll.every(bad))
      return { status: "notrun", reason: "onfail_not_met" };
    const triggered =
      (watch?.some(changed) ?? false) || (watchAny?.some((t) => !bad(t) && changed(t)) ?? false);
    return { status: "run", watchTriggered: triggered };
  }

  private skip(i: number, started: number, skip: Skip): void {
    const r = this.base(this.states[i]!);
    r.result = skip.status === "notrun";
    r.skipped = true;
    r.skip_reason = skip.reason;
    r.comment = skip.comment ?? SKIP_SENTENCES[skip.reason];
    r.duration_ms = performance.now() - started;
    this.record(i, r);
  }

  /** One state: requisites, prereqs, guards, then attempts (retry, watch, check_cmd). */
  private async execute(i: number): Promise<void> {
    const s = this.states[i]!;
    const started = performance.now();
    const decision = this.decide(i);
    if (decision.status !== "run") return this.skip(i, started, decision);
    const prereq = await this.prereqs(s);
    if (prereq) return this.skip(i, started, prereq);
    const fn = this.program.functions.get(s.fun)!;
    const ctx = this.context(s);
    try {
      const guard = await this.guards(s, ctx);
      if (guard) return this.skip(i, started, guard);
    } catch (err) {
      const r = this.failure(i, `onlyif/unless failed: ${errText(err)}`);
      r.duration_ms = performance.now() - started;
      this.record(i, r);
      return;
    }
    let a = await this.attemptWithRetry(fn, s, ctx);
    if (this.test && !a.result) a = this.deferToPendingRequisites(s, a);
    if (a.result && !a.changed && !a.pending && decision.watchTriggered && fn.watch) {
      const w = await this.attempt(fn, s, ctx, true);
      a = { ...w, comment: [a.comment, w.comment].filter(Boolean).join("\n") };
    }
    if (!this.test && s.checkCmd.length > 0) a = await this.checkCmd(s, a, ctx);
    const r = this.base(s);
    r.result = a.result;
    r.changed = a.changed;
    r.comment = a.comment;
    r.changes = a.changes;
    if (a.diff !== undefined) r.diff = a.diff;
    if (a.pending) r.pending = true;
    r.duration_ms = performance.now() - started;
    this.record(i, r);
  }

  /**
   * prereq: the state runs only if a target would change, judged by a dry run of the target.
   * Returns the skip when it must not run.
   */
  private async prereqs(s: CompiledState): Promise<Skip | undefined> {
    for (const r of s.requisites) {
      if (r.kind !== "prereq") continue;
      let anyChange = false;
      for (const t of r.targets) {
        const verdict = this.decide(t, true);
        if (verdict.status === "blocked") {
          return {
            status: "blocked",
            reason: "prereq_failed",
            comment: `prereq ${this.states[t]!.name} cannot run`,
          };
        }
        if (verdict.status === "notrun") continue;
        const target = this.states[t]!;
        try {
          const plan = await this.program.functions
            .get(target.fun)!
            .plan(target.params, { ...this.context(target), test: true });
          if (plan.failed) {
            return {
              status: "blocked",
              reason: "prereq_failed",
              comment: `prereq ${target.name} would fail: ${plan.comment}`,
            };
          }
          if (Object.keys(plan.changes).length > 0) anyChange = true;
        } catch (err) {
          return {
            status: "blocked",
            reason: "prereq_failed",
            comment: `prereq ${target.name} failed to plan: ${errText(err)}`,
          };
        }
      }
      if (!anyChange) return { status: "notrun", reason: "prereq_not_met" };
    }
    return undefined;
  }

  /** Salt's retry: attempts until the result is `until`, each comment naming the previous one. */
  private async attemptWithRetry(fn: StateFunction, s: CompiledState, ctx: ModuleContext): Promise<Attempt> {
    let a = await this.attempt(fn, s, ctx, false);
    if (!s.retry) return a;
    const { attempts, interval, until } = s.retry;
    for (let n = 2; n <= attempts && a.result !== until; n++) {
      if (interval > 0) await delay(interval * 1000);
      const prev = a.comment;
      a = await this.attempt(fn, s, ctx, false);
      a.comment = `Attempt ${n}: ${a.comment}${prev ? ` (previous: ${prev})` : ""}`;
    }
    return a;
  }

  /**
   * In a dry run a state's check can fail only because something it depends on has not been
   * applied yet (no package → no config dir, no user → no home). When a requisite would change,
   * report the state as pending on it, as Salt's `None`, instead of as a failure.
   */
  private deferToPendingRequisites(s: CompiledState, a: Attempt): Attempt {
    const waiting = new Set<string>();
    for (const req of s.requisites) {
      for (const t of req.targets) {
        const o = this.outcomes[t];
        if (o?.status === "ok" && o.changed) waiting.add(this.states[t]!.name);
      }
    }
    if (waiting.size === 0) return a;
    return {
      ...a,
      result: true,
      pending: true,
      comment: `Would be checked after ${[...waiting].join(", ")} apply; now: ${a.comment}`,
    };
  }

  /** Salt's check_cmd: after the state ran, each command's exit code decides its result. */
  private async checkCmd(s: CompiledState, a: Attempt, ctx: ModuleContext): Promise<Attempt> {
    const out = { ...a };
    for (const cmd of s.checkCmd) {
      let code: number;
      try {
        code = (await runCommand(cmd, ctx.signal ? { signal: ctx.signal } : {})).retcode;
      } catch (err) {
        code = -1;
        out.comment = `${out.comment}\ncheck_cmd ${cmd} could not start: ${errText(err)}`;
      }
      if (code === 0 && !out.result) {
        out.result = true;
        out.comment = `${out.comment}\ncheck_cmd determined the state succeeded`;
      } else if (code !== 0) {
        out.result = false;
        out.comment = `${out.comment}\ncheck_cmd determined the state failed`;
      }
    }
    return out;
  }

  private attempt(fn: StateFunction, s: CompiledState, ctx: ModuleContext, watch: boolean): Promise<Attempt> {
    const rec = this.opts.recorder;
    if (!rec) return attemptState(fn, s.params, ctx, { watch });
    const info: UndoStateInfo = { name: s.name, id: s.id, fun: s.fun };
    if (s.sls) info.sls = s.sls;
    if (ctx.signal) info.signal = ctx.signal;
    return attemptState(fn, s.params, ctx, { watch, recorder: { rec, info } });
  }

  private async guards(s: CompiledState, ctx: ModuleContext): Promise<Skip | undefined> {
    for (const g of s.onlyif) {
      if (!(await this.guard(g, ctx)))
        return { status: "notrun", reason: "onlyif", comment: `${SKIP_SENTENCES.onlyif}: ${show(g)}` };
    }
    if (s.unless.length > 0) {
      let all = true;
      for (const g of s.unless) {
        if (!(await this.guard(g, ctx))) {
          all = false;
          break;
        }
      }
      if (all)
        return {
          status: "notrun",
          reason: "unless",
          comment: `${SKIP_SENTENCES.unless}: ${s.unless.map(show).join("; ")}`,
        };
    }
    return undefined;
  }

  private async guard(g: Guard, ctx: ModuleContext): Promise<boolean> {
    if ("cmd" in g) {
      const opts = ctx.signal ? { signal: ctx.signal } : {};
      return (await runCommand(g.cmd, opts)).retcode === 0;
    }
    const v = await callExec(g.fun, [], g.args, ctx);
    if (v && typeof v === "object" && "retcode" in v) return (v as { retcode: unknown }).retcode === 0;
    return Boolean(v);
  }

  /** listen: once everything ran, fire the watch action of each listener whose target changed. */
  private async listeners(): Promise<StateResult[]> {
    const out: StateResult[] = [];
    for (const s of this.states) {
      const targets: number[] = [];
      for (const r of s.requisites) if (r.kind === "listen") targets.push(...r.targets);
      if (targets.length === 0) continue;
      const own = this.outcomes[s.index];
      if (own?.status !== "ok") continue;
      if (!targets.some((t) => this.outcomes[t]?.status === "ok" && this.outcomes[t]!.changed)) continue;
      const fn = this.program.functions.get(s.fun)!;
      if (!fn.watch) continue;
      const started = performance.now();
      const a = await this.attempt(fn, s, this.context(s), true);
      const r = this.base(s);
      r.run_num = ++this.runNum;
      r.id = `listener_${s.id}`;
      r.name = `${s.fun}:listener_${s.id}`;
      r.result = a.result;
      r.changed = a.changed;
      r.comment = a.comment;
      r.changes = a.changes;
      if (a.pending) r.pending = true;
      r.duration_ms = performance.now() - started;
      r.started_at = startedAt(r.duration_ms);
      this.opts.onResult?.(r);
      out.push(r);
    }
    return out;
  }
}

export interface AttemptOptions {
  /** Run the state's watch behaviour (Salt's mod_watch) instead of its plan. */
  watch?: boolean;
  /** A real run that keeps pre-images for `state.revert`: told before and after each apply. */
  recorder?: { rec: StateUndoRecorder; info: UndoStateInfo };
}

/**
 * One plan, then its apply unless `ctx.test`: the engine's one copy of this rule (module tests
 * run it too, test/support/module-context.ts). Module exceptions become failed attempts.
 */
export async function attemptState(
  fn: StateFunction,
  params: Params,
  ctx: ModuleContext,
  opts: AttemptOptions = {},
): Promise<Attempt> {
  try {
    const plan = opts.watch ? await fn.watch!(params, ctx) : await fn.plan(params, ctx);
    const base: Attempt = {
      result: !plan.failed,
      changed: false,
      pending: false,
      comment: plan.comment,
      changes: plan.changes,
    };
    if (plan.diff !== undefined) base.diff = plan.diff;
    if (isFailedPlan(plan)) return base;
    if (!plan.apply) return ctx.test && plan.pending ? { ...base, result: true, pending: true } : base;
    if (Object.keys(plan.changes).length === 0) return base;
    if (ctx.test) return { ...base, pending: true };
    const rec = opts.recorder;
    if (rec) {
      try {
        await rec.rec.before(rec.info, plan.undo ?? { cannot: cannotRevert(fn) });
      } catch (err) {
        return {
          ...base,
          result: false,
          comment: `Not applied: the pre-image for state.revert could not be kept: ${errText(err)}`,
        };
      }
    }
    const out = await plan.apply();
    const changes = out?.changes ?? plan.changes;
    // The post-image tells a later revert whether the resource changed again; without it a
    // revert refuses (unless forced), which is the safe side.
    if (rec) await rec.rec.after(rec.info, Object.keys(changes).length > 0).catch(() => {});
    return {
      ...base,
      result: out?.result ?? true,
      changes,
      changed: Object.keys(changes).length > 0,
      comment: out?.comment ?? plan.comment,
    };
  } catch (err) {
    return { result: false, changed: false, pending: false, comment: errText(err), changes: {} };
  }
}

function show(g: Guard): string {
  return "cmd" in g ? g.cmd : `${g.fun}`;
}

/** The wall-clock start of a state that has just ended after `durationMs`. */
function startedAt(durationMs: number): string {
  return new Date(Date.now() - durationMs).toISOString();
}
