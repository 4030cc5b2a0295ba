/**
 * Unified line diff (Myers' O(ND) algorithm) for file states: shows what a state changed or would
 * change. Pure and synchronous; no dependency on the file system.
 */

type Kind = " " | "-" | "+";
interface Op {
  kind: Kind;
  line: string;
}

// A last line without "\n" must differ from the same line with one, or a diff that only adds the
// final newline would be empty.
const NO_EOL = "\u0000no-eol";

function splitLines(text: string): string[] {
  if (text === "") return [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  else lines[lines.length - 1] += NO_EOL;
  return lines;
}

// Beyond this edit distance the trace would cost O(D²) memory; a full replace says as much.
const MAX_EDIT_DISTANCE = 4000;

function myers(a: readonly string[], b: readonly string[]): Op[] | undefined {
  const n = a.length;
  const m = b.length;
  const max = n + m;
  const off = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  for (let d = 0; d <= Math.min(max, MAX_EDIT_DISTANCE); d++) {
    trace.push(v.slice(off - d - 1, off + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x =
        k === -d || (k !== d && v[off + k - 1]! < v[off + k + 1]!) ? v[off + k + 1]! : v[off + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[off + k] = x;
      if (x >= n && y >= m) return backtrack(a, b, trace, d);
    }
  }
  return undefined;
}

function backtrack(a: readonly string[], b: readonly string[], trace: Int32Array[], depth: number): Op[] {
  const ops: Op[] = [];
  let x = a.length;
  let y = b.length;
  for (let d = depth; d >= 0; d--) {
    const v = trace[d]!;
    // trace[d] holds v[-d-1 .. d+1] as it was before step d.
    const at = (k: number) => v[k + d + 1]!;
    const k = x - y;
    let prevK: number;
    if (d === 0) prevK = 0;
    else prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      ops.push({ kind: " ", line: a[x - 1]! });
      x--;
      y--;
    }
    if (d > 0) {
      if (x === prevX) ops.push({ kind: "+", line: b[y - 1]! });
      else ops.push({ kind: "-", line: a[x - 1]! });
    }
    x = prevX;
    y = prevY;
  }
  return ops.reverse();
}

function diffOps(a: readonly string[], b: readonly string[]): Op[] {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const midA = a.slice(start, endA);
  const midB = b.slice(start, endB);
  const mid = myers(midA, midB) ?? [
    ...midA.map((line): Op => ({ kind: "-", line })),
    ...midB.map((line): Op => ({ kind: "+", line })),
  ];
  return [
    ...a.slice(0, start).map((line): Op => ({ kind: " ", line })),
    ...mid,
    ...a.slice(endA).map((line): Op => ({ kind: " ", line })),
  ];
}

function formatLine(op: Op): string {
  if (op.line.endsWith(NO_EOL))
    return `${op.kind}${op.line.slice(0, -NO_EOL.length)}\n\\ No newline at end of file`;
  return op.kind + op.line;
}

function range(start: number, count: number): string {
  // Unified diff convention: an empty range names the line before it.
  if (count === 0) return `${start},0`;
  return count === 1 ? `${start + 1}` : `${start + 1},${count}`;
}

/**
 * Returns a unified diff between two texts, or "" when they are equal. `context` is the number of
 * unchanged lines shown around each change.
 */
export function unifiedDiff(
  before: string,
  after: string,
  fromName = "before",
  toName = "after",
  context = 3,
): string {
  if (before === after) return "";
  const ops = diffOps(splitLines(before), splitLines(after));
  const changed: number[] = [];
  ops.forEach((op, i) => {
    if (op.kind !== " ") changed.push(i);
  });
  if (changed.length === 0) return "";
  const out = [`--- ${fromName}`, `+++ ${toName}`];
  // Line numbers before each op, so a hunk can say where it starts in both files.
  const posA: number[] = [];
  const posB: number[] = [];
  let la = 0;
  let lb = 0;
  for (const op of ops) {
    posA.push(la);
    posB.push(lb);
    if (op.kind !== "+") la++;
    if (op.kind !== "-") lb++;
  }
  let i = 0;
  while (i < changed.length) {
    const first = changed[i]!;
    let last = first;
    while (i + 1 < changed.length && changed[i + 1]! - last <= 2 * context + 1) {
      i++;
      last = changed[i]!;
    }
    i++;
    const from = Math.max(0, first - context);
    const to = Math.min(ops.length - 1, last + context);
    const hunk = ops.slice(from, to + 1);
    const countA = hunk.filter((o) => o.kind !== "+").length;
    const countB = hunk.filter((o) => o.kind !== "-").length;
    out.push(`@@ -${range(posA[from]!, countA)} +${range(posB[from]!, countB)} @@`);
    for (const op of hunk) out.push(formatLine(op));
  }
  return `${out.join("\n")}\n`;
}
