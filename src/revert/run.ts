/**
 * The revert entry points `zester local` and the peel share: record a run, keep it, list kept
 * runs, revert one by id.
 */
import { type RunSummary, type StateResult, summarize } from "../state/result.js";
import { errText } from "../util/errors.js";
import { type RevertNote, revertNote } from "./record.js";
import type { RunRecorder } from "./recorder.js";
import { revertRun } from "./revert.js";
import type { RevertStore } from "./store.js";

export { RunRecorder } from "./recorder.js";
export { RevertStore, RunNotFound } from "./store.js";

export interface KeptRun {
  /** What the run's return says: a revert is available, or (error) why it is not. */
  note?: RevertNote;
}

/** Stores what the recorder kept (when the run changed something). Never throws: the run is done. */
export async function keepRun(
  store: RevertStore,
  recorder: RunRecorder,
  meta: { id: string; fun: string; machine: string; args?: string[] },
): Promise<KeptRun> {
  const rec = recorder.finish(meta);
  if (!rec) return {};
  try {
    await store.save(rec);
    return { note: revertNote(rec) };
  } catch (err) {
    return {
      note: {
        run: rec.id,
        states: 0,
        cannot: rec.states.length,
        error: `its pre-images could not be stored in ${store.dir}: ${errText(err)}`,
      },
    };
  }
}

export interface RunListing {
  run: string;
  fun: string;
  args?: string[];
  finished_at: string;
  /** States a revert restores, and those it cannot. */
  states: number;
  cannot: number;
  changed: string[];
}

export async function listRuns(store: RevertStore): Promise<RunListing[]> {
  return (await store.list()).map((r) => {
    const n = revertNote(r);
    const row: RunListing = {
      run: r.id,
      fun: r.fun,
      finished_at: r.finished_at,
      states: n.states,
      cannot: n.cannot,
      changed: r.states.map((s) => s.name),
    };
    if (r.args) row.args = r.args;
    return row;
  });
}

export interface RevertReport {
  results: StateResult[];
  summary: RunSummary;
}

/** Reverts a kept run by id; throws RunNotFound for an id this machine does not keep. */
export async function revertById(
  store: RevertStore,
  id: string,
  opts: { test?: boolean; force?: boolean; signal?: AbortSignal },
): Promise<RevertReport> {
  const started = performance.now();
  const rec = await store.load(id);
  const results = await revertRun(store, rec, opts);
  return { results, summary: summarize(results, performance.now() - started) };
}

/** `force=true` as Salt spells booleans on a command line. */
export function truthy(v: unknown): boolean {
  return v === true || v === "true" || v === "True" || v === 1;
}
