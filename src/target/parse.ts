/**
 * Target expression parser. One grammar serves the CLI and top.zy:
 *
 *   expr    := and ("or" and)*
 *   and     := unary ("and" unary)*
 *   unary   := "not" unary | primary
 *   primary := "(" expr ")" | word
 *
 * so `not` binds tighter than `and`, which binds tighter than `or`. A word is a glob on the peel
 * id unless it carries a prefix (`G@`, `I@`, `E@`, `L@`, `S@`, `N@`) or a `:` (a bare `key:value` is `G@`). Words end at whitespace; a `)`
 * ends a word only when it has no `(` to close inside that word, so `E@^(web|db)\d+$)` keeps its
 * group and still closes an outer parenthesis.
 */

import { errText } from "../util/errors.js";
import { suggestion } from "../util/suggest.js";
import type { DataOp, DataSource, DataSplit, TargetNode } from "./ast.js";
import { globToRegExp } from "./glob.js";
import { parseCidr } from "./ip.js";

export class TargetSyntaxError extends Error {
  /** One line, without the caret display. */
  readonly summary: string;
  constructor(
    readonly expression: string,
    /** 1-based. */
    readonly column: number,
    readonly reason: string,
    /** Said after the position: suggestions and lists that would bury it. */
    readonly hint = "",
  ) {
    const summary = `target: ${reason} at column ${column}${hint}`;
    super(`${summary}\n  ${expression}\n  ${" ".repeat(Math.max(0, column - 1))}^`);
    this.name = "TargetSyntaxError";
    this.summary = summary;
  }
}

export const TARGET_PREFIXES: Readonly<Record<string, string>> = {
  "G@": "facts",
  "I@": "settings",
  "E@": "id regex",
  "L@": "id list",
  "S@": "CIDR",
  "N@": "nodegroup",
};

/** Salt prefixes Zester does not have, with what to use instead. */
const SALT_ONLY: Readonly<Record<string, string>> = {
  "P@": "Zester has no P@ (fact regex); use G@ with a glob value",
  "J@": "Zester has no J@ (settings regex); use I@ with a glob value",
  "R@": "range expressions are not supported; use L@ or a glob",
};

interface Token {
  type: "(" | ")" | "word";
  text: string;
  column: number;
}

const KEYWORDS = new Set(["and", "or", "not"]);

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const ch = src[i]!;
    if (/\s/.test(ch)) {
      i++;
      continue;
    }
    if (ch === "(" || ch === ")") {
      out.push({ type: ch, text: ch, column: i + 1 });
      i++;
      continue;
    }
    const start = i;
    let depth = 0;
    while (i < src.length && !/\s/.test(src[i]!)) {
      const c = src[i]!;
      if (c === "(") {
        // `not(web*)`: a keyword glued to a parenthesis is still a keyword.
        if (depth === 0 && KEYWORDS.has(src.slice(start, i))) break;
        depth++;
      } else if (c === ")") {
        if (depth === 0) break;
        depth--;
      }
      i++;
    }
    out.push({ type: "word", text: src.slice(start, i), column: start + 1 });
  }
  return out;
}

export interface ParseOptions {
  /** `N@name` → the expression it stands for (the master's `nodegroups`). */
  nodegroups?: Readonly<Record<string, string>>;
  /** Nodegroups being expanded, outermost first: a group that includes itself is an error. */
  expanding?: readonly string[];
}

class Parser {
  private pos = 0;
  constructor(
    private readonly src: string,
    private readonly tokens: Token[],
    private readonly opts: ParseOptions,
  ) {}

  private fail(column: number, reason: string, hint = ""): never {
    throw new TargetSyntaxError(this.src, column, reason, hint);
  }

  private endColumn(): number {
    return this.src.trimEnd().length + 1;
  }

  parse(): TargetNode {
    if (this.tokens.length === 0) this.fail(1, "empty expression");
    const node = this.parseOr();
    const t = this.tokens[this.pos];
    if (t) {
      if (t.type === ")") this.fail(t.column, `unexpected ")"`);
      this.fail(t.column, `expected "and" or "or" before "${t.text}"`);
    }
    return node;
  }

  private isKeyword(t: Token | undefined, kw: string): boolean {
    return t !== undefined && t.type === "word" && t.text === kw;
  }

  private parseOr(): TargetNode {
    const children = [this.parseAnd()];
    while (this.isKeyword(this.tokens[this.pos], "or")) {
      this.pos++;
      children.push(this.parseAnd());
    }
    return children.length === 1 ? children[0]! : { kind: "or", children };
  }

  private parseAnd(): TargetNode {
    const children = [this.parseUnary()];
    while (this.isKeyword(this.tokens[this.pos], "and")) {
      this.pos++;
      children.push(this.parseUnary());
    }
    return children.length === 1 ? children[0]! : { kind: "and", children };
  }

  private parseUnary(): TargetNode {
    if (this.isKeyword(this.tokens[this.pos], "not")) {
      this.pos++;
      return { kind: "not", child: this.parseUnary() };
    }
    return this.parsePrimary();
  }

  private parsePrimary(): TargetNode {
    const t = this.tokens[this.pos];
    if (!t) {
      const prev = this.tokens[this.pos - 1];
      const after = prev ? ` after "${prev.text}"` : "";
      this.fail(this.endColumn(), `expected an expression${after}`);
    }
    if (t.type === ")") this.fail(t.column, `unexpected ")"`);
    if (t.type === "(") {
      this.pos++;
      const inner = this.parseOr();
      const close = this.tokens[this.pos];
      if (!close) this.fail(t.column, `missing ")" to close this "("`);
      if (close.type !== ")") this.fail(close.column, `expected "and", "or" or ")" before "${close.text}"`);
      this.pos++;
      return inner;
    }
    if (KEYWORDS.has(t.text)) this.fail(t.column, `unexpected "${t.text}"`);
    this.pos++;
    return this.parseWord(t.text, t.column);
  }

  private parseWord(word: string, column: number): TargetNode {
    const at = word.indexOf("@");
    if (at < 0) {
      // Peel ids never contain ":", so a bare `key:value` can only mean a fact (Salt's top-file habit).
      if (word.includes(":")) return this.parseData(word, "facts", column, 0);
      const re = globToRegExp(word);
      if (typeof re === "string") this.fail(column, re);
      return { kind: "glob", pattern: word, column };
    }
    const prefix = word.slice(0, at + 1);
    const body = word.slice(at + 1);
    const bodyColumn = column + at + 1;
    switch (prefix) {
      case "G@":
        return this.parseData(word, "facts", column, at + 1);
      case "I@":
        return this.parseData(word, "settings", column, at + 1);
      case "E@": {
        if (body === "") this.fail(bodyColumn, "E@ needs a regular expression");
        try {
          new RegExp(body);
        } catch (err) {
          const why = errText(err).replace(/^Invalid regular expression: /, "");
          this.fail(bodyColumn, `bad E@ regular expression: ${why}`);
        }
        return { kind: "regex", source: body, column };
      }
      case "L@": {
        const ids = body.split(",");
        let off = 0;
        for (const id of ids) {
          if (id === "") this.fail(bodyColumn + off, "empty peel id in L@ list");
          off += id.length + 1;
        }
        return { kind: "list", ids, column };
      }
      case "N@":
        return this.nodegroup(body, column, bodyColumn);
      case "S@": {
        const cidr = parseCidr(body);
        if (typeof cidr === "string")
          this.fail(bodyColumn, body === "" ? "S@ needs an address or CIDR" : cidr);
        return { kind: "cidr", cidr: body, column };
      }
    }
    const known = Object.keys(TARGET_PREFIXES);
    const hint = SALT_ONLY[prefix.toUpperCase()];
    // Every one-letter prefix is one edit from every other, so only case slips and longer typos
    // get a did-you-mean.
    const close = prefix.length > 2 || TARGET_PREFIXES[prefix.toUpperCase()] ? suggestion(prefix, known) : "";
    const list = known.map((p) => `${p} (${TARGET_PREFIXES[p]})`).join(", ");
    const why = hint ? `: ${hint}` : close;
    this.fail(column, `unknown prefix "${prefix}"`, `${why}; known prefixes: ${list}`);
  }

  /** `N@name`: the group's expression, parsed with the same options; errors name the group. */
  private nodegroup(name: string, column: number, bodyColumn: number): TargetNode {
    const groups = this.opts.nodegroups ?? {};
    const names = Object.keys(groups);
    if (name === "") this.fail(bodyColumn, "N@ needs a nodegroup name");
    if (!Object.hasOwn(groups, name)) {
      if (names.length === 0)
        this.fail(
          column,
          `unknown nodegroup "${name}": no nodegroups are defined (nodegroups: in master.yaml)`,
        );
      this.fail(
        column,
        `unknown nodegroup "${name}"`,
        `${suggestion(name, names)}; defined: ${names.join(", ")}`,
      );
    }
    const stack = this.opts.expanding ?? [];
    if (stack.includes(name))
      this.fail(column, `nodegroup "${name}" includes itself (${[...stack, name].join(" -> ")})`);
    const def = groups[name]!;
    try {
      return parseTarget(def, { ...this.opts, expanding: [...stack, name] });
    } catch (err) {
      if (!(err instanceof TargetSyntaxError) || stack.length > 0) throw err;
      this.fail(column, `nodegroup "${name}" (${def}): ${err.reason}`, err.hint);
    }
  }

  /**
   * `key:value`, `a:b:c` (colon or dot paths), `key>=4`. A comparison operator splits at its
   * first occurrence. Without one, every `:` is a candidate split (Salt's rule): `a:b:c` reads as
   * path `a` value `b:c`, or path `a:b` value `c`; the match holds if any reading whose path exists
   * matches. That keeps `G@ipv6:fe80::1` and `G@network:hostname:web1` both working.
   */
  private parseData(word: string, source: DataSource, column: number, bodyStart: number): TargetNode {
    const body = word.slice(bodyStart);
    const bodyColumn = column + bodyStart;
    const prefix = word.slice(0, bodyStart) || "key:value";
    const segments = (pathText: string): string[] | undefined => {
      const segs = pathText.split(/[.:]/);
      return segs.some((s) => s === "") ? undefined : segs;
    };
    let opAt = -1;
    let op: DataOp = ":";
    for (let i = 0; i < body.length; i++) {
      const c = body[i]!;
      if (c === ">" || c === "<") {
        op = body[i + 1] === "=" ? (`${c}=` as DataOp) : (c as DataOp);
        opAt = i;
        break;
      }
      if (c === "!" && body[i + 1] === "=") {
        op = "!=";
        opAt = i;
        break;
      }
    }
    if (opAt >= 0) {
      let pathText = body.slice(0, opAt);
      if (pathText.endsWith(":")) pathText = pathText.slice(0, -1);
      const value = body.slice(opAt + op.length);
      if (pathText === "") this.fail(bodyColumn, `missing key before "${op}"`);
      const path = segments(pathText);
      if (!path) this.fail(bodyColumn, `empty key segment in "${pathText}"`);
      if (value === "") this.fail(bodyColumn + opAt + op.length, `missing value after "${op}"`);
      return { kind: "data", source, op, splits: [{ path, value }], text: word, column };
    }
    const first = body.indexOf(":");
    if (first < 0) {
      this.fail(
        bodyColumn,
        `${prefix} needs key:value or a comparison, e.g. ${prefix === "I@" ? "I@role:web" : "G@os:Debian or G@cpu_count>=4"}`,
      );
    }
    if (first === 0) this.fail(bodyColumn, `missing key before ":"`);
    const splits: DataSplit[] = [];
    let firstError: string | undefined;
    for (let p = first; p >= 0; p = body.indexOf(":", p + 1)) {
      const path = segments(body.slice(0, p));
      const value = body.slice(p + 1);
      if (!path || value === "") continue;
      const re = globToRegExp(value, true);
      if (typeof re === "string") {
        firstError ??= re;
        continue;
      }
      splits.push({ path, value });
    }
    if (splits.length === 0) {
      if (firstError) this.fail(bodyColumn, firstError);
      this.fail(bodyColumn + body.length, `missing value after ":"`);
    }
    return { kind: "data", source, op: ":", splits, text: word, column };
  }
}

/** Parses a CLI target. Throws TargetSyntaxError. */
export function parseTarget(expr: string, opts: ParseOptions = {}): TargetNode {
  return new Parser(expr, tokenize(expr), opts).parse();
}

/** Parses a top.zy target: the same grammar as everywhere (a bare `key:value` is `G@key:value`). */
export function parseTopTarget(expr: string, opts: ParseOptions = {}): TargetNode {
  return parseTarget(expr, opts);
}
