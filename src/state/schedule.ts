/**
 * The conflict-aware schedule. A run's outcome must be the outcome of running its states one at a
 * time in Salt's order (order.ts); overlapping two states is allowed only when that cannot change
 * it. So each state waits for its requisites and for every earlier state (in Salt's order) whose
 * footprint overlaps its own. A state with an unknown footprint is a barrier: it waits for
 * everything before it and everything after it waits for it.
 *
 * Conflicts are found in one sweep over Salt's order with a trie of resources (path components,
 * or `kind`/`name`): each node keeps its last writer and the readers since. A writer waits for the
 * writers and readers on its path and below it; a reader waits for the writers only. Waiting on
 * the last writer is enough: that writer already waited for everything before it.
 */
import { posix } from "node:path";
import type { Footprint, Resource } from "../modules/types.js";
import type { CompiledState, Program } from "./compile.js";
import { saltOrder } from "./order.js";

/** Why one state waits for an earlier one. */
export type Wait =
  | { on: number; why: "requisite"; kind: string }
  /** One of the two runs alone: unknown footprint, failhard, or an explicit `order:`. */
  | { on: number; why: "sequence"; alone: number; because: AloneReason }
  | { on: number; why: "footprint"; mine: Resource; theirs: Resource };

export type AloneReason = "unknown footprint" | "failhard" | "order" | "guard";

export interface Schedule {
  /** State indexes in Salt's order. */
  seq: number[];
  /** Position of each state in `seq`. */
  pos: number[];
  /** What each state waits for (deduplicated by `on`, first reason kept). */
  waits: Wait[][];
  /** state → states that wait for it. */
  succ: number[][];
  indegree: number[];
}

export interface ScheduleOptions {
  /** Every state runs alone (a run-level failhard). */
  sequential?: boolean;
}

interface Op {
  state: number;
  res: Resource;
  /** Set when this op makes its state run alone. */
  alone?: AloneReason;
}

interface TrieNode {
  children: Map<string, TrieNode>;
  writer?: Op;
  readers: Op[];
}

/** A private key under the root, for a state that touches nothing shared. */
const ownKey = (i: number) => `\u0000:${i}` as Resource;

const node = (): TrieNode => ({ children: new Map(), readers: [] });

function components(res: Resource): string[] {
  if (res === "*") return [];
  if (res.startsWith("/")) {
    const norm = posix.normalize(res);
    return ["/", ...norm.split("/").filter((c) => c !== "")];
  }
  const colon = res.indexOf(":");
  return colon < 0 ? [res] : [res.slice(0, colon), res.slice(colon + 1)];
}

/** The footprint the scheduler uses for one state: the module's, plus what the engine adds. */
function effectiveOps(
  s: CompiledState,
  fps: readonly (Footprint | undefined)[],
  opts: ScheduleOptions,
): { writes: Op[]; reads: Op[] } {
  const i = s.index;
  const fp = fps[i];
  const writes: Op[] = [];
  const reads: Op[] = [];
  const alone = (because: AloneReason) => writes.push({ state: i, res: "*", alone: because });
  if (opts.sequential || s.failhard) alone("failhard");
  else if (s.order !== undefined) alone("order");
  else if (!fp && !s.parallel) alone("unknown footprint");
  if (fp) {
    for (const r of fp.writes) writes.push({ state: i, res: r });
    for (const r of fp.reads ?? []) reads.push({ state: i, res: r });
  }
  // A shell guard or a check command can look at anything earlier states wrote.
  if (!s.parallel && (s.onlyif.length > 0 || s.unless.length > 0 || s.checkCmd.length > 0))
    reads.push({ state: i, res: "*", alone: "guard" });
  // A prereq judges its targets by a dry run, so it sees what they would see.
  for (const r of s.requisites) {
    if (r.kind !== "prereq") continue;
    for (const t of r.targets) {
      const tf = fps[t];
      if (!tf) reads.push({ state: i, res: "*", alone: "unknown footprint" });
      else for (const x of [...tf.writes, ...(tf.reads ?? [])]) reads.push({ state: i, res: x });
    }
  }
  return { writes, reads };
}

export function footprints(program: Program): (Footprint | undefined)[] {
  return program.states.map((s) => {
    const fn = program.functions.get(s.fun);
    if (!fn?.footprint) return undefined;
    try {
      return fn.footprint(s.params);
    } catch {
      return undefined;
    }
  });
}

export function buildSchedule(program: Program, opts: ScheduleOptions = {}): Schedule {
  const states = program.states;
  const n = states.length;
  const seq = saltOrder(states, program.graph);
  const pos = new Array<number>(n);
  seq.forEach((s, p) => {
    pos[s] = p;
  });
  const waits: Wait[][] = Array.from({ length: n }, () => []);
  const seen: Set<number>[] = Array.from({ length: n }, () => new Set());
  const add = (i: number, w: Wait) => {
    if (w.on === i || seen[i]!.has(w.on)) return;
    seen[i]!.add(w.on);
    waits[i]!.push(w);
  };
  for (const s of states) {
    for (const r of s.requisites) {
      if (r.kind === "listen") continue;
      for (const t of r.targets) {
        // A prereq'ing state runs before its target: the edge points the other way.
        if (r.kind === "prereq") add(t, { on: s.index, why: "requisite", kind: "prereq" });
        else add(s.index, { on: t, why: "requisite", kind: r.kind });
      }
    }
  }
  // Requisite edges from the graph cover prereq's extra edges (the target's own inputs).
  for (let from = 0; from < n; from++) {
    for (const to of program.graph.succ[from] ?? []) {
      if (to < n) add(to, { on: from, why: "requisite", kind: "require" });
    }
  }

  const fps = footprints(program);
  const root = node();
  const conflict = (mine: Op, theirs: Op | undefined) => {
    if (!theirs || theirs.state === mine.state) return;
    const i = mine.state;
    if (theirs.alone)
      add(i, { on: theirs.state, why: "sequence", alone: theirs.state, because: theirs.alone });
    else if (mine.alone) add(i, { on: theirs.state, why: "sequence", alone: i, because: mine.alone });
    else add(i, { on: theirs.state, why: "footprint", mine: mine.res, theirs: theirs.res });
  };
  const walk = (comps: string[]): TrieNode[] => {
    const path = [root];
    let cur = root;
    for (const c of comps) {
      let next = cur.children.get(c);
      if (!next) {
        next = node();
        cur.children.set(c, next);
      }
      path.push(next);
      cur = next;
    }
    return path;
  };
  const below = (t: TrieNode, visit: (d: TrieNode) => void) => {
    const stack = [...t.children.values()];
    while (stack.length > 0) {
      const d = stack.pop()!;
      visit(d);
      for (const c of d.children.values()) stack.push(c);
    }
  };
  for (const i of seq) {
    const { writes, reads } = effectiveOps(states[i]!, fps, opts);
    // A state that touches nothing still may not overtake a barrier (nor be overtaken by one).
    if (writes.length === 0 && reads.length === 0) reads.push({ state: i, res: ownKey(i) });
    for (const op of reads) {
      const path = walk(components(op.res));
      for (const t of path) conflict(op, t.writer);
      const last = path[path.length - 1]!;
      below(last, (d) => conflict(op, d.writer));
      last.readers.push(op);
    }
    for (const op of writes) {
      const path = walk(components(op.res));
      for (const t of path) {
        conflict(op, t.writer);
        for (const r of t.readers) conflict(op, r);
      }
      const last = path[path.length - 1]!;
      below(last, (d) => {
        conflict(op, d.writer);
        for (const r of d.readers) conflict(op, r);
      });
      // Whatever later touches this subtree meets this writer, which waited for all of it.
      last.children.clear();
      last.writer = op;
      last.readers = [];
    }
  }

  const succ: number[][] = Array.from({ length: n }, () => []);
  const indegree = new Array<number>(n).fill(0);
  for (let i = 0; i < n; i++) {
    for (const w of waits[i]!) {
      succ[w.on]!.push(i);
      indegree[i]!++;
    }
  }
  return { seq, pos, waits, succ, indegree };
}
