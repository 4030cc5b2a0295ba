/**
 * The evaluator: runs a parsed template against Python values, asynchronously, so an execution
 * function reached through `salt[...]` is simply awaited where it is called.
 */
import { TemplateError } from "./error.js";
import type { FieldAccess } from "./format.js";
import { Lexer, SyntaxErr } from "./lexer.js";
import { callMethod, hasMethod, NO_METHOD } from "./methods.js";
import { add, floordiv, mod, mul, neg, pos, pow, slice, sub, truediv } from "./operators.js";
import { type Expr, type MacroDef, Parser, type Stmt, type Target, type TemplateAst } from "./parser.js";
import {
  compare,
  contains,
  DictView,
  dictKey,
  eq,
  iterate,
  len,
  Namespace,
  PyError,
  PyFunc,
  repr,
  str,
  strRepr,
  truthy,
  tuple,
  typeName,
  Undefined,
  undefinedError,
} from "./values.js";

export type FilterFn = (
  rt: Runtime,
  value: unknown,
  args: unknown[],
  kwargs: Map<string, unknown>,
) => unknown;
export type TestFn = (rt: Runtime, value: unknown, args: unknown[], kwargs: Map<string, unknown>) => unknown;

/** What filters and tests may ask of the engine. */
export interface Runtime extends FieldAccess {
  call(fn: unknown, args: unknown[], kwargs?: Map<string, unknown>): Promise<unknown>;
  filter(name: string, value: unknown, args: unknown[], kwargs?: Map<string, unknown>): Promise<unknown>;
  test(name: string, value: unknown, args: unknown[], kwargs?: Map<string, unknown>): Promise<boolean>;
  hasTest(name: string): boolean;
  hasFilter(name: string): boolean;
}

export interface LoadedSource {
  text: string;
  /** The name errors report (tree-relative). */
  path: string;
}

export interface EnvironmentConfig {
  load(name: string, from: string): Promise<LoadedSource | null>;
  filters: Record<string, FilterFn>;
  tests: Record<string, TestFn>;
  /** Environment globals (range, dict, namespace, raise, ...): every template sees them. */
  globals: Map<string, unknown>;
  /**
   * The render context (grains, pillar, salt, sls names). Salt installs it as the template's
   * globals, so imports see it even without context; an include without context does not.
   */
  context: Map<string, unknown>;
  parseData(format: "yaml" | "json", text: string): unknown;
  /** Parsed templates by path, shared by the renders of one renderer. */
  cache: Map<string, { ast: TemplateAst; text: string }>;
}

export class Macro {
  constructor(
    readonly def: MacroDef,
    readonly closure: Scope,
    readonly owner: Interp,
    readonly catchVarargs: boolean,
    readonly catchKwargs: boolean,
    readonly usesCaller: boolean,
  ) {}

  pyRepr(): string {
    return `<Macro '${this.def.name}'>`;
  }
}

export class TemplateModule {
  constructor(
    readonly name: string,
    readonly exports: Map<string, unknown>,
    readonly body: string,
  ) {}

  pyRepr(): string {
    return `<TemplateModule '${this.name}'>`;
  }
}

class LoopCtx {
  index0 = -1;
  changedLast: unknown = NO_METHOD;
  constructor(
    readonly items: unknown[],
    readonly depth0: number,
    readonly recurse: ((items: unknown) => Promise<string>) | null,
  ) {}

  pyRepr(): string {
    return `<LoopContext ${this.index0 + 1}/${this.items.length}>`;
  }
}

/** A variable scope; reads fall through to the parent, writes stay here. */
export class Scope {
  readonly vars = new Map<string, unknown>();
  constructor(readonly parent: Scope | null) {}

  lookup(name: string): unknown {
    for (let s: Scope | null = this; s; s = s.parent) {
      const v = s.vars.get(name);
      if (v !== undefined || s.vars.has(name)) return v;
    }
    return NOT_FOUND;
  }

  flatten(): Map<string, unknown> {
    const chain: Scope[] = [];
    for (let s: Scope | null = this; s; s = s.parent) chain.unshift(s);
    const out = new Map<string, unknown>();
    for (const s of chain) for (const [k, v] of s.vars) out.set(k, v);
    return out;
  }
}

const NOT_FOUND = Symbol("not found");
const SKIPPED_AFTER_EXTENDS = new Set(["data", "output", "block", "include", "callblock", "filterblock"]);
const NORMAL = 0;
const BREAK = 1;
const CONTINUE = 2;
type Flow = 0 | 1 | 2;

/** Nesting limit for includes, imports and macro calls (a template that includes itself). */
const MAX_DEPTH = 200;

/** Salt's trailing-newline handling: Jinja drops one final newline, Salt appends it again. */
export function normalizeSource(text: string): { src: string } {
  let src = text.replace(/\r\n|\r/g, "\n");
  if (src.endsWith("\n")) src = src.slice(0, -1);
  return { src };
}

/** Macro calls in progress: async recursion never overflows the stack, it exhausts memory. */
const MAX_CALL_DEPTH = 500;

export class Environment {
  callDepth = 0;

  constructor(readonly cfg: EnvironmentConfig) {}

  compile(text: string, path: string): { ast: TemplateAst; text: string } {
    const hit = this.cfg.cache.get(path);
    if (hit && hit.text === text) return hit;
    const { src } = normalizeSource(text);
    let ast: TemplateAst;
    try {
      ast = new Parser(new Lexer(src).tokenize()).parse();
    } catch (err) {
      if (err instanceof SyntaxErr) throw new TemplateError(err.message, path, err.line, err.col, text);
      throw err;
    }
    const entry = { ast, text };
    this.cfg.cache.set(path, entry);
    return entry;
  }

  async loadTemplate(
    name: unknown,
    from: Interp,
  ): Promise<{ ast: TemplateAst; text: string; path: string } | null> {
    const names = Array.isArray(name) ? name : [name];
    for (const n of names) {
      if (n instanceof Undefined) throw undefinedError(n);
      if (typeof n !== "string") continue;
      const found = await this.cfg.load(n, from.path);
      if (found) return { ...this.compile(found.text, found.path), path: found.path };
    }
    return null;
  }

  /** Renders a whole template; `parent` is the scope an include or `with context` import sees. */
  async render(
    ast: TemplateAst,
    text: string,
    path: string,
    parent: Scope | null,
    depth: number,
    seesContext = true,
  ) {
    const interp = new Interp(this, ast, text, path, depth, seesContext);
    const top = new Scope(parent);
    const out = await interp.run(top);
    return { out, scope: top, interp };
  }
}

interface BlockChain {
  chain: (Stmt & { k: "block" })[];
  owners: Interp[];
}

/** One template being executed. */
export class Interp implements Runtime {
  /** The node being evaluated: where an error is reported. */
  private at: { line: number; col: number } = { line: 1, col: 1 };
  private parentTemplate: { ast: TemplateAst; text: string; path: string } | null = null;
  /** Output written before `extends` is kept, as Jinja does. */
  private outputBeforeExtends = 0;
  /** Blocks overriding this template's, most derived first (set when rendered as a parent). */
  blockOverrides = new Map<string, BlockChain>();

  constructor(
    readonly env: Environment,
    readonly ast: TemplateAst,
    readonly text: string,
    readonly path: string,
    readonly depth: number,
    readonly seesContext = true,
  ) {
    if (depth > MAX_DEPTH) throw new PyError("RecursionError", "maximum recursion depth exceeded");
  }

  /** Wraps an error raised while this template ran in a TemplateError at the current node. */
  wrap(err: unknown): TemplateError {
    if (err instanceof TemplateError) return err;
    let message: string;
    if (err instanceof PyError && err.at?.path === this.path) {
      return new TemplateError(err.message, this.path, err.at.line, err.at.col, this.text);
    }
    if (err instanceof PyError) message = err.message;
    else if (err instanceof RangeError && /call stack/i.test(err.message))
      message = "maximum recursion depth exceeded";
    else if (err instanceof Error) message = err.message;
    else message = String(err);
    return new TemplateError(message, this.path, this.at.line, this.at.col, this.text);
  }

  async run(top: Scope): Promise<string> {
    const out: string[] = [];
    try {
      await this.execTop(top, out);
      if (this.parentTemplate) {
        const p = this.parentTemplate;
        const parent = new Interp(this.env, p.ast, p.text, p.path, this.depth + 1, this.seesContext);
        for (const [name, b] of this.ast.blocks) {
          const own = this.blockOverrides.get(name) ?? { chain: [], owners: [] };
          parent.blockOverrides.set(name, { chain: [...own.chain, b], owners: [...own.owners, this] });
        }
        for (const [name, b] of this.blockOverrides) {
          if (!parent.blockOverrides.has(name)) parent.blockOverrides.set(name, b);
        }
        // The parent renders with the child's top-level names (Jinja shares one context).
        out.length = this.outputBeforeExtends;
        out.push(await parent.run(top));
      }
    } catch (err) {
      throw this.wrap(err);
    }
    return out.join("");
  }

  // ------------------------------------------------------------------------------------------
  // statements

  private async execTop(scope: Scope, out: string[]): Promise<void> {
    for (const s of this.ast.body) {
      if (this.parentTemplate) {
        // after `extends` the code still runs, but the output (blocks included) is the parent's
        if (SKIPPED_AFTER_EXTENDS.has(s.k)) continue;
        await this.stmt(s, scope, []);
        continue;
      }
      await this.stmt(s, scope, out);
    }
  }

  async exec(body: Stmt[], scope: Scope, out: string[]): Promise<Flow> {
    for (const s of body) {
      const flow = await this.stmt(s, scope, out);
      if (flow !== NORMAL) return flow;
    }
    return NORMAL;
  }

  private async stmt(s: Stmt, scope: Scope, out: string[]): Promise<Flow> {
    this.at = s;
    switch (s.k) {
      case "data":
        out.push(s.text);
        return NORMAL;
      case "output": {
        const v = await this.ev(s.expr, scope);
        this.at = s.expr;
        out.push(str(v));
        return NORMAL;
      }
      case "if":
        return this.exec(truthy(await this.ev(s.test, scope)) ? s.body : s.else, scope, out);
      case "for":
        return this.execFor(s, scope, out);
      case "set":
        this.assign(s.target, await this.ev(s.expr, scope), scope);
        return NORMAL;
      case "setblock": {
        const buf: string[] = [];
        await this.exec(s.body, new Scope(scope), buf);
        let v: unknown = buf.join("");
        if (s.filters) v = await this.applyFilterChain(s.filters, v, scope);
        this.assign(s.target, v, scope);
        return NORMAL;
      }
      case "macro":
        scope.vars.set(s.def.name, this.makeMacro(s.def, scope));
        return NORMAL;
      case "callblock": {
        const caller = this.makeMacro(s.def, scope);
        const call = s.call as Expr & { k: "call" };
        out.push(str(await this.evCall(call, scope, caller)));
        return NORMAL;
      }
      case "filterblock": {
        const buf: string[] = [];
        await this.exec(s.body, new Scope(scope), buf);
        out.push(str(await this.applyFilterChain(s.filter, buf.join(""), scope)));
        return NORMAL;
      }
      case "with": {
        const inner = new Scope(scope);
        for (const [target, expr] of s.targets) this.assign(target, await this.ev(expr, scope), inner);
        return this.exec(s.body, inner, out);
      }
      case "block":
        await this.execBlock(s, scope, out);
        return NORMAL;
      case "extends": {
        if (this.parentTemplate) throw new PyError("TemplateRuntimeError", "extended multiple times");
        const name = await this.ev(s.template, scope);
        this.at = s;
        const found = await this.env.loadTemplate(name, this);
        if (!found) throw new PyError("TemplateNotFound", `template not found: ${str(name)}`);
        this.parentTemplate = found;
        this.outputBeforeExtends = out.length;
        return NORMAL;
      }
      case "include": {
        const name = await this.ev(s.template, scope);
        this.at = s;
        const found = await this.env.loadTemplate(name, this);
        if (!found) {
          if (s.ignoreMissing) return NORMAL;
          throw new PyError(
            "TemplateNotFound",
            `template not found: ${Array.isArray(name) ? name.map(str).join(", ") : str(name)}`,
          );
        }
        const r = s.withContext
          ? await this.env.render(found.ast, found.text, found.path, scope, this.depth + 1, this.seesContext)
          : await this.env.render(found.ast, found.text, found.path, null, this.depth + 1, false);
        out.push(r.out);
        return NORMAL;
      }
      case "import": {
        const mod = await this.importModule(s.template, s.withContext, scope);
        scope.vars.set(s.target, mod);
        return NORMAL;
      }
      case "from": {
        const mod = await this.importModule(s.template, s.withContext, scope);
        for (const [name, alias] of s.names) {
          scope.vars.set(
            alias,
            mod.exports.has(name)
              ? mod.exports.get(name)
              : new Undefined(
                  `the template ${strRepr(mod.name)} (imported on line ${s.line}) does not export the requested name ${strRepr(name)}`,
                ),
          );
        }
        return NORMAL;
      }
      case "do":
        await this.ev(s.expr, scope);
        return NORMAL;
      case "break":
        return BREAK;
      case "continue":
        return CONTINUE;
      case "load": {
        const buf: string[] = [];
        await this.exec(s.body, new Scope(scope), buf);
        this.at = s;
        this.assign(s.target, this.parseData(s.format, buf.join("")), scope);
        return NORMAL;
      }
      case "importdata": {
        const mod = await this.importModule(s.template, s.withContext, scope);
        this.at = s;
        scope.vars.set(s.target, this.parseData(s.format, mod.body));
        return NORMAL;
      }
    }
  }

  private parseData(format: "yaml" | "json" | "text", text: string): unknown {
    if (format === "text") return text;
    return this.env.cfg.parseData(format, text);
  }

  private async importModule(template: Expr, withContext: boolean, scope: Scope): Promise<TemplateModule> {
    const name = await this.ev(template, scope);
    this.at = template;
    const found = await this.env.loadTemplate(name, this);
    if (!found) throw new PyError("TemplateNotFound", `template not found: ${str(name)}`);
    const r = await this.env.render(
      found.ast,
      found.text,
      found.path,
      withContext ? scope : null,
      this.depth + 1,
    );
    const exports = new Map<string, unknown>();
    for (const [k, v] of r.scope.vars) if (!k.startsWith("_")) exports.set(k, v);
    return new TemplateModule(found.path, exports, r.out);
  }

  private async execBlock(s: Stmt & { k: "block" }, scope: Scope, out: string[]): Promise<void> {
    const over = this.blockOverrides.get(s.name);
    const chain = over ? [...over.chain, s] : [s];
    const owners: Interp[] = over ? [...over.owners, this] : [this];
    const run = async (i: number): Promise<string> => {
      const block = chain[i]!;
      const owner = owners[i]!;
      const inner = new Scope(scope);
      if (i + 1 < chain.length) inner.vars.set("super", new PyFunc("super", () => run(i + 1)));
      const buf: string[] = [];
      try {
        await owner.exec(block.body, inner, buf);
      } catch (err) {
        throw owner.wrap(err);
      }
      return buf.join("");
    };
    out.push(await run(0));
  }

  private async execFor(s: Stmt & { k: "for" }, scope: Scope, out: string[]): Promise<Flow> {
    const iterable = await this.ev(s.iter, scope);
    this.at = s.iter;
    const runLoop = async (value: unknown, depth0: number, sink: string[]): Promise<boolean> => {
      // one scope per loop (and per recursion level): names set inside do not leak out
      const loopScope = new Scope(scope);
      let items = iterate(value);
      if (s.filter) {
        const kept: unknown[] = [];
        for (const item of items) {
          this.assign(s.target, item, loopScope);
          if (truthy(await this.ev(s.filter, loopScope))) kept.push(item);
        }
        items = kept;
      } else if (items === value) {
        items = [...items];
      }
      const recurse = s.recursive
        ? async (v: unknown) => {
            const buf: string[] = [];
            await runLoop(v, depth0 + 1, buf);
            return buf.join("");
          }
        : null;
      const loop = new LoopCtx(items, depth0, recurse);
      loopScope.vars.set("loop", loop);
      for (let i = 0; i < items.length; i++) {
        loop.index0 = i;
        this.assign(s.target, items[i], loopScope);
        const flow = await this.exec(s.body, loopScope, sink);
        if (flow === BREAK) break;
      }
      return items.length > 0;
    };
    const ran = await runLoop(iterable, 0, out);
    if (!ran && s.else.length > 0) return this.exec(s.else, new Scope(scope), out);
    return NORMAL;
  }

  private assign(target: Target, value: unknown, scope: Scope): void {
    if (target.k === "name") {
      scope.vars.set(target.name, value);
      return;
    }
    if (target.k === "nsref") {
      const ns = scope.lookup(target.name);
      if (!(ns instanceof Namespace)) {
        throw new PyError("TemplateRuntimeError", "cannot assign attribute on non-namespace object");
      }
      ns.attrs.set(target.attr, value);
      return;
    }
    const items = iterate(value);
    if (items.length !== target.items.length) {
      throw new PyError(
        "ValueError",
        items.length > target.items.length
          ? `too many values to unpack (expected ${target.items.length})`
          : `not enough values to unpack (expected ${target.items.length}, got ${items.length})`,
      );
    }
    target.items.forEach((t, i) => {
      this.assign(t, items[i], scope);
    });
  }

  // ------------------------------------------------------------------------------------------
  // macros

  private makeMacro(def: MacroDef, scope: Scope): Macro {
    const used = namesUsed(def.body);
    return new Macro(def, scope, this, used.has("varargs"), used.has("kwargs"), used.has("caller"));
  }

  async invokeMacro(
    m: Macro,
    args: unknown[],
    kwargs: Map<string, unknown>,
    caller: Macro | null,
  ): Promise<string> {
    const def = m.def;
    const inner = new Scope(m.closure);
    const kw = new Map(kwargs);
    const owner = m.owner;
    if (args.length > def.params.length && !m.catchVarargs) {
      throw new PyError(
        "TypeError",
        `macro '${def.name}' takes not more than ${def.params.length} argument(s)`,
      );
    }
    for (let i = 0; i < def.params.length; i++) {
      const [name, dflt] = def.params[i]!;
      if (i < args.length) {
        if (kw.has(name))
          throw new PyError("TypeError", `macro '${def.name}' got multiple values for argument '${name}'`);
        inner.vars.set(name, args[i]);
      } else if (kw.has(name)) {
        inner.vars.set(name, kw.get(name));
        kw.delete(name);
      } else if (dflt) {
        inner.vars.set(name, await owner.ev(dflt, inner));
      } else {
        inner.vars.set(name, new Undefined(`parameter '${name}' was not provided`));
      }
    }
    if (caller) inner.vars.set("caller", caller);
    else if (kw.has("caller")) {
      inner.vars.set("caller", kw.get("caller"));
      kw.delete("caller");
    } else if (m.usesCaller) inner.vars.set("caller", new Undefined("No caller defined"));
    if (m.catchVarargs) inner.vars.set("varargs", tuple(args.slice(def.params.length)));
    if (m.catchKwargs) {
      const d = new Map<unknown, unknown>();
      for (const [k, v] of kw) d.set(k, v);
      inner.vars.set("kwargs", d);
    } else if (kw.size > 0) {
      const first = kw.keys().next().value as string;
      throw new PyError("TypeError", `macro '${def.name}' takes no keyword argument '${first}'`);
    }
    const buf: string[] = [];
    if (++this.env.callDepth > MAX_CALL_DEPTH) {
      this.env.callDepth = 0;
      throw new PyError("RecursionError", "maximum recursion depth exceeded");
    }
    try {
      await owner.exec(def.body, inner, buf);
    } catch (err) {
      throw owner.wrap(err);
    } finally {
      this.env.callDepth = Math.max(0, this.env.callDepth - 1);
    }
    return buf.join("");
  }

  // ------------------------------------------------------------------------------------------
  // expressions

  async ev(e: Expr, scope: Scope): Promise<unknown> {
    switch (e.k) {
      case "const":
        return e.v;
      case "name": {
        const v = scope.lookup(e.name);
        if (v !== NOT_FOUND) return v;
        if (this.seesContext) {
          const c = this.env.cfg.context.get(e.name);
          if (c !== undefined || this.env.cfg.context.has(e.name)) return c;
        }
        const g = this.env.cfg.globals.get(e.name);
        if (g !== undefined || this.env.cfg.globals.has(e.name)) return g;
        return this.located(new Undefined(`'${e.name}' is undefined`), e);
      }
      case "tuple": {
        const items: unknown[] = [];
        for (const x of e.items) items.push(await this.ev(x, scope));
        return tuple(items);
      }
      case "list": {
        const items: unknown[] = [];
        for (const x of e.items) items.push(await this.ev(x, scope));
        return items;
      }
      case "dict": {
        const m = new Map<unknown, unknown>();
        for (const [k, v] of e.items) {
          const key = await this.ev(k, scope);
          const val = await this.ev(v, scope);
          this.at = k;
          m.set(dictKey(key), val);
        }
        return m;
      }
      case "getattr": {
        const obj = await this.ev(e.obj, scope);
        this.at = e;
        return this.located(this.attr(obj, e.name), e);
      }
      case "getitem": {
        const obj = await this.ev(e.obj, scope);
        if (e.key.k === "slice") {
          const sl = e.key;
          const a = sl.start ? await this.ev(sl.start, scope) : null;
          const b = sl.stop ? await this.ev(sl.stop, scope) : null;
          const c = sl.step ? await this.ev(sl.step, scope) : null;
          this.at = e;
          return slice(obj, a, b, c);
        }
        const key = await this.ev(e.key, scope);
        this.at = e;
        return this.located(this.item(obj, key), e);
      }
      case "slice":
        throw new PyError("TemplateSyntaxError", "slice outside of a subscript");
      case "call":
        return this.evCall(e, scope, null);
      case "filter": {
        const value = e.arg ? await this.ev(e.arg, scope) : null;
        return this.applyFilter(e, value, scope);
      }
      case "test": {
        const value = await this.ev(e.arg, scope);
        const { args, kwargs } = await this.evArgs(e, scope);
        this.at = e;
        const r = await this.test(e.name, value, args, kwargs);
        return e.not ? !r : r;
      }
      case "cond": {
        if (truthy(await this.ev(e.test, scope))) return this.ev(e.yes, scope);
        if (e.no) return this.ev(e.no, scope);
        return new Undefined(
          "the inline if-expression evaluated to false and no else section was defined.",
          true,
        );
      }
      case "bin": {
        const a = await this.ev(e.left, scope);
        const b = await this.ev(e.right, scope);
        this.at = e;
        switch (e.op) {
          case "+":
            return add(a, b);
          case "-":
            return sub(a, b);
          case "*":
            return mul(a, b);
          case "/":
            return truediv(a, b);
          case "//":
            return floordiv(a, b);
          case "%":
            return mod(a, b);
          default:
            return pow(a, b);
        }
      }
      case "concat": {
        let s = "";
        for (const x of e.items) {
          const v = await this.ev(x, scope);
          this.at = x;
          s += str(v);
        }
        return s;
      }
      case "compare": {
        let left = await this.ev(e.first, scope);
        for (const [op, rexpr] of e.ops) {
          const right = await this.ev(rexpr, scope);
          this.at = rexpr;
          let ok: boolean;
          switch (op) {
            case "==":
              ok = eq(left, right);
              break;
            case "!=":
              ok = !eq(left, right);
              break;
            case "in":
              ok = contains(right, left);
              break;
            case "notin":
              ok = !contains(right, left);
              break;
            default: {
              const c = compare(left, right, op);
              ok = op === "<" ? c < 0 : op === "<=" ? c <= 0 : op === ">" ? c > 0 : c >= 0;
            }
          }
          if (!ok) return false;
          left = right;
        }
        return true;
      }
      case "and": {
        const a = await this.ev(e.left, scope);
        return truthy(a) ? this.ev(e.right, scope) : a;
      }
      case "or": {
        const a = await this.ev(e.left, scope);
        return truthy(a) ? a : this.ev(e.right, scope);
      }
      case "unary": {
        const v = await this.ev(e.arg, scope);
        this.at = e;
        if (e.op === "not") return !truthy(v);
        return e.op === "-" ? neg(v) : pos(v);
      }
    }
  }

  /** A missing value remembers where it was looked up: its error points there, not at its use. */
  private located(v: unknown, e: Expr): unknown {
    if (v instanceof Undefined && !v.at) v.at = { path: this.path, line: e.line, col: e.col };
    return v;
  }

  private async evArgs(
    e: { args: Expr[]; kwargs: [string, Expr][]; star: Expr | null; dstar: Expr | null },
    scope: Scope,
  ): Promise<{ args: unknown[]; kwargs: Map<string, unknown> }> {
    const args: unknown[] = [];
    for (const a of e.args) args.push(await this.ev(a, scope));
    const kwargs = new Map<string, unknown>();
    for (const [k, v] of e.kwargs) kwargs.set(k, await this.ev(v, scope));
    if (e.star) {
      const extra = await this.ev(e.star, scope);
      args.push(...iterate(extra));
    }
    if (e.dstar) {
      const extra = await this.ev(e.dstar, scope);
      if (!(extra instanceof Map)) throw new PyError("TypeError", "argument after ** must be a mapping");
      for (const [k, v] of extra) kwargs.set(str(k), v);
    }
    return { args, kwargs };
  }

  private async evCall(e: Expr & { k: "call" }, scope: Scope, caller: Macro | null): Promise<unknown> {
    if (e.fn.k === "getattr") {
      // method calls dispatch directly, without a bound-method object
      const obj = await this.ev(e.fn.obj, scope);
      const { args, kwargs } = await this.evArgs(e, scope);
      this.at = e.fn;
      if (typeof obj === "string" || Array.isArray(obj) || obj instanceof Map) {
        if (!(obj instanceof Map && !hasMethod(obj, e.fn.name) && obj.has(e.fn.name))) {
          const r = callMethod(obj, e.fn.name, args, kwargs, this);
          if (r !== NO_METHOD) return r;
        }
      }
      const fn = this.attr(obj, e.fn.name);
      this.at = e;
      return this.callValue(fn, args, kwargs, caller);
    }
    const fn = await this.ev(e.fn, scope);
    const { args, kwargs } = await this.evArgs(e, scope);
    this.at = e;
    return this.callValue(fn, args, kwargs, caller);
  }

  private async callValue(
    fn: unknown,
    args: unknown[],
    kwargs: Map<string, unknown>,
    caller: Macro | null,
  ): Promise<unknown> {
    if (fn instanceof PyFunc) return fn.fn(args, kwargs);
    if (fn instanceof Macro) return this.invokeMacro(fn, args, kwargs, caller);
    if (fn instanceof LoopCtx) {
      if (!fn.recurse)
        throw new PyError(
          "TypeError",
          "Tried to call non recursive loop.  Maybe you forgot the 'recursive' modifier.",
        );
      return fn.recurse(args[0]);
    }
    if (fn instanceof Undefined) throw undefinedError(fn);
    throw new PyError("TypeError", `'${typeName(fn)}' object is not callable`);
  }

  async call(fn: unknown, args: unknown[], kwargs: Map<string, unknown> = new Map()): Promise<unknown> {
    return this.callValue(fn, args, kwargs, null);
  }

  private async applyFilterChain(chain: Expr, value: unknown, scope: Scope): Promise<unknown> {
    // a filter chain parsed without a start value: innermost filter first
    const filters: (Expr & { k: "filter" })[] = [];
    let cur: Expr | null = chain;
    while (cur && cur.k === "filter") {
      filters.unshift(cur);
      cur = cur.arg;
    }
    let v = value;
    for (const f of filters) v = await this.applyFilter(f, v, scope);
    return v;
  }

  private async applyFilter(e: Expr & { k: "filter" }, value: unknown, scope: Scope): Promise<unknown> {
    const { args, kwargs } = await this.evArgs(e, scope);
    this.at = e;
    return this.filter(e.name, value, args, kwargs);
  }

  async filter(
    name: string,
    value: unknown,
    args: unknown[],
    kwargs: Map<string, unknown> = new Map(),
  ): Promise<unknown> {
    const f = this.env.cfg.filters[name];
    if (!f || !Object.hasOwn(this.env.cfg.filters, name))
      throw new PyError("TemplateAssertionError", `No filter named '${name}'.`);
    return f(this, value, args, kwargs);
  }

  async test(
    name: string,
    value: unknown,
    args: unknown[],
    kwargs: Map<string, unknown> = new Map(),
  ): Promise<boolean> {
    const t = this.env.cfg.tests[name];
    if (!t || !Object.hasOwn(this.env.cfg.tests, name))
      throw new PyError("TemplateAssertionError", `No test named '${name}'.`);
    return truthy(await t(this, value, args, kwargs));
  }

  hasTest(name: string): boolean {
    return Object.hasOwn(this.env.cfg.tests, name);
  }

  hasFilter(name: string): boolean {
    return Object.hasOwn(this.env.cfg.filters, name);
  }

  // ------------------------------------------------------------------------------------------
  // attribute and item access (Jinja: `a.b` tries the attribute first, `a['b']` the item first)

  attr(obj: unknown, name: string): unknown {
    if (obj instanceof Undefined) throw undefinedError(obj);
    if (name.startsWith("_")) {
      return new Undefined(
        `access to attribute ${strRepr(name)} of ${strRepr(typeName(obj))} object is unsafe.`,
      );
    }
    if (hasMethod(obj, name)) return this.boundMethod(obj, name);
    if (obj instanceof Map) {
      if (obj.has(name)) return obj.get(name);
    } else if (obj instanceof Namespace) {
      if (obj.attrs.has(name)) return obj.attrs.get(name);
    } else if (obj instanceof TemplateModule) {
      if (obj.exports.has(name)) return obj.exports.get(name);
    } else if (obj instanceof LoopCtx) {
      const v = this.loopAttr(obj, name);
      if (v !== NOT_FOUND) return v;
    } else if (obj instanceof Macro) {
      if (name === "name") return obj.def.name;
      if (name === "arguments") return tuple(obj.def.params.map(([n]) => n));
    } else if (typeof obj === "object" && obj !== null && "pyAttr" in obj) {
      const v = (obj as { pyAttr(n: string): unknown }).pyAttr(name);
      if (v !== NOT_FOUND && v !== undefined) return v;
    }
    return new Undefined(`${strRepr(objectTypeRepr(obj))} has no attribute ${strRepr(name)}`);
  }

  item(obj: unknown, key: unknown): unknown {
    if (obj instanceof Undefined) throw undefinedError(obj);
    if (obj instanceof Map) {
      const k = dictKey(key);
      if (obj.has(k)) return obj.get(k);
      if (typeof k === "number" || typeof k === "boolean") {
        for (const [kk, v] of obj) if (typeof kk !== "string" && eq(kk, k)) return v;
      }
    } else if ((Array.isArray(obj) && !(obj instanceof DictView)) || typeof obj === "string") {
      if (typeof key === "number" && Number.isInteger(key)) {
        const n = len(obj);
        const i = key < 0 ? key + n : key;
        if (i >= 0 && i < n) return typeof obj === "string" ? [...obj][i] : obj[i];
        return new Undefined(`${strRepr(objectTypeRepr(obj))} has no element ${repr(key)}`);
      }
      if (typeof key === "boolean") return this.item(obj, key ? 1 : 0);
    } else if (obj instanceof DictView && typeof key === "number") {
      throw new PyError("TypeError", `'${obj.kind}' object is not subscriptable`);
    }
    if (typeof key === "string") {
      const a = this.attr(obj, key);
      if (!(a instanceof Undefined)) return a;
    }
    if (typeof key === "string")
      return new Undefined(`${strRepr(objectTypeRepr(obj))} has no attribute ${strRepr(key)}`);
    return new Undefined(`${strRepr(objectTypeRepr(obj))} has no element ${repr(key)}`);
  }

  private boundMethod(obj: unknown, name: string): PyFunc {
    return new PyFunc(name, (args, kwargs) => {
      const r = callMethod(obj, name, args, kwargs, this);
      if (r === NO_METHOD)
        throw new PyError("AttributeError", `'${typeName(obj)}' object has no attribute '${name}'`);
      return r;
    });
  }

  private loopAttr(l: LoopCtx, name: string): unknown {
    const n = l.items.length;
    const i = l.index0;
    switch (name) {
      case "index":
        return i + 1;
      case "index0":
        return i;
      case "revindex":
        return n - i;
      case "revindex0":
        return n - i - 1;
      case "first":
        return i === 0;
      case "last":
        return i === n - 1;
      case "length":
        return n;
      case "depth":
        return l.depth0 + 1;
      case "depth0":
        return l.depth0;
      case "previtem":
        return i > 0 ? l.items[i - 1] : new Undefined("there is no previous item");
      case "nextitem":
        return i + 1 < n ? l.items[i + 1] : new Undefined("there is no next item");
      case "cycle":
        return new PyFunc("cycle", (args) => {
          if (args.length === 0) throw new PyError("TypeError", "no items for cycling given");
          return args[i % args.length];
        });
      case "changed":
        return new PyFunc("changed", (args) => {
          const v = tuple(args);
          if (l.changedLast === NO_METHOD || !eq(l.changedLast, v)) {
            l.changedLast = v;
            return true;
          }
          return false;
        });
    }
    return NOT_FOUND;
  }
}

export function objectTypeRepr(obj: unknown): string {
  if (obj === null) return "None";
  return `${typeName(obj)} object`;
}

const NAMES_CACHE = new WeakMap<object, Set<string>>();

/** Names a macro body reads (to know whether it takes varargs, kwargs or caller). */
function namesUsed(body: Stmt[]): Set<string> {
  const hit = NAMES_CACHE.get(body);
  if (hit) return hit;
  const out = new Set<string>();
  const visit = (n: unknown): void => {
    if (Array.isArray(n)) {
      for (const x of n) visit(x);
      return;
    }
    if (n === null || typeof n !== "object") return;
    const node = n as { k?: string; name?: string };
    if (node.k === "name" && typeof node.name === "string") out.add(node.name);
    if (node.k === "macro") return; // a nested macro's names are its own
    for (const v of Object.values(n)) if (typeof v === "object") visit(v);
  };
  visit(body);
  NAMES_CACHE.set(body, out);
  return out;
}
