/**
 * The requisite graph, built once in O(V+E): node i is state i, an edge points from a state to
 * what waits for it. `order` is not an edge: Salt lets requisites override it, so it only ranks
 * states in Salt's order (order.ts).
 */

export interface GraphInput {
  index: number;
  requisites: readonly { kind: string; targets: readonly number[] }[];
}

export interface Graph {
  /** Real states. */
  stateCount: number;
  /** Equal to stateCount. */
  nodeCount: number;
  /** Successors: node → nodes that wait for it. */
  succ: number[][];
  /** Number of predecessors of each node. */
  indegree: number[];
  /** Cycles found (as real-state paths); empty when the graph is a DAG. */
  cycles: number[][];
}

export function buildGraph(states: readonly GraphInput[]): Graph {
  const n = states.length;
  const succ: number[][] = Array.from({ length: n }, () => []);
  const indegree: number[] = new Array<number>(n).fill(0);
  const edge = (from: number, to: number) => {
    succ[from]!.push(to);
    indegree[to]!++;
  };
  for (const s of states) {
    for (const r of s.requisites) {
      if (r.kind === "listen") continue;
      for (const t of r.targets) {
        if (r.kind === "prereq") {
          // The prereq'ing state runs before its target, once the target's own inputs are done,
          // so the target's dry run is meaningful.
          edge(s.index, t);
          for (const tr of states[t]!.requisites) {
            if (tr.kind === "listen" || tr.kind === "prereq") continue;
            for (const x of tr.targets) if (x !== s.index) edge(x, s.index);
          }
        } else {
          edge(t, s.index);
        }
      }
    }
  }
  const cycles = findCycles(succ, indegree, n);
  return { stateCount: n, nodeCount: succ.length, succ, indegree, cycles };
}

/** Kahn's algorithm; whatever is left sits on or behind a cycle, found with Tarjan's SCCs. */
function findCycles(succ: number[][], indegree: readonly number[], stateCount: number): number[][] {
  const total = succ.length;
  const deg = indegree.slice();
  const queue: number[] = [];
  for (let i = 0; i < total; i++) if (deg[i] === 0) queue.push(i);
  let done = 0;
  for (let h = 0; h < queue.length; h++) {
    done++;
    for (const m of succ[queue[h]!]!) if (--deg[m]! === 0) queue.push(m);
  }
  if (done === total) return [];
  const left = new Uint8Array(total);
  for (let i = 0; i < total; i++) if (deg[i]! > 0) left[i] = 1;
  const cycles: number[][] = [];
  for (const scc of tarjan(succ, left)) {
    if (scc.length < 2) continue;
    const path = shortestCycle(succ, scc);
    const real = path.filter((i) => i < stateCount);
    if (real.length > 0) cycles.push(real);
  }
  return cycles;
}

function tarjan(succ: number[][], include: Uint8Array): number[][] {
  const total = succ.length;
  const index = new Int32Array(total).fill(-1);
  const low = new Int32Array(total);
  const onStack = new Uint8Array(total);
  const stack: number[] = [];
  const out: number[][] = [];
  let counter = 0;
  for (let root = 0; root < total; root++) {
    if (!include[root] || index[root] !== -1) continue;
    const work: [number, number][] = [[root, 0]];
    index[root] = low[root] = counter++;
    stack.push(root);
    onStack[root] = 1;
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const [v, i] = frame;
      const edges = succ[v]!;
      if (i < edges.length) {
        frame[1]++;
        const w = edges[i]!;
        if (!include[w]) continue;
        if (index[w] === -1) {
          index[w] = low[w] = counter++;
          stack.push(w);
          onStack[w] = 1;
          work.push([w, 0]);
        } else if (onStack[w]) {
          low[v] = Math.min(low[v]!, index[w]!);
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low[parent[0]] = Math.min(low[parent[0]]!, low[v]!);
      if (low[v] === index[v]) {
        const comp: number[] = [];
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = 0;
          comp.push(w);
        } while (w !== v);
        out.push(comp);
      }
    }
  }
  return out;
}

/** BFS inside one strongly connected component from its smallest node back to itself. */
function shortestCycle(succ: number[][], scc: number[]): number[] {
  const inScc = new Set(scc);
  const start = Math.min(...scc);
  const parent = new Map<number, number>();
  const queue = [start];
  for (let h = 0; h < queue.length; h++) {
    const v = queue[h]!;
    for (const w of succ[v]!) {
      if (!inScc.has(w)) continue;
      if (w === start) {
        const path = [v];
        let cur = v;
        while (cur !== start) {
          cur = parent.get(cur)!;
          path.push(cur);
        }
        return path.reverse();
      }
      if (!parent.has(w)) {
        parent.set(w, v);
        queue.push(w);
      }
    }
  }
  return scc;
}
