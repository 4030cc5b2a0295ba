/**
 * Keeps pre-images while a run applies: the runner calls before() right before a state's
 * apply() (a failure there fails the state, nothing applied) and after() once it returned.
 * Only states that really changed something end up in the record.
 */
import type { Undo } from "../modules/types.js";
import type { StateUndoRecorder, UndoStateInfo } from "../state/runner.js";
import { revertKind } from "./kinds/index.js";
import type { RecordedState, RunRecord } from "./record.js";
import type { RevertStore } from "./store.js";

export class RunRecorder implements StateUndoRecorder {
  private readonly states = new Map<string, RecordedState>();
  private seq = 0;
  readonly startedAt = new Date().toISOString();

  constructor(private readonly store: RevertStore) {}

  async before(s: UndoStateInfo, undo: Undo): Promise<void> {
    let rec = this.states.get(s.name);
    if (!rec) {
      rec = { name: s.name, id: s.id, fun: s.fun, seq: 0, refs: [] };
      if (s.sls !== undefined) rec.sls = s.sls;
      this.states.set(s.name, rec);
    }
    if ("cannot" in undo) {
      rec.cannot ??= undo.cannot;
      return;
    }
    // A retry or a watch action of the same state: the first pre-image is what the run found.
    for (const ref of undo.refs) {
      if (rec.refs.some((r) => r.ref.kind === ref.kind && r.ref.key === ref.key)) continue;
      rec.refs.push({ ref, before: await (await revertKind(ref.kind)).capture(ref, this.store, s.signal) });
    }
  }

  async after(s: UndoStateInfo, changed: boolean): Promise<void> {
    const rec = this.states.get(s.name);
    if (!rec) return;
    if (changed && rec.seq === 0) rec.seq = ++this.seq;
    for (const r of rec.refs) r.after = await (await revertKind(r.ref.kind)).observe(r.ref, s.signal);
  }

  /** The record of the run, or undefined when nothing changed (nothing to revert). */
  finish(meta: Pick<RunRecord, "id" | "fun" | "machine"> & { args?: string[] }): RunRecord | undefined {
    const states = [...this.states.values()].filter((s) => s.seq > 0).sort((a, b) => a.seq - b.seq);
    if (states.length === 0) return undefined;
    const rec: RunRecord = {
      v: 1,
      id: meta.id,
      fun: meta.fun,
      machine: meta.machine,
      started_at: this.startedAt,
      finished_at: new Date().toISOString(),
      states,
    };
    if (meta.args && meta.args.length > 0) rec.args = meta.args;
    return rec;
  }
}
