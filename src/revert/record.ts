/**
 * A kept run: for every state that changed the machine, the pre-image of each resource it
 * changed (what restores it) and the post-image the run left (what tells a later revert whether
 * the resource changed again). Stored on the machine that ran (src/revert/store.ts), never sent
 * over the bus: pre-images hold file contents and password hashes.
 */
import type { UndoRef } from "../modules/types.js";

/** A resource as observe() sees it: small, comparable JSON (file content by digest). */
export type Observed = null | boolean | number | string | Observed[] | { [k: string]: Observed };

/** What restore needs: the observed state plus kept data (content, hashes). */
export interface PreImage {
  state: Observed;
  data?: Observed;
}

export interface RecordedRef {
  ref: UndoRef;
  before: PreImage;
  /** Observed right after the state applied; undefined while it runs. */
  after?: Observed;
}

export interface RecordedState {
  /** `<module.function>:<id>` as in the run's results. */
  name: string;
  id: string;
  fun: string;
  sls?: string;
  /** Apply order within the run (1-based); revert goes from the highest down. */
  seq: number;
  refs: RecordedRef[];
  /** Set when the change cannot be undone: why (a command ran, a removed tree is not kept, ...). */
  cannot?: string;
}

export interface RunRecord {
  v: 1;
  /** The job id on a peel; a KSUID of its own for `zester local`. */
  id: string;
  /** What ran: `state.apply web`, `file.managed /etc/motd`. */
  fun: string;
  args?: string[];
  machine: string;
  started_at: string;
  finished_at: string;
  states: RecordedState[];
}

/** How a finished run's return announces its revert (PeelReturn.revert, the CLI's summary). */
export interface RevertNote {
  run: string;
  /** States whose change a revert restores. */
  states: number;
  /** States that changed the machine but cannot be reverted. */
  cannot: number;
  /** The run could not be kept (its pre-images could not be stored): why. Nothing is revertable then. */
  error?: string;
}

export function revertNote(rec: RunRecord): RevertNote {
  const cannot = rec.states.filter((s) => s.cannot !== undefined && s.refs.length === 0).length;
  return { run: rec.id, states: rec.states.length - cannot, cannot };
}

/** JSON with sorted keys: equal observations give equal strings. */
export function canonical(v: Observed | undefined): string {
  if (v === undefined) return "undefined";
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  return `{${Object.keys(v)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
    .join(",")}}`;
}

export function sameObserved(a: Observed | undefined, b: Observed | undefined): boolean {
  return canonical(a) === canonical(b);
}

/** What differs between two observations, field by field ("mode 0644 → 0600"), for refusals. */
export function differences(then: Observed | undefined, now: Observed | undefined): string[] {
  const isMap = (x: Observed | undefined): x is { [k: string]: Observed } =>
    x !== null && x !== undefined && typeof x === "object" && !Array.isArray(x);
  if (!isMap(then) || !isMap(now)) return [`${short(then)} → ${short(now)}`];
  const out: string[] = [];
  for (const k of [...new Set([...Object.keys(then), ...Object.keys(now)])].sort()) {
    if (canonical(then[k]) === canonical(now[k])) continue;
    // Digests say only that something changed: the content, the password hash.
    if (k === "sha256") out.push("content");
    else if (k === "password") out.push("password");
    else out.push(`${k} ${short(then[k])} → ${short(now[k])}`);
  }
  return out;
}

function short(v: Observed | undefined): string {
  if (v === undefined || v === null) return "none";
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
