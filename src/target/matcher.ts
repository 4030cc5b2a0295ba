/**
 * Compile once, match many: every glob, regex and CIDR in an expression is compiled when the
 * matcher is built, so `match` does no parsing.
 */
import type { DataSource, PeelView, TargetNode } from "./ast.js";
import { comparator, factReading, readPath, scalarToken } from "./data.js";
import { globToRegExp, hasGlobChars } from "./glob.js";
import { type Cidr, cidrContains, parseCidr, parseIp } from "./ip.js";
import { type ParseOptions, parseTarget } from "./parse.js";

export type PeelPredicate = (peel: PeelView) => boolean;

export interface Matcher {
  readonly ast: TargetNode;
  match(peel: PeelView): boolean;
}

function mustGlob(pattern: string, ignoreCase: boolean): RegExp {
  const re = globToRegExp(pattern, ignoreCase);
  // The parser validated every glob; reaching this means a hand-built AST was wrong.
  if (typeof re === "string") throw new Error(`target: ${re}`);
  return re;
}

export function mustCidr(text: string): Cidr {
  const c = parseCidr(text);
  if (typeof c === "string") throw new Error(`target: ${c}`);
  return c;
}

/** Salt's E@ is anchored at the start of the id only (Python's re.match). */
export function idRegex(source: string): RegExp {
  return new RegExp(`^(?:${source})`);
}

/** A tester for the value found at a path: `:` globs, or a comparison. */
export function valueTester(
  node: Extract<TargetNode, { kind: "data" }>,
  value: string,
): (v: unknown) => boolean {
  if (node.op === ":") {
    const re = mustGlob(value, true);
    const token = (t: string) => re.test(t);
    return (v) => {
      const s = scalarToken(v);
      if (s !== undefined) return token(s);
      if (Array.isArray(v)) {
        for (const e of v) {
          const es = scalarToken(e);
          if (es !== undefined && token(es)) return true;
        }
        return false;
      }
      if (v !== null && typeof v === "object") {
        for (const k of Object.keys(v)) if (token(k.toLowerCase())) return true;
      }
      return false;
    };
  }
  const test = comparator(node.op, value);
  if (node.op === "!=") {
    return (v) => {
      const s = scalarToken(v);
      if (s !== undefined) return !test(s);
      if (!Array.isArray(v)) return false;
      for (const e of v) {
        const es = scalarToken(e);
        if (es !== undefined && test(es)) return false;
      }
      return true;
    };
  }
  return (v) => {
    const s = scalarToken(v);
    if (s !== undefined) return test(s);
    if (!Array.isArray(v)) return false;
    for (const e of v) {
      const es = scalarToken(e);
      if (es !== undefined && test(es)) return true;
    }
    return false;
  };
}

function dataRoot(peel: PeelView, source: DataSource): unknown {
  return source === "facts" ? peel.facts : peel.settings;
}

/** The addresses `S@` looks at: the `ipv4` and `ipv6` lists and `default_ipv4`. */
export const IP_FACT_KEYS = ["ipv4", "ipv6", "default_ipv4"] as const;

export function peelAddresses(facts: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const key of IP_FACT_KEYS) {
    const v = facts[key];
    if (typeof v === "string") out.push(v);
    else if (Array.isArray(v)) for (const e of v) if (typeof e === "string") out.push(e);
  }
  return out;
}

export function compilePredicate(node: TargetNode): PeelPredicate {
  switch (node.kind) {
    case "glob": {
      if (!hasGlobChars(node.pattern)) {
        const want = node.pattern;
        return (p) => p.id === want;
      }
      const re = mustGlob(node.pattern, false);
      return (p) => re.test(p.id);
    }
    case "regex": {
      const re = idRegex(node.source);
      return (p) => re.test(p.id);
    }
    case "list": {
      const ids = new Set(node.ids);
      return (p) => ids.has(p.id);
    }
    case "data": {
      const readings = node.splits.map((s) => ({ path: s.path, test: valueTester(node, s.value) }));
      const source = node.source;
      return (p) => {
        const root = dataRoot(p, source);
        for (const r of readings) {
          const v = source === "facts" ? factReading(root, r.path) : readPath(root, r.path);
          if (v !== undefined && r.test(v)) return true;
        }
        return false;
      };
    }
    case "cidr": {
      const cidr = mustCidr(node.cidr);
      return (p) => {
        for (const a of peelAddresses(p.facts)) {
          const ip = parseIp(a);
          if (ip && cidrContains(cidr, ip)) return true;
        }
        return false;
      };
    }
    case "and": {
      const preds = node.children.map(compilePredicate);
      return (p) => preds.every((f) => f(p));
    }
    case "or": {
      const preds = node.children.map(compilePredicate);
      return (p) => preds.some((f) => f(p));
    }
    case "not": {
      const inner = compilePredicate(node.child);
      return (p) => !inner(p);
    }
  }
}

/** Parses (unless given an AST) and compiles. Throws TargetSyntaxError on bad input. */
export function compileTarget(expr: string | TargetNode, opts: ParseOptions = {}): Matcher {
  const ast = typeof expr === "string" ? parseTarget(expr, opts) : expr;
  const match = compilePredicate(ast);
  return { ast, match };
}

/** An expression decided by the peel id alone. */
export interface IdOnlyTarget {
  matchId(id: string): boolean;
  /**
   * The exact ids it can match, when that is knowable without the list of peels (only literal
   * ids and L@ lists, combined by and/or). Undefined for wildcards, regexes and `not`.
   */
  exact: string[] | undefined;
}

function exactIds(node: TargetNode): Set<string> | undefined {
  switch (node.kind) {
    case "glob":
      return hasGlobChars(node.pattern) ? undefined : new Set([node.pattern]);
    case "list":
      return new Set(node.ids);
    case "or": {
      const out = new Set<string>();
      for (const c of node.children) {
        const s = exactIds(c);
        if (!s) return undefined;
        for (const id of s) out.add(id);
      }
      return out;
    }
    case "and": {
      // One literal child bounds the whole intersection; the others only filter it.
      const sets = node.children.map(exactIds);
      const bound = sets.find((s) => s !== undefined);
      if (!bound) return undefined;
      const rest = node.children.map(compilePredicate);
      return new Set([...bound].filter((id) => rest.every((f) => f({ id, facts: {} }))));
    }
    default:
      return undefined;
  }
}

function idOnly(node: TargetNode): boolean {
  switch (node.kind) {
    case "glob":
    case "regex":
    case "list":
      return true;
    case "and":
    case "or":
      return node.children.every(idOnly);
    case "not":
      return idOnly(node.child);
    default:
      return false;
  }
}

/**
 * For the master's shortcut: when the expression needs no facts, settings or addresses, a
 * predicate on ids and, when finite, the ids themselves. Undefined otherwise.
 */
export function peelIdsOnly(expr: string | TargetNode): IdOnlyTarget | undefined {
  const ast = typeof expr === "string" ? parseTarget(expr) : expr;
  if (!idOnly(ast)) return undefined;
  const pred = compilePredicate(ast);
  const exact = exactIds(ast);
  return { matchId: (id) => pred({ id, facts: {} }), exact: exact ? [...exact].sort() : undefined };
}
