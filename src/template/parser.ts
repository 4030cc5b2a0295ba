/** Jinja2's grammar (with the `do` and `loopcontrols` extensions and Salt's load/import tags) → AST. */
import { SyntaxErr, type Token } from "./lexer.js";
import { float } from "./values.js";

interface At {
  line: number;
  col: number;
}

export type Expr =
  | (At & { k: "const"; v: unknown })
  | (At & { k: "name"; name: string })
  | (At & { k: "tuple"; items: Expr[] })
  | (At & { k: "list"; items: Expr[] })
  | (At & { k: "dict"; items: [Expr, Expr][] })
  | (At & { k: "getattr"; obj: Expr; name: string })
  | (At & { k: "getitem"; obj: Expr; key: Expr })
  | (At & { k: "slice"; start: Expr | null; stop: Expr | null; step: Expr | null })
  | (At & {
      k: "call";
      fn: Expr;
      args: Expr[];
      kwargs: [string, Expr][];
      star: Expr | null;
      dstar: Expr | null;
    })
  | (At & { k: "filter"; arg: Expr | null; name: string } & CallArgs)
  | (At & { k: "test"; arg: Expr; name: string; not: boolean } & CallArgs)
  | (At & { k: "cond"; test: Expr; yes: Expr; no: Expr | null })
  | (At & { k: "bin"; op: string; left: Expr; right: Expr })
  | (At & { k: "concat"; items: Expr[] })
  | (At & { k: "compare"; first: Expr; ops: [string, Expr][] })
  | (At & { k: "and" | "or"; left: Expr; right: Expr })
  | (At & { k: "unary"; op: "not" | "-" | "+"; arg: Expr });

export interface CallArgs {
  args: Expr[];
  kwargs: [string, Expr][];
  star: Expr | null;
  dstar: Expr | null;
}

export type Target =
  | (At & { k: "name"; name: string })
  | (At & { k: "tuple"; items: Target[] })
  | (At & { k: "nsref"; name: string; attr: string });

export interface MacroDef extends At {
  name: string;
  params: [string, Expr | null][];
  body: Stmt[];
}

export type Stmt =
  | (At & { k: "data"; text: string })
  | (At & { k: "output"; expr: Expr })
  | (At & { k: "if"; test: Expr; body: Stmt[]; else: Stmt[] })
  | (At & {
      k: "for";
      target: Target;
      iter: Expr;
      filter: Expr | null;
      recursive: boolean;
      body: Stmt[];
      else: Stmt[];
    })
  | (At & { k: "set"; target: Target; expr: Expr })
  | (At & { k: "setblock"; target: Target; filters: Expr | null; body: Stmt[] })
  | (At & { k: "macro"; def: MacroDef })
  | (At & { k: "callblock"; call: Expr; def: MacroDef })
  | (At & { k: "filterblock"; filter: Expr; body: Stmt[] })
  | (At & { k: "with"; targets: [Target, Expr][]; body: Stmt[] })
  | (At & { k: "block"; name: string; scoped: boolean; required: boolean; body: Stmt[] })
  | (At & { k: "extends"; template: Expr })
  | (At & { k: "include"; template: Expr; ignoreMissing: boolean; withContext: boolean })
  | (At & { k: "import"; template: Expr; target: string; withContext: boolean })
  | (At & { k: "from"; template: Expr; names: [string, string][]; withContext: boolean })
  | (At & { k: "do"; expr: Expr })
  | (At & { k: "break" | "continue" })
  | (At & { k: "load"; format: "yaml" | "json" | "text"; target: Target; body: Stmt[] })
  | (At & {
      k: "importdata";
      format: "yaml" | "json" | "text";
      template: Expr;
      target: string;
      withContext: boolean;
    });

export interface TemplateAst {
  body: Stmt[];
  /** Blocks by name, for `extends` and `super()`. */
  blocks: Map<string, Stmt & { k: "block" }>;
  hasExtends: boolean;
}

const COMPARE_OPS = new Set(["==", "!=", "<", "<=", ">", ">="]);

export class Parser {
  private i = 0;
  private readonly blocks = new Map<string, Stmt & { k: "block" }>();
  private hasExtends = false;
  private readonly tagStack: string[] = [];

  constructor(private readonly toks: Token[]) {}

  parse(): TemplateAst {
    const body = this.subparse(null);
    return { body, blocks: this.blocks, hasExtends: this.hasExtends };
  }

  // --- token helpers

  private get cur(): Token {
    return this.toks[this.i]!;
  }

  private look(n = 1): Token {
    return this.toks[Math.min(this.i + n, this.toks.length - 1)]!;
  }

  private next(): Token {
    const t = this.toks[this.i]!;
    if (t.type !== "eof") this.i++;
    return t;
  }

  private fail(message: string, t: Token = this.cur): never {
    throw new SyntaxErr(message, t.line, t.col);
  }

  private isOp(v: string, t: Token = this.cur): boolean {
    return t.type === "op" && t.value === v;
  }

  private isName(v: string, t: Token = this.cur): boolean {
    return t.type === "name" && t.value === v;
  }

  private skipOp(v: string): boolean {
    if (this.isOp(v)) {
      this.i++;
      return true;
    }
    return false;
  }

  private skipName(v: string): boolean {
    if (this.isName(v)) {
      this.i++;
      return true;
    }
    return false;
  }

  private describe(t: Token): string {
    switch (t.type) {
      case "eof":
        return "end of template";
      case "block_end":
        return "end of statement block";
      case "var_end":
        return "end of print statement";
      case "name":
        return `'${t.value}'`;
      case "op":
        return `'${t.value}'`;
      case "string":
        return "string";
      default:
        return t.type;
    }
  }

  private expectOp(v: string): Token {
    if (!this.isOp(v)) this.fail(`expected token '${v}', got ${this.describe(this.cur)}`);
    return this.next();
  }

  private expectName(v?: string): Token {
    const t = this.cur;
    if (t.type !== "name" || (v !== undefined && t.value !== v)) {
      this.fail(
        v ? `expected token '${v}', got ${this.describe(t)}` : `expected name, got ${this.describe(t)}`,
      );
    }
    return this.next();
  }

  private expectType(type: Token["type"]): Token {
    if (this.cur.type !== type) {
      if (this.cur.type === "eof") this.fail("unexpected end of template");
      const want =
        type === "block_end"
          ? "end of statement block"
          : type === "var_end"
            ? "end of print statement"
            : type;
      this.fail(`expected token '${want}', got ${this.describe(this.cur)}`);
    }
    return this.next();
  }

  // --- statements

  /** Statements until one of `ends` (tag names) opens a block; leaves the parser on that name. */
  private subparse(ends: string[] | null): Stmt[] {
    const body: Stmt[] = [];
    for (;;) {
      const t = this.cur;
      if (t.type === "eof") {
        if (ends) {
          const inner = this.tagStack[this.tagStack.length - 1];
          this.fail(
            `Unexpected end of template. Jinja was looking for the following tags: ${ends.map((e) => `'${e}'`).join(" or ")}. The innermost block that needs to be closed is '${inner}'.`,
          );
        }
        return body;
      }
      if (t.type === "data") {
        this.next();
        body.push({ k: "data", text: t.value, line: t.line, col: t.col });
      } else if (t.type === "var_begin") {
        this.next();
        const expr = this.parseTuple();
        this.expectType("var_end");
        body.push({ k: "output", expr, line: expr.line, col: expr.col });
      } else if (t.type === "block_begin") {
        this.next();
        const tag = this.cur;
        if (ends && tag.type === "name" && ends.includes(tag.value)) return body;
        const stmt = this.statement();
        if (Array.isArray(stmt)) body.push(...stmt);
        else body.push(stmt);
      } else {
        this.fail(`unexpected ${this.describe(t)}`);
      }
    }
  }

  /** Parses up to an end tag; consumes `{% end... %}` when `drop` (the name stays otherwise). */
  private statements(ends: string[], drop = false): Stmt[] {
    const body = this.subparse(ends);
    if (drop) {
      this.next();
      this.expectType("block_end");
    }
    return body;
  }

  private statement(): Stmt | Stmt[] {
    const t = this.cur;
    if (t.type !== "name") this.fail("tag name expected");
    const at = { line: t.line, col: t.col };
    this.tagStack.push(t.value);
    try {
      switch (t.value) {
        case "if":
          return this.parseIf();
        case "for":
          return this.parseFor();
        case "set":
          return this.parseSet();
        case "macro":
          return this.parseMacro();
        case "call":
          return this.parseCallBlock();
        case "filter":
          return this.parseFilterBlock();
        case "with":
          return this.parseWith();
        case "block":
          return this.parseBlock();
        case "extends": {
          this.next();
          const template = this.parseExpression();
          this.expectType("block_end");
          this.hasExtends = true;
          return { k: "extends", template, ...at };
        }
        case "include":
          return this.parseInclude();
        case "import":
          return this.parseImport();
        case "from":
          return this.parseFrom();
        case "do": {
          this.next();
          const expr = this.parseTuple();
          this.expectType("block_end");
          return { k: "do", expr, ...at };
        }
        case "break":
        case "continue": {
          this.next();
          if (!this.tagStack.slice(0, -1).includes("for")) this.fail(`'${t.value}' outside of a loop`, t);
          this.expectType("block_end");
          return { k: t.value, ...at };
        }
        case "autoescape": {
          this.next();
          this.parseExpression();
          this.expectType("block_end");
          return this.statements(["endautoescape"], true);
        }
        case "load_yaml":
        case "load_json":
        case "load_text": {
          this.next();
          this.expectName("as");
          const target = this.parseAssignTarget();
          this.expectType("block_end");
          const body = this.statements(["endload"], true);
          return { k: "load", format: t.value.slice(5) as "yaml", target, body, ...at };
        }
        case "import_yaml":
        case "import_json":
        case "import_text": {
          this.next();
          const template = this.parseExpression();
          this.expectName("as");
          const target = this.expectName().value;
          const withContext = this.skipContext() ?? false;
          this.expectType("block_end");
          return {
            k: "importdata",
            format: t.value.slice(7) as "yaml",
            template,
            target,
            withContext,
            ...at,
          };
        }
        default: {
          const inner = this.tagStack.slice(0, -1);
          if (inner.length > 0) {
            this.fail(
              `Encountered unknown tag '${t.value}'. The innermost block that needs to be closed is '${inner[inner.length - 1]}'.`,
            );
          }
          this.fail(`Encountered unknown tag '${t.value}'.`);
        }
      }
    } finally {
      this.tagStack.pop();
    }
  }

  private parseIf(): Stmt {
    const t = this.next();
    const test = this.parseTuple(false, false);
    this.expectType("block_end");
    const body = this.statements(["elif", "else", "endif"]);
    const node: Stmt & { k: "if" } = { k: "if", test, body, else: [], line: t.line, col: t.col };
    const tag = this.next();
    if (tag.value === "elif") {
      this.i--; // re-read as a nested if
      node.else = [this.parseIf()];
      return node;
    }
    if (tag.value === "else") {
      this.expectType("block_end");
      node.else = this.statements(["endif"], true);
      return node;
    }
    this.expectType("block_end");
    return node;
  }

  private parseFor(): Stmt {
    const t = this.next();
    const target = this.parseAssignTarget(["in"]);
    this.expectName("in");
    const iter = this.parseTuple(false, false, ["recursive"]);
    let filter: Expr | null = null;
    if (this.skipName("if")) filter = this.parseExpression();
    const recursive = this.skipName("recursive");
    this.expectType("block_end");
    const body = this.statements(["endfor", "else"]);
    let elseBody: Stmt[] = [];
    if (this.next().value === "else") {
      this.expectType("block_end");
      elseBody = this.statements(["endfor"], true);
    } else {
      this.expectType("block_end");
    }
    return { k: "for", target, iter, filter, recursive, body, else: elseBody, line: t.line, col: t.col };
  }

  private parseSet(): Stmt {
    const t = this.next();
    const target = this.parseAssignTarget(undefined, true);
    if (this.skipOp("=")) {
      const expr = this.parseTuple();
      this.expectType("block_end");
      return { k: "set", target, expr, line: t.line, col: t.col };
    }
    const filters = this.isOp("|") ? this.parseFilterChain(null) : null;
    this.expectType("block_end");
    const body = this.statements(["endset"], true);
    return { k: "setblock", target, filters, body, line: t.line, col: t.col };
  }

  private parseSignature(def: MacroDef): void {
    this.expectOp("(");
    while (!this.isOp(")")) {
      if (def.params.length > 0) this.expectOp(",");
      if (this.isOp(")")) break;
      const name = this.expectName().value;
      let dflt: Expr | null = null;
      if (this.skipOp("=")) dflt = this.parseExpression();
      else if (def.params.some(([, d]) => d !== null))
        this.fail("non-default argument follows default argument");
      def.params.push([name, dflt]);
    }
    this.expectOp(")");
  }

  private parseMacro(): Stmt {
    const t = this.next();
    const name = this.expectName().value;
    const def: MacroDef = { name, params: [], body: [], line: t.line, col: t.col };
    this.parseSignature(def);
    this.expectType("block_end");
    def.body = this.statements(["endmacro"], true);
    return { k: "macro", def, line: t.line, col: t.col };
  }

  private parseCallBlock(): Stmt {
    const t = this.next();
    const def: MacroDef = { name: "caller", params: [], body: [], line: t.line, col: t.col };
    if (this.isOp("(")) this.parseSignature(def);
    const call = this.parseExpression();
    if (call.k !== "call") this.fail("expected call", t);
    this.expectType("block_end");
    def.body = this.statements(["endcall"], true);
    return { k: "callblock", call, def, line: t.line, col: t.col };
  }

  private parseFilterBlock(): Stmt {
    const t = this.next();
    const filter = this.parseFilterChain(null, true);
    this.expectType("block_end");
    const body = this.statements(["endfilter"], true);
    return { k: "filterblock", filter, body, line: t.line, col: t.col };
  }

  private parseWith(): Stmt {
    const t = this.next();
    const targets: [Target, Expr][] = [];
    while (this.cur.type !== "block_end") {
      if (targets.length > 0) this.expectOp(",");
      const target = this.parseAssignTarget();
      this.expectOp("=");
      targets.push([target, this.parseExpression()]);
    }
    this.expectType("block_end");
    const body = this.statements(["endwith"], true);
    return { k: "with", targets, body, line: t.line, col: t.col };
  }

  private parseBlock(): Stmt {
    const t = this.next();
    const name = this.expectName().value;
    const scoped = this.skipName("scoped");
    const required = this.skipName("required");
    this.expectType("block_end");
    if (this.blocks.has(name)) this.fail(`block '${name}' defined twice`, t);
    const body = this.statements(["endblock"]);
    this.next();
    if (this.cur.type === "name") {
      if (this.cur.value !== name) this.fail(`mismatching name '${this.cur.value}' for block '${name}'`);
      this.next();
    }
    this.expectType("block_end");
    const node: Stmt & { k: "block" } = {
      k: "block",
      name,
      scoped,
      required,
      body,
      line: t.line,
      col: t.col,
    };
    this.blocks.set(name, node);
    return node;
  }

  /** `with context` / `without context`; returns true for with, undefined if absent. */
  private skipContext(): boolean | undefined {
    if ((this.isName("with") || this.isName("without")) && this.isName("context", this.look())) {
      const w = this.next().value === "with";
      this.next();
      return w;
    }
    return undefined;
  }

  private parseInclude(): Stmt {
    const t = this.next();
    const template = this.parseExpression();
    let ignoreMissing = false;
    if (this.isName("ignore") && this.isName("missing", this.look())) {
      this.i += 2;
      ignoreMissing = true;
    }
    const ctx = this.skipContext();
    this.expectType("block_end");
    return { k: "include", template, ignoreMissing, withContext: ctx ?? true, line: t.line, col: t.col };
  }

  private parseImport(): Stmt {
    const t = this.next();
    const template = this.parseExpression();
    this.expectName("as");
    const target = this.expectName().value;
    const ctx = this.skipContext();
    this.expectType("block_end");
    return { k: "import", template, target, withContext: ctx ?? false, line: t.line, col: t.col };
  }

  private parseFrom(): Stmt {
    const t = this.next();
    const template = this.parseExpression();
    this.expectName("import");
    const names: [string, string][] = [];
    let ctx: boolean | undefined;
    for (;;) {
      if (names.length > 0) {
        if (!this.skipOp(",")) break;
      }
      if (this.cur.type !== "name") break;
      const c = this.skipContext();
      if (c !== undefined) {
        ctx = c;
        break;
      }
      const nameTok = this.expectName();
      if (nameTok.value.startsWith("_"))
        this.fail("names starting with an underline can not be imported", nameTok);
      let alias = nameTok.value;
      if (this.skipName("as")) alias = this.expectName().value;
      names.push([nameTok.value, alias]);
      const c2 = this.skipContext();
      if (c2 !== undefined) {
        ctx = c2;
        break;
      }
    }
    this.expectType("block_end");
    return { k: "from", template, names, withContext: ctx ?? false, line: t.line, col: t.col };
  }

  private parseAssignTarget(endNames?: string[], withNamespace = false): Target {
    const first = this.cur;
    if (withNamespace && first.type === "name" && this.isOp(".", this.look())) {
      this.i += 2;
      const attr = this.expectName().value;
      return { k: "nsref", name: first.value, attr, line: first.line, col: first.col };
    }
    const items: Target[] = [];
    let sawComma = false;
    for (;;) {
      if (items.length > 0) {
        if (!this.skipOp(",")) break;
        sawComma = true;
      }
      if (
        this.cur.type === "block_end" ||
        this.isOp("=") ||
        (this.cur.type === "name" && endNames?.includes(this.cur.value))
      ) {
        break;
      }
      if (this.skipOp("(")) {
        const inner = this.parseAssignTarget(endNames);
        this.expectOp(")");
        items.push(inner);
        continue;
      }
      const t = this.expectName();
      if (["true", "false", "none", "True", "False", "None"].includes(t.value)) {
        this.fail(`can't assign to '${t.value}'`, t);
      }
      items.push({ k: "name", name: t.value, line: t.line, col: t.col });
    }
    if (items.length === 0) this.fail(`expected name, got ${this.describe(this.cur)}`);
    if (items.length === 1 && !sawComma) return items[0]!;
    return { k: "tuple", items, line: first.line, col: first.col };
  }

  // --- expressions

  parseExpression(withCond = true): Expr {
    return withCond ? this.parseCondExpr() : this.parseOr();
  }

  private parseCondExpr(): Expr {
    let expr = this.parseOr();
    while (this.isName("if")) {
      const t = this.next();
      const test = this.parseOr();
      const other = this.skipName("else") ? this.parseCondExpr() : null;
      expr = { k: "cond", test, yes: expr, no: other, line: t.line, col: t.col };
    }
    return expr;
  }

  private parseOr(): Expr {
    let left = this.parseAnd();
    while (this.isName("or")) {
      const t = this.next();
      left = { k: "or", left, right: this.parseAnd(), line: t.line, col: t.col };
    }
    return left;
  }

  private parseAnd(): Expr {
    let left = this.parseNot();
    while (this.isName("and")) {
      const t = this.next();
      left = { k: "and", left, right: this.parseNot(), line: t.line, col: t.col };
    }
    return left;
  }

  private parseNot(): Expr {
    if (this.isName("not")) {
      const t = this.next();
      return { k: "unary", op: "not", arg: this.parseNot(), line: t.line, col: t.col };
    }
    return this.parseCompare();
  }

  private parseCompare(): Expr {
    const first = this.parseMath1();
    const ops: [string, Expr][] = [];
    for (;;) {
      const t = this.cur;
      if (t.type === "op" && COMPARE_OPS.has(t.value)) {
        this.next();
        ops.push([t.value, this.parseMath1()]);
      } else if (this.isName("in")) {
        this.next();
        ops.push(["in", this.parseMath1()]);
      } else if (this.isName("not") && this.isName("in", this.look())) {
        this.i += 2;
        ops.push(["notin", this.parseMath1()]);
      } else break;
    }
    if (ops.length === 0) return first;
    return { k: "compare", first, ops, line: first.line, col: first.col };
  }

  private parseMath1(): Expr {
    let left = this.parseConcat();
    while (this.isOp("+") || this.isOp("-")) {
      const t = this.next();
      left = { k: "bin", op: t.value, left, right: this.parseConcat(), line: t.line, col: t.col };
    }
    return left;
  }

  private parseConcat(): Expr {
    const first = this.parseMath2();
    if (!this.isOp("~")) return first;
    const items = [first];
    while (this.skipOp("~")) items.push(this.parseMath2());
    return { k: "concat", items, line: first.line, col: first.col };
  }

  private parseMath2(): Expr {
    let left = this.parsePow();
    while (this.isOp("*") || this.isOp("/") || this.isOp("//") || this.isOp("%")) {
      const t = this.next();
      left = { k: "bin", op: t.value, left, right: this.parsePow(), line: t.line, col: t.col };
    }
    return left;
  }

  private parsePow(): Expr {
    let left = this.parseUnary();
    while (this.isOp("**")) {
      const t = this.next();
      left = { k: "bin", op: "**", left, right: this.parseUnary(), line: t.line, col: t.col };
    }
    return left;
  }

  private parseUnary(withFilter = true): Expr {
    const t = this.cur;
    let node: Expr;
    if (this.isOp("-") || this.isOp("+")) {
      this.next();
      node = { k: "unary", op: t.value as "-", arg: this.parseUnary(false), line: t.line, col: t.col };
    } else {
      node = this.parsePrimary();
    }
    node = this.parsePostfix(node);
    if (withFilter) node = this.parseFilterExpr(node);
    return node;
  }

  private parsePrimary(): Expr {
    const t = this.cur;
    const at = { line: t.line, col: t.col };
    switch (t.type) {
      case "name": {
        this.next();
        if (t.value === "true" || t.value === "True") return { k: "const", v: true, ...at };
        if (t.value === "false" || t.value === "False") return { k: "const", v: false, ...at };
        if (t.value === "none" || t.value === "None") return { k: "const", v: null, ...at };
        return { k: "name", name: t.value, ...at };
      }
      case "string": {
        this.next();
        let v = t.value;
        while (this.cur.type === "string") v += this.next().value;
        return { k: "const", v, ...at };
      }
      case "int":
        this.next();
        return { k: "const", v: t.num, ...at };
      case "float": {
        this.next();
        const n = t.num as number;
        return { k: "const", v: float(n), ...at };
      }
      case "op":
        if (t.value === "(") {
          this.next();
          const e = this.parseTuple(false, true, undefined, true);
          this.expectOp(")");
          return e;
        }
        if (t.value === "[") return this.parseList();
        if (t.value === "{") return this.parseDict();
        break;
    }
    if (t.type === "eof") this.fail("unexpected end of template");
    this.fail(`unexpected ${this.describe(t)}`);
  }

  /**
   * A comma-separated expression; a tuple when a comma appears. `simplified` parses only primaries
   * (not used here); `explicit` allows the empty tuple `()`.
   */
  parseTuple(_simplified = false, withCond = true, extraEnd?: string[], explicit = false): Expr {
    const t = this.cur;
    const items: Expr[] = [];
    let sawComma = false;
    for (;;) {
      if (items.length > 0) {
        if (!this.skipOp(",")) break;
        sawComma = true;
      }
      if (this.isTupleEnd(extraEnd)) break;
      items.push(this.parseExpression(withCond));
    }
    if (!sawComma) {
      if (items.length > 0) return items[0]!;
      if (!explicit) this.fail(`Expected an expression, got ${this.describe(this.cur)}`);
    }
    return { k: "tuple", items, line: t.line, col: t.col };
  }

  private isTupleEnd(extraEnd?: string[]): boolean {
    const t = this.cur;
    if (t.type === "var_end" || t.type === "block_end" || t.type === "eof") return true;
    if (t.type === "op" && (t.value === ")" || t.value === "]" || t.value === "}" || t.value === "="))
      return true;
    if (t.type === "name" && extraEnd?.includes(t.value)) return true;
    return false;
  }

  private parseList(): Expr {
    const t = this.expectOp("[");
    const items: Expr[] = [];
    while (!this.isOp("]")) {
      if (items.length > 0) this.expectOp(",");
      if (this.isOp("]")) break;
      items.push(this.parseExpression());
    }
    this.expectOp("]");
    return { k: "list", items, line: t.line, col: t.col };
  }

  private parseDict(): Expr {
    const t = this.expectOp("{");
    const items: [Expr, Expr][] = [];
    while (!this.isOp("}")) {
      if (items.length > 0) this.expectOp(",");
      if (this.isOp("}")) break;
      const key = this.parseExpression();
      this.expectOp(":");
      items.push([key, this.parseExpression()]);
    }
    this.expectOp("}");
    return { k: "dict", items, line: t.line, col: t.col };
  }

  private parsePostfix(node: Expr): Expr {
    // a call is reported where its expression starts (`salt['x.y'](...)` at `salt`)
    const start = { line: node.line, col: node.col };
    for (;;) {
      if (this.isOp(".") || this.isOp("[")) node = this.parseSubscript(node);
      else if (this.isOp("(")) node = this.parseCall(node, start);
      else return node;
    }
  }

  private parseFilterExpr(node: Expr): Expr {
    for (;;) {
      if (this.isOp("|")) node = this.parseFilterChain(node);
      else if (this.isName("is")) node = this.parseTest(node);
      else if (this.isOp("(")) node = this.parseCall(node);
      else return node;
    }
  }

  private parseSubscript(node: Expr): Expr {
    const t = this.next();
    if (t.value === ".") {
      const a = this.next();
      if (a.type === "name") return { k: "getattr", obj: node, name: a.value, line: a.line, col: a.col };
      if (a.type === "int")
        return {
          k: "getitem",
          obj: node,
          key: { k: "const", v: a.num, line: a.line, col: a.col },
          line: a.line,
          col: a.col,
        };
      this.fail("expected name or number", a);
    }
    const keys: Expr[] = [];
    let sawComma = false;
    while (!this.isOp("]")) {
      if (keys.length > 0) {
        this.expectOp(",");
        sawComma = true;
        if (this.isOp("]")) break;
      }
      keys.push(this.parseSubscribed());
    }
    this.expectOp("]");
    const key: Expr =
      keys.length === 1 && !sawComma ? keys[0]! : { k: "tuple", items: keys, line: t.line, col: t.col };
    return { k: "getitem", obj: node, key, line: t.line, col: t.col };
  }

  private parseSubscribed(): Expr {
    const t = this.cur;
    const parts: (Expr | null)[] = [];
    if (this.isOp(":")) {
      this.next();
      parts.push(null);
    } else {
      const e = this.parseExpression();
      if (!this.isOp(":")) return e;
      this.next();
      parts.push(e);
    }
    parts.push(this.isOp("]") || this.isOp(",") || this.isOp(":") ? null : this.parseExpression());
    if (this.skipOp(":")) parts.push(this.isOp("]") || this.isOp(",") ? null : this.parseExpression());
    else parts.push(null);
    return {
      k: "slice",
      start: parts[0] ?? null,
      stop: parts[1] ?? null,
      step: parts[2] ?? null,
      line: t.line,
      col: t.col,
    };
  }

  private parseCallArgs(): CallArgs {
    this.expectOp("(");
    const out: CallArgs = { args: [], kwargs: [], star: null, dstar: null };
    let first = true;
    while (!this.isOp(")")) {
      if (!first) {
        this.expectOp(",");
        if (this.isOp(")")) break;
      }
      first = false;
      if (this.isOp("*")) {
        this.next();
        out.star = this.parseExpression();
      } else if (this.isOp("**")) {
        this.next();
        out.dstar = this.parseExpression();
      } else if (this.cur.type === "name" && this.isOp("=", this.look())) {
        const key = this.next().value;
        this.next();
        out.kwargs.push([key, this.parseExpression()]);
      } else {
        if (out.kwargs.length > 0 || out.star || out.dstar) this.fail("Invalid argument syntax for a call");
        out.args.push(this.parseExpression());
      }
    }
    this.expectOp(")");
    return out;
  }

  private parseCall(node: Expr, start: { line: number; col: number } = node): Expr {
    const a = this.parseCallArgs();
    return { k: "call", fn: node, ...a, line: start.line, col: start.col };
  }

  private parseFilterChain(node: Expr | null, startInline = false): Expr {
    let cur = node;
    let first = startInline;
    while (this.isOp("|") || first) {
      if (!first) this.next();
      first = false;
      const t = this.expectName();
      let name = t.value;
      while (this.isOp(".")) {
        this.next();
        name += `.${this.expectName().value}`;
      }
      const a: CallArgs = this.isOp("(")
        ? this.parseCallArgs()
        : { args: [], kwargs: [], star: null, dstar: null };
      cur = { k: "filter", arg: cur, name, ...a, line: t.line, col: t.col };
    }
    return cur!;
  }

  private parseTest(node: Expr): Expr {
    const t = this.next();
    const negated = this.skipName("not");
    const nameTok = this.expectName();
    let name = nameTok.value;
    while (this.isOp(".")) {
      this.next();
      name += `.${this.expectName().value}`;
    }
    let a: CallArgs = { args: [], kwargs: [], star: null, dstar: null };
    const c = this.cur;
    if (this.isOp("(")) a = this.parseCallArgs();
    else if (
      (c.type === "name" ||
        c.type === "string" ||
        c.type === "int" ||
        c.type === "float" ||
        this.isOp("[") ||
        this.isOp("{")) &&
      !(c.type === "name" && ["else", "or", "and"].includes(c.value))
    ) {
      if (this.isName("is")) this.fail("You cannot chain multiple tests with is");
      let arg = this.parsePrimary();
      arg = this.parsePostfix(arg);
      a.args = [arg];
    }
    return { k: "test", arg: node, name, not: negated, ...a, line: t.line, col: t.col };
  }
}
