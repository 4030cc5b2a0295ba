/**
 * `reactor/top.zy`: which reaction files run for which events. Plain YAML (no template), a list
 * of one-key mappings in file order:
 *
 *   - 'web-*\/myco/deploy/finished': [deploy/nginx]
 *   - '_admin/myco/*':
 *       react: [notify]
 *       throttle: 30s
 *
 * The key is a glob over match keys (`<origin>/<tag>`, `*` crosses `/`). Salt's master-config
 * form (the list under a `reactor:` key) is accepted too. Every matching rule fires.
 */
import { isMap, isScalar, isSeq, type Node, type Pair } from "yaml";
import { globToRegExp } from "../target/glob.js";
import { parseInterval } from "../util/duration.js";
import { didYouMean } from "../util/suggest.js";
import { parseYamlAt, ReactorFileError, type ReactorProblem } from "./errors.js";

export const TOP_FILE = "top.zy";

export interface Rule {
  /** Position in top.zy (0-based), for log lines. */
  index: number;
  glob: string;
  re: RegExp;
  /** Reaction file paths relative to the reactor dir (`deploy/nginx.zy`). */
  reactions: string[];
  /** The refs as written (for messages). */
  refs: string[];
  throttleMs?: number;
  line: number;
}

const RULE_KEYS = ["react", "throttle"];

/**
 * The reaction file a ref names, among `files` (the reactor tree's paths): `deploy/nginx`,
 * `deploy/nginx.zy`, `deploy/nginx.sls` or Salt's `salt://reactor/deploy/nginx.sls`.
 */
export function resolveRef(ref: string, files: ReadonlySet<string>): string | { error: string } {
  let r = ref.trim();
  if (r.startsWith("salt://")) r = r.slice("salt://".length).replace(/^reactor\//, "");
  if (r.startsWith("/")) {
    return {
      error: `reaction ${JSON.stringify(ref)}: use a path relative to the reactor dir (deploy/nginx)`,
    };
  }
  const candidates = /\.(zy|sls)$/.test(r) ? [r] : [`${r}.zy`, `${r}.sls`, `${r}/init.zy`, `${r}/init.sls`];
  for (const c of candidates) if (files.has(c)) return c;
  const reactions = [...files].filter((f) => f !== TOP_FILE && /\.(zy|sls)$/.test(f));
  const base = (f: string) =>
    f
      .replace(/(\/init)?\.(zy|sls)$/, "")
      .split("/")
      .pop();
  const near =
    reactions.find((f) => base(f) === base(candidates[0]!)) ?? didYouMean(candidates[0]!, reactions);
  return {
    error: `reaction file for ${JSON.stringify(ref)} not found (looked for ${candidates.join(", ")})${near ? `; did you mean ${JSON.stringify(near.replace(/\.(zy|sls)$/, ""))}?` : ""}`,
  };
}

function scalarString(n: unknown): string | undefined {
  return isScalar(n) && (typeof n.value === "string" || typeof n.value === "number")
    ? String(n.value)
    : undefined;
}

/** Parses top.zy against the tree's file list; throws ReactorFileError listing every problem. */
export function parseRules(text: string, files: ReadonlySet<string>, file = TOP_FILE): Rule[] {
  const y = parseYamlAt(text, file);
  const problems: ReactorProblem[] = [];
  const problem = (node: Node | null | undefined, message: string) =>
    problems.push({ file, ...y.at(node), message });
  let list: Node | null = y.contents;
  if (list === null) return [];
  if (isMap(list) && list.items.length === 1 && scalarString(list.items[0]!.key) === "reactor") {
    list = (list.items[0]!.value as Node | null) ?? null;
    if (list === null) return [];
  }
  if (!isSeq(list)) {
    problem(list, "top.zy must be a list of rules: - '<origin>/<tag glob>': [reaction, ...]");
    throw new ReactorFileError(problems);
  }
  const rules: Rule[] = [];
  list.items.forEach((item, index) => {
    const node = item as Node;
    if (!isMap(node) || node.items.length !== 1) {
      problem(
        node,
        "each rule is one mapping: '<glob>': [reactions] or '<glob>': {react: [...], throttle: 30s}",
      );
      return;
    }
    const pair = node.items[0] as Pair<Node, Node | null>;
    const glob = scalarString(pair.key);
    if (glob === undefined || glob === "") {
      problem(pair.key, "a rule's key is a match-key glob such as 'web-*/myco/deploy/*'");
      return;
    }
    const re = globToRegExp(glob);
    if (typeof re === "string") {
      problem(pair.key, re);
      return;
    }
    const rule = parseRuleBody(glob, pair.value, problem, files);
    if (rule) rules.push({ index, glob, re, line: y.at(pair.key).line, ...rule });
  });
  if (problems.length > 0) throw new ReactorFileError(problems);
  return rules;
}

function parseRuleBody(
  glob: string,
  body: Node | null,
  problem: (n: Node | null | undefined, m: string) => void,
  files: ReadonlySet<string>,
): Pick<Rule, "reactions" | "refs" | "throttleMs"> | undefined {
  let refsNode: Node | null | undefined = body;
  let throttleMs: number | undefined;
  if (isMap(body)) {
    refsNode = undefined;
    for (const p of body.items as Pair<Node, Node | null>[]) {
      const k = scalarString(p.key);
      if (k === "react") refsNode = p.value;
      else if (k === "throttle") {
        const raw = isScalar(p.value) ? p.value.value : undefined;
        const ms = parseInterval(raw);
        if (ms === undefined || ms <= 0)
          problem(p.value ?? p.key, `throttle: ${JSON.stringify(raw)} is not a duration (30s, 5m, 1h)`);
        else throttleMs = ms;
      } else {
        const near = didYouMean(k ?? "", RULE_KEYS);
        problem(
          p.key,
          `unknown rule key ${JSON.stringify(k)}${near ? ` (did you mean "${near}"?)` : ""}; a rule takes react and throttle`,
        );
      }
    }
    if (refsNode === undefined) {
      problem(body, `rule ${JSON.stringify(glob)} has no react: list`);
      return undefined;
    }
  }
  const refs: { ref: string; node: Node }[] = [];
  if (isSeq(refsNode)) {
    for (const it of refsNode.items as Node[]) {
      const s = scalarString(it);
      if (s === undefined) problem(it, "a reaction is a file name such as deploy/nginx");
      else refs.push({ ref: s, node: it });
    }
  } else if (scalarString(refsNode) !== undefined) {
    refs.push({ ref: scalarString(refsNode)!, node: refsNode as Node });
  } else {
    problem(refsNode ?? body, `rule ${JSON.stringify(glob)}: list the reaction files it runs`);
    return undefined;
  }
  const reactions: string[] = [];
  for (const { ref, node } of refs) {
    const r = resolveRef(ref, files);
    if (typeof r === "string") reactions.push(r);
    else problem(node, r.error);
  }
  return { reactions, refs: refs.map((r) => r.ref), ...(throttleMs !== undefined ? { throttleMs } : {}) };
}

/** The rules an event's match key fires, in file order. */
export function matchingRules(rules: readonly Rule[], key: string): Rule[] {
  return rules.filter((r) => r.re.test(key));
}
