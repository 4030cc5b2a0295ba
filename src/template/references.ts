/**
 * The files a template names in `include`, `import`, `from ... import`, `extends` and Salt's
 * `import_yaml`/`import_json`/`import_text`, found with the engine's own parser (so tags inside
 * `{% raw %}` or comments do not count, and an expression name is told from a literal one).
 */

import { normalizeSource } from "./interp.js";
import { Lexer } from "./lexer.js";
import { type Expr, Parser, type Stmt } from "./parser.js";

export interface TemplateReferences {
  /** Literal names, as written, in source order. */
  names: string[];
  /** Names given by an expression: 1-based position of the tag keyword. */
  dynamic: { line: number; col: number }[];
}

/** undefined when the text does not parse (rendering reports that error where it matters). */
export function templateReferences(text: string): TemplateReferences | undefined {
  let body: Stmt[];
  try {
    body = new Parser(new Lexer(normalizeSource(text).src).tokenize()).parse().body;
  } catch {
    return undefined;
  }
  const found: { template: Expr; line: number; col: number }[] = [];
  const visit = (stmts: Stmt[]): void => {
    for (const s of stmts) {
      switch (s.k) {
        case "include":
        case "import":
        case "from":
        case "extends":
        case "importdata":
          found.push({ template: s.template, line: s.line, col: s.col });
          break;
        case "if":
          visit(s.body);
          visit(s.else);
          break;
        case "for":
          visit(s.body);
          visit(s.else);
          break;
        case "macro":
        case "callblock":
          visit(s.def.body);
          break;
        case "setblock":
        case "filterblock":
        case "with":
        case "block":
        case "load":
          visit(s.body);
          break;
      }
    }
  };
  visit(body);
  found.sort((a, b) => a.line - b.line || a.col - b.col);
  const out: TemplateReferences = { names: [], dynamic: [] };
  for (const f of found) {
    const t = f.template;
    if (t.k === "const" && typeof t.v === "string") out.names.push(t.v);
    else if (t.k === "list" && t.items.every((x) => x.k === "const" && typeof x.v === "string")) {
      for (const x of t.items) out.names.push((x as { v: string }).v);
    } else out.dynamic.push({ line: f.line, col: f.col });
  }
  return out;
}
