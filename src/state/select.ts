/**
 * A part of a compiled program: the chosen states plus every state that reacts to a change of
 * one of them (watch, onchanges, listen, prereq, in any form), so repairing a drifted file still
 * restarts the service that watches it. Requisites on states left out are dropped: they held in
 * the run the program is a part of.
 */
import type { RequisiteKind } from "../modules/params.js";
import type { CompiledState, Program } from "./compile.js";
import { buildGraph } from "./graph.js";

const REACTS: ReadonlySet<RequisiteKind> = new Set<RequisiteKind>([
  "watch",
  "watch_any",
  "onchanges",
  "onchanges_any",
  "listen",
  "prereq",
]);

/** Throws when a name is not in the program (the tree changed since the names were taken). */
export function selectStates(program: Program, names: ReadonlySet<string>): Program {
  const byName = new Map(program.states.map((s) => [s.name, s.index]));
  const keep = new Set<number>();
  for (const n of names) {
    const i = byName.get(n);
    if (i === undefined) throw new Error(`state ${n} is no longer in the tree`);
    keep.add(i);
  }
  // Reactions to reactions too: a file repaired → a command onchanges → a service watching it.
  for (let grew = true; grew; ) {
    grew = false;
    for (const s of program.states) {
      if (keep.has(s.index)) continue;
      if (s.requisites.some((r) => REACTS.has(r.kind) && r.targets.some((t) => keep.has(t)))) {
        keep.add(s.index);
        grew = true;
      }
    }
  }
  const order = [...keep].sort((a, b) => a - b);
  const newIndex = new Map(order.map((old, i) => [old, i]));
  const states: CompiledState[] = order.map((old, i) => {
    const s = program.states[old]!;
    return {
      ...s,
      index: i,
      requisites: s.requisites
        .map((r) => ({
          ...r,
          targets: r.targets.flatMap((t) => (newIndex.has(t) ? [newIndex.get(t)!] : [])),
        }))
        .filter((r) => r.targets.length > 0),
    };
  });
  const out: Program = { states, functions: program.functions, graph: buildGraph(states) };
  if (program.facts) out.facts = program.facts;
  return out;
}
