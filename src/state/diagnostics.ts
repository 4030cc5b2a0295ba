/** A position in a source file; line and column are 1-based. */
export interface SourcePos {
  file: string;
  line: number;
  col: number;
}

export type DiagnosticKind =
  | "template"
  | "yaml"
  | "structure"
  | "unknown-module"
  | "unknown-function"
  | "param"
  | "requisite"
  | "cycle"
  | "include"
  | "duplicate";

/** One problem found while compiling; all of them are reported together before anything runs. */
export interface Diagnostic {
  kind: DiagnosticKind;
  message: string;
  file: string;
  line: number;
  col: number;
  /** The state id the problem belongs to, when there is one. */
  id?: string;
  /** A few lines of source around the position, with a caret. */
  excerpt?: string;
}

/** Thrown when a states tree cannot be compiled; nothing has been executed. */
export class CompileError extends Error {
  override name = "CompileError";
  constructor(readonly diagnostics: Diagnostic[]) {
    super(formatDiagnostics(diagnostics));
  }
}

/** Two lines of context and a caret under the column, like compilers do. */
export function excerpt(text: string, line: number, col: number): string {
  const lines = text.split("\n");
  const from = Math.max(1, line - 1);
  const to = Math.min(lines.length, line + 1);
  const width = String(to).length;
  const out: string[] = [];
  for (let n = from; n <= to; n++) {
    out.push(`${String(n).padStart(width)} | ${lines[n - 1] ?? ""}`);
    if (n === line) out.push(`${" ".repeat(width)} | ${" ".repeat(Math.max(0, col - 1))}^`);
  }
  return out.join("\n");
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = `${d.file}:${d.line}:${d.col}`;
  const id = d.id !== undefined ? ` [${d.id}]` : "";
  const body = `${where}: ${d.kind} error${id}: ${d.message}`;
  return d.excerpt ? `${body}\n${d.excerpt}` : body;
}

export function formatDiagnostics(ds: readonly Diagnostic[]): string {
  const n = ds.length;
  return `${n} compile error${n === 1 ? "" : "s"}:\n${ds.map(formatDiagnostic).join("\n\n")}`;
}
