/**
 * What a rendered reaction file asks for: one action per block, `<block-id>: {<action>: fields}`,
 * fields as a mapping or Salt's list of one-key mappings. Validation is all-or-nothing: a file with
 * any invalid block yields no actions at all, so a half-understood reaction never half-runs.
 */
import { isMap, isScalar, isSeq, type Node, type Pair } from "yaml";
import { isValidPeelId } from "../bus/names.js";
import { MASTER_ORIGIN, tagProblem, type ZesterEvent } from "../events/event.js";
import { globToRegExp } from "../target/glob.js";
import { parseInterval } from "../util/duration.js";
import { didYouMean } from "../util/suggest.js";
import { parseYamlAt, ReactorFileError, type ReactorProblem } from "./errors.js";

interface Base {
  /** The block id in the reaction file. */
  block: string;
}

export interface DispatchAction extends Base {
  kind: "dispatch";
  /** As written: dispatch.module, dispatch.state or local.<fn>. */
  action: string;
  target: string;
  fun: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  test: boolean;
  timeoutS?: number;
  maxTargets?: number;
}

export interface EventSendAction extends Base {
  kind: "event.send";
  tag: string;
  data: Record<string, unknown>;
}

export interface EnrollAction extends Base {
  kind: "enroll.approve" | "enroll.reject";
  id: string;
  requirePeel: string;
}

export interface LogAction extends Base {
  kind: "log";
  message: string;
}

export type ReactionAction = DispatchAction | EventSendAction | EnrollAction | LogAction;

export const ACTION_NAMES = [
  "dispatch.module",
  "dispatch.state",
  "event.send",
  "enroll.approve",
  "enroll.reject",
  "log",
] as const;

const FUNCTION_NAME = /^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$/;

type Fields = Map<string, { value: unknown; node: Node }>;

class BlockProblems {
  readonly list: { node: Node | null | undefined; message: string }[] = [];
  add(node: Node | null | undefined, message: string): void {
    this.list.push({ node, message });
  }
}

function toJs(n: Node | null | undefined): unknown {
  if (n === null || n === undefined) return null;
  return (n as unknown as { toJSON(): unknown }).toJSON();
}

/** A mapping, or Salt's list of one-key mappings, as one ordered field map. */
function fieldsOf(node: Node | null, p: BlockProblems, what: string): Fields | undefined {
  const out: Fields = new Map();
  const put = (pair: Pair<Node, Node | null>) => {
    const k = isScalar(pair.key) ? String(pair.key.value) : undefined;
    if (k === undefined) return p.add(pair.key, `${what}: field names are plain words`);
    if (out.has(k)) return p.add(pair.key, `${what}: field ${k} is given twice`);
    out.set(k, { value: toJs(pair.value), node: (pair.value ?? pair.key) as Node });
  };
  if (node === null) return out;
  if (isMap(node)) {
    for (const pair of node.items as Pair<Node, Node | null>[]) put(pair);
    return out;
  }
  if (isSeq(node)) {
    for (const it of node.items as Node[]) {
      if (!isMap(it) || it.items.length !== 1) {
        p.add(it, `${what}: each list item is one key: value (Salt's form), e.g. - tgt: 'web*'`);
        continue;
      }
      put(it.items[0] as Pair<Node, Node | null>);
    }
    return out;
  }
  p.add(node, `${what}: fields are a mapping (or a list of one-key mappings)`);
  return undefined;
}

function unknownFields(
  f: Fields,
  allowed: readonly string[],
  what: string,
  p: BlockProblems,
  keyNodes: Node,
): void {
  for (const [k, { node }] of f) {
    if (allowed.includes(k)) continue;
    const near = didYouMean(k, allowed);
    p.add(
      node ?? keyNodes,
      `${what}: unknown field ${JSON.stringify(k)}${near ? ` (did you mean "${near}"?)` : ""}; it takes ${allowed.join(", ")}`,
    );
  }
}

function str(
  f: Fields,
  key: string,
  what: string,
  p: BlockProblems,
  at: Node,
  required = true,
): string | undefined {
  const e = f.get(key);
  if (e === undefined || e.value === null || e.value === "") {
    if (required) p.add(at, `${what}: ${key} is required`);
    return undefined;
  }
  if (typeof e.value !== "string" && typeof e.value !== "number") {
    p.add(e.node, `${what}: ${key} must be a string`);
    return undefined;
  }
  return String(e.value);
}

function timeoutOf(f: Fields, key: string, what: string, p: BlockProblems): number | undefined {
  const e = f.get(key);
  if (e === undefined || e.value === null) return undefined;
  const ms = parseInterval(e.value);
  if (ms === undefined || ms <= 0) {
    p.add(e.node, `${what}: ${key} must be a positive number of seconds (or 30s, 5m)`);
    return undefined;
  }
  return ms / 1000;
}

function positiveInt(f: Fields, key: string, what: string, p: BlockProblems): number | undefined {
  const e = f.get(key);
  if (e === undefined || e.value === null) return undefined;
  if (typeof e.value !== "number" || !Number.isInteger(e.value) || e.value < 1) {
    p.add(e.node, `${what}: ${key} must be a positive integer`);
    return undefined;
  }
  return e.value;
}

function list(f: Fields, key: string, what: string, p: BlockProblems): unknown[] | undefined {
  const e = f.get(key);
  if (e === undefined || e.value === null) return undefined;
  if (!Array.isArray(e.value)) {
    p.add(e.node, `${what}: ${key} must be a list`);
    return undefined;
  }
  return e.value;
}

function mapping(
  f: Fields,
  key: string,
  what: string,
  p: BlockProblems,
): Record<string, unknown> | undefined {
  const e = f.get(key);
  if (e === undefined || e.value === null) return undefined;
  if (typeof e.value !== "object" || Array.isArray(e.value)) {
    p.add(e.node, `${what}: ${key} must be a mapping`);
    return undefined;
  }
  return e.value as Record<string, unknown>;
}

function bool(f: Fields, key: string, what: string, p: BlockProblems): boolean {
  const e = f.get(key);
  if (e === undefined || e.value === null) return false;
  if (typeof e.value !== "boolean") {
    p.add(e.node, `${what}: ${key} must be true or false`);
    return false;
  }
  return e.value;
}

/** Salt's tgt + tgt_type as a Zester target expression. */
function saltTarget(
  tgt: unknown,
  type: string,
  what: string,
  p: BlockProblems,
  at: Node,
): string | undefined {
  const text = Array.isArray(tgt) ? tgt.map(String).join(",") : typeof tgt === "string" ? tgt : undefined;
  if (text === undefined || text === "") {
    p.add(at, `${what}: tgt is required`);
    return undefined;
  }
  switch (type) {
    case "glob":
      return Array.isArray(tgt) ? `L@${text}` : text;
    case "compound":
      return text;
    case "pcre":
      return `E@${text}`;
    case "list":
      return `L@${text}`;
    case "grain":
      return `G@${text}`;
    case "pillar":
      return `I@${text}`;
    case "ipcidr":
      return `S@${text}`;
    default:
      p.add(
        at,
        `${what}: tgt_type ${JSON.stringify(type)} is not supported (glob, pcre, list, grain, pillar, ipcidr, compound)`,
      );
      return undefined;
  }
}

function dispatchModule(block: string, f: Fields, at: Node, p: BlockProblems): DispatchAction | undefined {
  const what = `${block}: dispatch.module`;
  unknownFields(f, ["target", "function", "args", "kwargs", "test", "timeout", "max_targets"], what, p, at);
  const target = str(f, "target", what, p, at);
  const fun = str(f, "function", what, p, at);
  if (fun !== undefined && !FUNCTION_NAME.test(fun))
    p.add(f.get("function")!.node, `${what}: function must be module.function`);
  const a: DispatchAction = {
    kind: "dispatch",
    action: "dispatch.module",
    block,
    target: target ?? "",
    fun: fun ?? "",
    args: list(f, "args", what, p) ?? [],
    kwargs: mapping(f, "kwargs", what, p) ?? {},
    test: bool(f, "test", what, p),
  };
  return withLimits(a, f, what, p);
}

function withLimits(a: DispatchAction, f: Fields, what: string, p: BlockProblems): DispatchAction {
  const t = timeoutOf(f, "timeout", what, p);
  const m = positiveInt(f, "max_targets", what, p);
  if (t !== undefined) a.timeoutS = t;
  if (m !== undefined) a.maxTargets = m;
  return a;
}

function dispatchState(block: string, f: Fields, at: Node, p: BlockProblems): DispatchAction | undefined {
  const what = `${block}: dispatch.state`;
  unknownFields(f, ["target", "sls", "highstate", "test", "timeout", "max_targets"], what, p, at);
  const target = str(f, "target", what, p, at);
  const slsE = f.get("sls");
  const highstate = bool(f, "highstate", what, p);
  let sls: string[] = [];
  if (slsE !== undefined && slsE.value !== null) {
    if (typeof slsE.value === "string")
      sls = slsE.value
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
    else if (Array.isArray(slsE.value) && slsE.value.every((s) => typeof s === "string"))
      sls = slsE.value as string[];
    else p.add(slsE.node, `${what}: sls is a name or a list of names`);
  }
  if (highstate === sls.length > 0) p.add(at, `${what}: give either sls: <names> or highstate: true`);
  const a: DispatchAction = {
    kind: "dispatch",
    action: "dispatch.state",
    block,
    target: target ?? "",
    fun: highstate ? "state.highstate" : "state.apply",
    args: highstate ? [] : [sls.join(",")],
    kwargs: {},
    test: bool(f, "test", what, p),
  };
  return withLimits(a, f, what, p);
}

function saltLocal(
  block: string,
  name: string,
  f: Fields,
  at: Node,
  p: BlockProblems,
): DispatchAction | undefined {
  const what = `${block}: ${name}`;
  const fun = name.slice("local.".length);
  if (!FUNCTION_NAME.test(fun))
    p.add(at, `${what}: local.<module.function> names a function, e.g. local.state.apply`);
  unknownFields(
    f,
    ["tgt", "tgt_type", "expr_form", "arg", "args", "kwarg", "timeout", "max_targets"],
    what,
    p,
    at,
  );
  const type = str(f, "tgt_type", what, p, at, false) ?? str(f, "expr_form", what, p, at, false) ?? "glob";
  const target = saltTarget(f.get("tgt")?.value, type, what, p, f.get("tgt")?.node ?? at);
  const kwargs: Record<string, unknown> = { ...(mapping(f, "kwarg", what, p) ?? {}) };
  const args = [...(list(f, "arg", what, p) ?? [])];
  // Salt's newer form: `args:` is a list of one-key mappings, the function's keyword arguments.
  for (const item of list(f, "args", what, p) ?? []) {
    if (item !== null && typeof item === "object" && !Array.isArray(item)) Object.assign(kwargs, item);
    else args.push(item);
  }
  const test = kwargs.test === true;
  delete kwargs.test;
  const a: DispatchAction = {
    kind: "dispatch",
    action: name,
    block,
    target: target ?? "",
    fun,
    args,
    kwargs,
    test,
  };
  return withLimits(a, f, what, p);
}

function eventSend(block: string, f: Fields, at: Node, p: BlockProblems): EventSendAction | undefined {
  const what = `${block}: event.send`;
  unknownFields(f, ["tag", "data"], what, p, at);
  const tag = str(f, "tag", what, p, at);
  if (tag !== undefined) {
    const tp = tagProblem(tag);
    if (tp !== undefined) p.add(f.get("tag")!.node, `${what}: ${tp}`);
  }
  return { kind: "event.send", block, tag: tag ?? "", data: mapping(f, "data", what, p) ?? {} };
}

function enroll(
  block: string,
  kind: EnrollAction["kind"],
  f: Fields,
  at: Node,
  p: BlockProblems,
  event: ZesterEvent | undefined,
): EnrollAction | undefined {
  const what = `${block}: ${kind}`;
  unknownFields(f, ["id", "require_peel"], what, p, at);
  if (event !== undefined && event.origin !== MASTER_ORIGIN) {
    p.add(at, `${what}: allowed only in reactions to master events (_master/...), not ${event.origin}/...`);
  }
  const id = str(f, "id", what, p, at);
  if (id !== undefined && !isValidPeelId(id))
    p.add(f.get("id")!.node, `${what}: ${JSON.stringify(id)} is not a peel id`);
  const requirePeel = str(f, "require_peel", what, p, at, false);
  if (requirePeel === undefined) {
    p.add(
      at,
      `${what}: require_peel is required: a peel-id glob the id must match (a guard against approving anything)`,
    );
  } else if (id !== undefined) {
    const re = globToRegExp(requirePeel);
    if (typeof re === "string") p.add(f.get("require_peel")!.node, `${what}: ${re}`);
    else if (!re.test(id))
      p.add(f.get("require_peel")!.node, `${what}: peel ${id} does not match require_peel ${requirePeel}`);
  }
  return { kind, block, id: id ?? "", requirePeel: requirePeel ?? "" };
}

/**
 * The actions of one rendered reaction file; throws ReactorFileError with every problem when any
 * block is invalid. `event` enables the checks that depend on it (enroll.* only for master events).
 */
export function parseReaction(text: string, file: string, event?: ZesterEvent): ReactionAction[] {
  const y = parseYamlAt(text, file);
  const problems: ReactorProblem[] = [];
  const root = y.contents;
  if (root === null) return [];
  if (!isMap(root)) {
    throw new ReactorFileError([
      { file, ...y.at(root), message: "a reaction file is a mapping of <block-id>: {<action>: fields}" },
    ]);
  }
  const actions: ReactionAction[] = [];
  for (const pair of root.items as Pair<Node, Node | null>[]) {
    const block = isScalar(pair.key) ? String(pair.key.value) : "?";
    const p = new BlockProblems();
    const body = pair.value;
    let action: ReactionAction | undefined;
    if (!isMap(body) || body.items.length !== 1) {
      p.add(
        body ?? pair.key,
        `${block}: a block is one action: ${block}: {dispatch.state: {...}} (actions: ${ACTION_NAMES.join(", ")}, local.<function>)`,
      );
    } else {
      const inner = body.items[0] as Pair<Node, Node | null>;
      const name = isScalar(inner.key) ? String(inner.key.value) : "";
      const at = inner.key as Node;
      if (name === "log") {
        const v = toJs(inner.value);
        const msg =
          typeof v === "string"
            ? v
            : v && typeof v === "object" && typeof (v as { message?: unknown }).message === "string"
              ? (v as { message: string }).message
              : undefined;
        if (msg === undefined) p.add(inner.value ?? at, `${block}: log takes a message: log: "text"`);
        else action = { kind: "log", block, message: msg };
      } else {
        const f = fieldsOf(inner.value, p, `${block}: ${name}`);
        if (f) {
          if (name === "dispatch.module") action = dispatchModule(block, f, at, p);
          else if (name === "dispatch.state") action = dispatchState(block, f, at, p);
          else if (name === "event.send") action = eventSend(block, f, at, p);
          else if (name === "enroll.approve" || name === "enroll.reject")
            action = enroll(block, name, f, at, p, event);
          else if (name.startsWith("local.")) action = saltLocal(block, name, f, at, p);
          else if (/^(runner|wheel|caller)\./.test(name)) {
            const hint = /^wheel\.key\.(accept|reject)/.test(name)
              ? " (use enroll.approve / enroll.reject)"
              : "";
            p.add(
              at,
              `${block}: ${name} is not supported${hint}; actions are ${ACTION_NAMES.join(", ")} and local.<function>`,
            );
          } else {
            const near = didYouMean(name, ACTION_NAMES);
            p.add(
              at,
              `${block}: unknown action ${JSON.stringify(name)}${near ? ` (did you mean "${near}"?)` : ""}; actions are ${ACTION_NAMES.join(", ")} and local.<function>`,
            );
          }
        }
      }
    }
    for (const e of p.list) problems.push({ file, ...y.at(e.node ?? pair.key), message: e.message });
    if (p.list.length === 0 && action) actions.push(action);
  }
  if (problems.length > 0) throw new ReactorFileError(problems);
  return actions;
}
