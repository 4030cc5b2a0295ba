/**
 * Parsed target expressions. Positions are 1-based columns into the source text so errors and
 * tooling can point at the word that caused them.
 */

/** Where a `G@`/`I@` match reads its data from. */
export type DataSource = "facts" | "settings";

/** `:` is a glob match; the others compare (numerically when both sides are numbers). */
export type DataOp = ":" | ">=" | "<=" | "!=" | ">" | "<";

/** One way to read `a:b:c`: a path into the data and the value to match there. */
export interface DataSplit {
  path: string[];
  value: string;
}

export type TargetNode =
  | { kind: "glob"; pattern: string; column: number }
  | { kind: "regex"; source: string; column: number }
  | { kind: "list"; ids: string[]; column: number }
  | {
      kind: "data";
      source: DataSource;
      op: DataOp;
      /** Candidate readings, shortest path first; the match holds if any reading holds. */
      splits: DataSplit[];
      /** The word as written, e.g. `G@os:Debian`. */
      text: string;
      column: number;
    }
  | { kind: "cidr"; cidr: string; column: number }
  | { kind: "and"; children: TargetNode[] }
  | { kind: "or"; children: TargetNode[] }
  | { kind: "not"; child: TargetNode };

/** What a matcher looks at. `facts` and `settings` are read, never modified. */
export interface PeelView {
  id: string;
  facts: Record<string, unknown>;
  settings?: Record<string, unknown> | undefined;
}
