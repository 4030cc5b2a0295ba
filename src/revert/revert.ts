/**
 * `state.revert`: undoes a kept run, last change first. For each resource a state changed, the
 * resource now is compared with what the run left (its post-image): unchanged since, it is put
 * back to its pre-image; changed again, the state is refused with what differs, unless
 * force=true. A dry run (test) plans every restore and shows its diff, changing nothing.
 * Each state's revert is reported as a StateResult, so every output format and exit code is the
 * one of a normal run.
 */
import type { ChangePlan, Plan, UndoRef } from "../modules/types.js";
import { isFailedPlan } from "../modules/types.js";
import type { StateResult } from "../state/result.js";
import { errnoText } from "../util/errors.js";
import { revertKind } from "./kinds/index.js";
import { canonical, differences, type Observed, type RecordedState, type RunRecord } from "./record.js";
import type { RevertStore } from "./store.js";

export interface RevertOptions {
  test?: boolean;
  force?: boolean;
  signal?: AbortSignal;
  onResult?: (r: StateResult) => void;
}

/** Reverts a run; results in revert order (the run's last change first). */
export async function revertRun(
  store: RevertStore,
  rec: RunRecord,
  opts: RevertOptions = {},
): Promise<StateResult[]> {
  const order = [...rec.states].sort((a, b) => b.seq - a.seq);
  // A dry run changes nothing, so a resource two states changed is judged as the earlier
  // restores would leave it.
  const virtual = new Map<string, Observed>();
  // What each resource was before the whole run (the first state that changed it): a resource
  // found like that is already reverted, whichever of the run's states is being undone.
  const original = new Map<string, Observed>();
  for (const s of [...rec.states].sort((a, b) => a.seq - b.seq))
    for (const x of s.refs) {
      const k = refKey(x.ref);
      if (!original.has(k)) original.set(k, x.before.state);
    }
  const out: StateResult[] = [];
  let n = 0;
  for (const s of order) {
    const started = performance.now();
    const r = await revertState(store, s, opts, virtual, original);
    r.run_num = ++n;
    r.duration_ms = performance.now() - started;
    opts.onResult?.(r);
    out.push(r);
  }
  return out;
}

/** A state that also did something that cannot be undone (a watch restart) says so. */
function also(s: RecordedState): string {
  return s.cannot === undefined ? "" : `; not reverted: ${s.cannot}`;
}

function refKey(ref: UndoRef): string {
  return `${ref.kind}\0${ref.key}`;
}

function base(s: RecordedState): StateResult {
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
    run_num: 0,
  };
  if (s.sls !== undefined) r.sls = s.sls;
  return r;
}

async function revertState(
  store: RevertStore,
  s: RecordedState,
  opts: RevertOptions,
  virtual: Map<string, Observed>,
  original: ReadonlyMap<string, Observed>,
): Promise<StateResult> {
  const r = base(s);
  if (s.cannot !== undefined && s.refs.length === 0) {
    r.skipped = true;
    r.skip_reason = "cannot_revert";
    r.comment = `cannot be reverted: ${s.cannot}`;
    return r;
  }
  const force = opts.force === true;
  const ctx = { store, force, ...(opts.signal ? { signal: opts.signal } : {}) };
  // Plan every resource first: a refusal anywhere leaves the whole state untouched.
  const plans: { key: string; label: string; plan: ChangePlan; before: Observed }[] = [];
  const notes: string[] = [];
  for (const x of [...s.refs].reverse()) {
    const label = `${x.ref.kind} ${x.ref.key}`;
    const vkey = refKey(x.ref);
    let plan: Plan;
    try {
      const kind = await revertKind(x.ref.kind);
      const now = virtual.has(vkey) ? virtual.get(vkey)! : await kind.observe(x.ref, opts.signal);
      if (canonical(now) === canonical(x.before.state) || canonical(now) === canonical(original.get(vkey))) {
        notes.push(`${label} is as before the run`);
        continue;
      }
      if (canonical(now) !== canonical(x.after) && !force) {
        r.result = false;
        r.comment = `refused: ${label} changed since the run (${differences(x.after, now).join(", ")}); force=true reverts it anyway`;
        return r;
      }
      plan = await kind.restore(x.ref, x.before, now, ctx);
    } catch (err) {
      r.result = false;
      r.comment = `cannot revert ${label}: ${errnoText(err)}`;
      return r;
    }
    if (isFailedPlan(plan)) {
      r.result = false;
      r.comment = `cannot revert ${label}: ${plan.comment}`;
      return r;
    }
    if (!plan.apply || Object.keys(plan.changes).length === 0) {
      notes.push(plan.comment);
      continue;
    }
    plans.push({ key: vkey, label, plan, before: x.before.state });
  }
  if (plans.length === 0) {
    r.comment = `Nothing to revert: ${notes.join("; ") || "no recorded changes"}`;
    return r;
  }
  const multi = plans.length > 1;
  const changes: Record<string, unknown> = {};
  for (const p of plans) {
    if (multi) changes[p.label] = p.plan.changes;
    else Object.assign(changes, p.plan.changes);
  }
  r.changes = changes;
  const diffs = plans.map((p) => p.plan.diff).filter((d): d is string => d !== undefined && d !== "");
  if (diffs.length > 0) r.diff = diffs.join("");
  if (opts.test) {
    for (const p of plans) virtual.set(p.key, p.before);
    r.pending = true;
    r.comment = `Would revert: ${plans.map((p) => p.plan.comment).join("; ")}${also(s)}`;
    return r;
  }
  const done: string[] = [];
  for (const p of plans) {
    const o = await p.plan.apply().catch((err: unknown) => ({ result: false, comment: errnoText(err) }));
    if (o?.result === false) {
      r.result = false;
      r.changed = done.length > 0;
      r.comment = `revert of ${p.label} failed: ${o.comment ?? "unknown error"}${done.length > 0 ? ` (already restored: ${done.join(", ")})` : ""}`;
      return r;
    }
    done.push(p.label);
  }
  r.changed = true;
  r.comment = plans.map((p) => p.plan.comment).join("; ") + also(s);
  return r;
}
