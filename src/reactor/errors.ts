/** Problems in reactor files, each with the file and the 1-based line and column it is at. */
import { LineCounter, type Node, parseDocument } from "yaml";

export interface ReactorProblem {
  file: string;
  line: number;
  col: number;
  message: string;
}

export function problemText(p: ReactorProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.message}`;
}

/** One or more problems; the message lists them all, one per line. */
export class ReactorFileError extends Error {
  override name = "ReactorFileError";
  constructor(readonly problems: ReactorProblem[]) {
    super(problems.map(problemText).join("\n"));
  }
}

export interface PositionedYaml {
  contents: Node | null;
  /** Where a node starts (line 1 col 1 for a missing node). */
  at(node: Node | null | undefined): { line: number; col: number };
}

/** Parses YAML keeping positions; a syntax error becomes a ReactorFileError at its place. */
export function parseYamlAt(text: string, file: string): PositionedYaml {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ReactorFileError(
      doc.errors.map((e) => {
        const p = lines.linePos(e.pos[0]);
        return { file, line: p.line, col: p.col, message: e.message.split("\n")[0]! };
      }),
    );
  }
  return {
    contents: doc.contents as Node | null,
    at(node) {
      const off = node?.range?.[0];
      if (off === undefined) return { line: 1, col: 1 };
      const p = lines.linePos(off);
      return { line: p.line, col: p.col };
    },
  };
}
