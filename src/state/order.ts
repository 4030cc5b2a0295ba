/**
 * Salt's order: the sequence in which Salt would run a compiled program one state at a time.
 * It is the reference every run must match; the scheduler only overlaps states whose overlap
 * cannot change that outcome.
 *
 * Each state has an own rank: its `order:` if given (`first` = 0, `last` and negative numbers after
 * everything), else its declaration position (state_auto_order: Salt numbers declarations from
 * 10000 on, an included file's states before the including file's own). A state is pulled forward
 * to the rank of its earliest direct dependent, then the requisite graph is walked in that order,
 * a state running as soon as everything it requires has run (a lexicographic topological sort,
 * ties broken on Salt's `<module><name><function>` label).
 */

import { MinHeap } from "../util/heap.js";
import type { CompiledState } from "./compile.js";
import type { Graph } from "./graph.js";

/** Salt's first automatic order number: explicit `order: N` below it runs before declarations. */
export const AUTO_ORDER_BASE = 10000;

interface Key {
  effective: number;
  own: number;
  label: string;
  index: number;
}

function compareKeys(a: Key, b: Key): number {
  if (a.effective !== b.effective) return a.effective - b.effective;
  if (a.own !== b.own) return a.own - b.own;
  if (a.label !== b.label) return a.label < b.label ? -1 : 1;
  return a.index - b.index;
}

/** Salt's numeric rank of one state, given the cap above every numbered state. */
function ownRank(s: CompiledState, cap: number): number {
  let o = s.order ?? AUTO_ORDER_BASE + s.autoOrder;
  if (o === Number.NEGATIVE_INFINITY) o = 0;
  else if (o === Number.POSITIVE_INFINITY) o = cap + 1000000;
  else if (o < 0) o += cap + 1000000;
  return o + (s.nameOrder ?? 0) / 10000;
}

/** Salt's cap: 100 above the highest positive order number in the program. */
function rankCap(states: readonly CompiledState[]): number {
  let cap = 1;
  for (const s of states) {
    const o = s.order ?? AUTO_ORDER_BASE + s.autoOrder;
    if (Number.isFinite(o) && o > 0 && o > cap - 1) cap = Math.floor(o) + 100;
  }
  return cap;
}

function label(s: CompiledState): string {
  const [mod, fun] = s.fun.split(".") as [string, string];
  const name = s.params.name ?? s.id;
  return `${mod}${typeof name === "string" ? name : JSON.stringify(name)}${fun}`;
}

/** State indexes in Salt's one-at-a-time order. The graph must be acyclic. */
export function saltOrder(states: readonly CompiledState[], graph: Graph): number[] {
  const n = states.length;
  const cap = rankCap(states);
  const own = states.map((s) => ownRank(s, cap));
  const keys: Key[] = states.map((s, i) => {
    let effective = own[i]!;
    for (const d of graph.succ[i] ?? []) if (d < n && own[d]! < effective) effective = own[d]!;
    return { effective, own: own[i]!, label: label(s), index: i };
  });
  const indeg = new Array<number>(n).fill(0);
  for (let i = 0; i < n; i++) for (const d of graph.succ[i] ?? []) if (d < n) indeg[d]!++;
  const ready = new MinHeap<Key>(compareKeys);
  for (let i = 0; i < n; i++) if (indeg[i] === 0) ready.push(keys[i]!);
  const out: number[] = [];
  while (ready.size > 0) {
    const k = ready.pop()!;
    out.push(k.index);
    for (const d of graph.succ[k.index] ?? []) if (d < n && --indeg[d]! === 0) ready.push(keys[d]!);
  }
  // A cycle would leave states out; compile refuses cyclic programs, so this is a guard only.
  if (out.length < n) for (let i = 0; i < n; i++) if (indeg[i]! > 0) out.push(i);
  return out;
}
