/**
 * What Salt adds to Jinja2 (salt/utils/jinja.py and the execution modules formulas call from
 * templates): filters, tests, `raise`, and the `salt` mapping with the builtins that only read
 * grains and pillar. Everything else in `salt[...]` goes through the renderer's `call` bridge.
 */
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { posix } from "node:path";
import { errText } from "../util/errors.js";
import { param } from "./filters.js";
import type { FilterFn, Runtime, TestFn } from "./interp.js";
import { TemplateModule } from "./interp.js";
import { callMethod, NO_METHOD } from "./methods.js";
import { pyJson, pyYaml, yamlDoubleQuoted, yamlSingleQuoted } from "./serialize.js";
import { traverse } from "./traverse.js";
import {
  compare,
  contains,
  deepCopy,
  eq,
  float,
  fromJs,
  isDict,
  isList,
  iterate,
  PyError,
  PyFunc,
  type PyTuple,
  str,
  toJs,
  toNumber,
  truthy,
  tuple,
} from "./values.js";

type Kw = Map<string, unknown>;

// ---------------------------------------------------------------------------------------------
// salt.utils.data / dictupdate semantics

/** salt.utils.dictupdate.update: recursive merge of `upd` into `dest` (in place). */
export function dictUpdate(
  dest: unknown,
  upd: unknown,
  recursive = true,
  mergeLists = false,
): Map<unknown, unknown> {
  if (!isDict(dest) || !isDict(upd)) {
    throw new PyError("TypeError", "Cannot update using non-dict types in dictupdate.update()");
  }
  let rec = recursive;
  if (![...upd.keys()].some((k) => dest.has(k))) rec = false;
  for (const [k, val] of upd) {
    const sub = dest.get(k);
    if (rec && isDict(sub) && isDict(val)) dest.set(k, dictUpdate(sub, val, true, mergeLists));
    else if (rec && isList(sub) && isList(val) && mergeLists) {
      const merged = deepCopy(sub) as unknown[];
      for (const x of val) if (!merged.some((m) => eq(m, x))) merged.push(x);
      dest.set(k, merged);
    } else dest.set(k, val);
  }
  return dest;
}

/** fnmatch.fnmatchcase */
function fnmatch(name: string, pattern: string): boolean {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") re += "[\\s\\S]*";
    else if (c === "?") re += "[\\s\\S]";
    else if (c === "[") {
      const j = pattern.indexOf("]", i + 2);
      if (j < 0) re += "\\[";
      else {
        let set = pattern.slice(i + 1, j).replace(/\\/g, "\\\\");
        if (set.startsWith("!")) set = `^${set.slice(1)}`;
        re += `[${set}]`;
        i = j;
      }
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  return new RegExp(`^(?:${re})$`).test(name);
}

/** salt.utils.data.filter_by */
export function filterBy(
  lookup: unknown,
  grainValue: unknown,
  merge: unknown,
  dflt: unknown,
  base: unknown,
): unknown {
  if (!isDict(lookup)) throw new PyError("SaltException", "filter_by lookup_dict must be a dictionary");
  let ret: unknown = null;
  for (const each of Array.isArray(grainValue) ? grainValue : [grainValue]) {
    for (const [key, v] of lookup) {
      if (fnmatch(str(each), str(key))) {
        ret = v;
        break;
      }
    }
    if (ret !== null) break;
  }
  if (ret === null) ret = lookup.has(dflt) ? lookup.get(dflt) : null;
  if (truthy(base) && lookup.has(base)) {
    const baseValues = lookup.get(base);
    if (ret === null) ret = baseValues;
    else if (isDict(baseValues)) {
      if (!isDict(ret))
        throw new PyError("SaltException", "filter_by default and look-up values must both be dictionaries.");
      ret = dictUpdate(deepCopy(baseValues), ret);
    }
  }
  if (truthy(merge)) {
    if (!isDict(merge)) throw new PyError("SaltException", "filter_by merge argument must be a dictionary.");
    if (ret === null) ret = merge;
    else dictUpdate(ret, deepCopy(merge));
  }
  return ret;
}

function pillarGet(pillar: unknown, args: unknown[], kw: Kw): unknown {
  const key = param(args, kw, 0, "key", "");
  let dflt = param(args, kw, 1, "default", "");
  const merge = truthy(param(args, kw, 2, "merge", false));
  const mergeLists = truthy(param(args, kw, 3, "merge_nested_lists", false));
  const delimiter = str(param(args, kw, 4, "delimiter", ":"));
  if (merge) {
    if (isDict(dflt)) {
      const ret = traverse(pillar, key, new Map(), delimiter);
      if (isDict(ret)) {
        dflt = deepCopy(dflt);
        return dictUpdate(dflt, ret, true, mergeLists);
      }
    } else if (isList(dflt)) {
      const ret = traverse(pillar, key, [], delimiter);
      if (isList(ret)) {
        const out = deepCopy(dflt) as unknown[];
        for (const x of ret) if (!out.some((m) => eq(m, x))) out.push(x);
        return out;
      }
    }
  }
  return traverse(pillar, key, dflt, delimiter);
}

const MISSING = Symbol("missing");

// ---------------------------------------------------------------------------------------------
// the `salt` mapping

export interface SaltContext {
  grains: unknown;
  pillar: unknown;
  opts: unknown;
  call?: (fun: string, args: unknown[], kwargs: Record<string, unknown>) => Promise<unknown>;
  log(level: string, message: string): void;
  /** One conversion cache per render: data from a call keeps its identity. */
  cache: WeakMap<object, unknown>;
  /** The states tree's files, relative and sorted (for `cp.list_*`). */
  files?: () => Promise<string[]>;
}

/** Salt's cp.list_master / list_master_dirs / list_states over the states tree. */
async function treeFiles(c: SaltContext, a: unknown[], k: Kw): Promise<string[]> {
  const prefix = str(param(a, k, 1, "prefix", ""));
  return (await (c.files?.() ?? Promise.resolve([]))).filter((f) => f.startsWith(prefix));
}

type Builtin = (ctx: SaltContext, args: unknown[], kw: Kw) => unknown;

const LOG_LEVELS = ["debug", "info", "warning", "warn", "error", "critical", "exception", "trace"];

const BUILTINS: Record<string, Builtin> = {
  "grains.filter_by": (c, a, k) => {
    const grain = str(param(a, k, 1, "grain", "os_family"));
    return filterBy(
      param(a, k, 0, "lookup_dict", null),
      traverse(c.grains, grain, [], ":"),
      param(a, k, 2, "merge", null),
      param(a, k, 3, "default", "default"),
      param(a, k, 4, "base", null),
    );
  },
  "grains.get": (c, a, k) =>
    traverse(
      c.grains,
      param(a, k, 0, "key", ""),
      param(a, k, 1, "default", ""),
      str(param(a, k, 2, "delimiter", ":")),
    ),
  "grains.items": (c) => c.grains,
  "grains.item": (c, a) => {
    const out = new Map<unknown, unknown>();
    for (const x of a) out.set(x, traverse(c.grains, x, "", ":"));
    return out;
  },
  "grains.has_value": (c, a, k) => truthy(traverse(c.grains, param(a, k, 0, "key", ""), null, ":")),
  "pillar.get": (c, a, k) => pillarGet(c.pillar, a, k),
  "pillar.items": (c) => c.pillar,
  "pillar.raw": (c) => c.pillar,
  "pillar.item": (c, a) => {
    const out = new Map<unknown, unknown>();
    for (const x of a) out.set(x, traverse(c.pillar, x, "", ":"));
    return out;
  },
  "config.get": (c, a, k) => {
    const key = param(a, k, 0, "key", "");
    const dflt = param(a, k, 1, "default", "");
    const delimiter = str(param(a, k, 2, "delimiter", ":"));
    const merge = param(a, k, 3, "merge", null);
    if (merge !== null && merge !== undefined) {
      // merge: collect the mapping from every source, later sources win (pillar over grains)
      let out: unknown = isDict(dflt) ? deepCopy(dflt) : null;
      for (const src of [c.opts, c.grains, c.pillar]) {
        const v = traverse(src, key, MISSING, delimiter);
        if (v === MISSING) continue;
        if (isDict(v))
          out = isDict(out) ? dictUpdate(out, deepCopy(v), str(merge) === "recurse") : deepCopy(v);
        else if (out === null) out = v;
      }
      return out ?? dflt;
    }
    for (const src of [c.opts, c.grains, c.pillar]) {
      const v = traverse(src, key, MISSING, delimiter);
      if (v !== MISSING) return v;
    }
    return dflt;
  },
  "config.option": (c, a, k) =>
    traverse(c.opts, param(a, k, 0, "value", ""), param(a, k, 1, "default", ""), ":"),
  "slsutil.merge": (_c, a, k) => {
    const objA = param(a, k, 0, "obj_a", null);
    const objB = param(a, k, 1, "obj_b", null);
    const strategy = str(param(a, k, 2, "strategy", "smart"));
    const mergeLists = truthy(param(a, k, 4, "merge_lists", false));
    if (strategy === "overwrite") return dictUpdate(deepCopy(objA), objB, false);
    if (strategy === "list") return dictUpdate(deepCopy(objA), objB, true, true);
    return dictUpdate(deepCopy(objA), objB, true, mergeLists);
  },
  "slsutil.update": (_c, a, k) =>
    dictUpdate(
      param(a, k, 0, "dest", null),
      param(a, k, 1, "upd", null),
      truthy(param(a, k, 2, "recursive_update", true)),
      truthy(param(a, k, 3, "merge_lists", false)),
    ),
  "defaults.merge": (_c, a, k) => {
    const dest = param(a, k, 0, "dest", null);
    const src = param(a, k, 1, "src", null);
    const mergeLists = truthy(param(a, k, 2, "merge_lists", false));
    const inPlace = truthy(param(a, k, 3, "in_place", true));
    return dictUpdate(inPlace ? dest : deepCopy(dest), src, true, mergeLists);
  },
  "defaults.update": (_c, a, k) => {
    const dest = param(a, k, 0, "dest", null);
    const defaults = param(a, k, 1, "defaults", null);
    const mergeLists = truthy(param(a, k, 2, "merge_lists", true));
    const inPlace = truthy(param(a, k, 3, "in_place", true));
    const target = inPlace ? dest : deepCopy(dest);
    if (!isDict(target) || !isDict(defaults))
      throw new PyError("TypeError", "defaults.update expects dictionaries");
    for (const [name, entry] of target) {
      const merged = dictUpdate(deepCopy(defaults), entry, true, mergeLists);
      target.set(name, merged);
    }
    return target;
  },
  "defaults.deepcopy": (_c, a, k) => deepCopy(param(a, k, 0, "source", null)),
  // Salt's status.time: the local time now, through strftime (a pure function, so also in settings).
  "status.time": async (_c, a, k) => {
    const { dateCast, strftime } = await import("./strftime.js");
    const { date, micro } = dateCast(null);
    return strftime(date, str(param(a, k, 0, "format", "%A, %d. %B %Y %I:%M%p")), micro);
  },
  "cp.list_master": (c, a, k) => treeFiles(c, a, k),
  "cp.list_master_dirs": async (c, a, k) => {
    // Every directory that holds a file, and each parent of one, under the prefix.
    const prefix = str(param(a, k, 1, "prefix", ""));
    const dirs = new Set<string>();
    for (const f of await (c.files?.() ?? Promise.resolve([]))) {
      for (let d = posix.dirname(f); d !== "." && d !== ""; d = posix.dirname(d)) dirs.add(d);
    }
    return [...dirs].filter((d) => d.startsWith(prefix)).sort();
  },
  "cp.list_states": async (c) => {
    const states = new Set<string>();
    for (const f of await (c.files?.() ?? Promise.resolve([]))) {
      const m = /^(.*?)(\/init)?\.(sls|zy)$/.exec(f);
      if (m && !(m[1] === "" && m[2])) states.add(m[1]!.replace(/\//g, "."));
    }
    return [...states].sort();
  },
  "test.true": () => true,
  "test.false": () => false,
};
for (const level of LOG_LEVELS) {
  BUILTINS[`log.${level}`] = (c, a) => {
    c.log(level === "warn" ? "warning" : level, a.map(str).join(" "));
    return "";
  };
}

/** `salt['mod.fn']`, `salt.mod.fn`: a builtin above, or an execution function via the bridge. */
export class SaltFunctions {
  constructor(private readonly ctx: SaltContext) {}

  pyRepr(): string {
    return "<salt functions>";
  }

  pyAttr(name: string): unknown {
    if (!name.includes(".")) return new SaltModule(this, name);
    return this.fn(name);
  }

  fn(name: string): PyFunc {
    const ctx = this.ctx;
    const builtin = BUILTINS[name];
    if (builtin && Object.hasOwn(BUILTINS, name)) return new PyFunc(name, (a, k) => builtin(ctx, a, k));
    return new PyFunc(name, (a, k) => bridge(ctx, name, a, k));
  }
}

class SaltModule {
  constructor(
    private readonly fns: SaltFunctions,
    readonly name: string,
  ) {}

  pyRepr(): string {
    return `<salt module '${this.name}'>`;
  }

  pyAttr(fn: string): unknown {
    return this.fns.fn(`${this.name}.${fn}`);
  }
}

export async function bridge(ctx: SaltContext, fun: string, args: unknown[], kw: Kw): Promise<unknown> {
  if (!ctx.call) throw new PyError("SaltRenderError", `salt['${fun}'] is not available here`);
  const kwargs: Record<string, unknown> = {};
  for (const [k, v] of kw) kwargs[k] = toJs(v);
  return fromJs(await ctx.call(fun, args.map(toJs), kwargs), ctx.cache);
}

// ---------------------------------------------------------------------------------------------
// regular expressions: Python syntax → JavaScript

function pyRegex(pattern: string, flags: string): RegExp {
  let p = pattern;
  let f = flags;
  const inline = /^\(\?([aiLmsux]+)\)/.exec(p);
  if (inline) {
    p = p.slice(inline[0].length);
    for (const c of inline[1]!) if ("ims".includes(c) && !f.includes(c)) f += c;
  }
  p = p
    .replace(/\(\?P<([A-Za-z_]\w*)>/g, "(?<$1>")
    .replace(/\(\?P=([A-Za-z_]\w*)\)/g, "\\k<$1>")
    .replace(/\\Z/g, "$(?![\\s\\S])")
    .replace(/\\A/g, "^");
  try {
    return new RegExp(p, `${f}u`);
  } catch {
    try {
      return new RegExp(p, f);
    } catch (err) {
      throw new PyError("re.error", errText(err));
    }
  }
}

function reFlags(a: unknown[], k: Kw, from: number): string {
  let f = "";
  if (truthy(param(a, k, from, "ignorecase", false))) f += "i";
  if (truthy(param(a, k, from + 1, "multiline", false))) f += "m";
  return f;
}

function groups(m: RegExpExecArray): PyTuple {
  return tuple(m.slice(1).map((g) => (g === undefined ? null : g)));
}

function pyReplacement(repl: string): string {
  return repl
    .replace(/\$/g, "$$$$")
    .replace(/\\g<(\d+)>/g, "$$$1")
    .replace(/\\g<([A-Za-z_]\w*)>/g, "$$<$1>")
    .replace(/\\(\d{1,2})/g, "$$$1")
    .replace(/\\n/g, "\n")
    .replace(/\\t/g, "\t")
    .replace(/\\\\/g, "\\");
}

function shellQuote(s: string): string {
  if (s === "") return "''";
  if (/^[\w@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, "'\"'\"'")}'`;
}

function uuid5(name: string): string {
  const ns = Buffer.from("91633EBF1C865E33935A28061F4B480E", "hex");
  const h = createHash("sha1").update(ns).update(name, "utf8").digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function uniqueList(values: unknown[]): unknown[] {
  const out: unknown[] = [];
  for (const v of values) if (!out.some((x) => eq(x, v))) out.push(v);
  return out;
}

function textOf(v: unknown): string {
  return v instanceof TemplateModule ? v.body : str(v);
}

export function saltFilters(
  parseData: (format: "yaml" | "json", text: string) => unknown,
): Record<string, FilterFn> {
  const f: Record<string, FilterFn> = {
    yaml: (_rt, v, a, k) => pyYaml(v, truthy(param(a, k, 0, "flow_style", true))),
    json: (_rt, v, a, k) => {
      const indent = param(a, k, 1, "indent", null);
      return pyJson(v, {
        sortKeys: truthy(param(a, k, 0, "sort_keys", true)),
        indent: indent === null ? null : (indent as number),
      });
    },
    tojson: (_rt, v, a, k) => {
      const indent = param(a, k, 0, "indent", null);
      return pyJson(v, { indent: indent === null ? null : (indent as number) })
        .replace(/</g, "\\u003c")
        .replace(/>/g, "\\u003e")
        .replace(/&/g, "\\u0026")
        .replace(/'/g, "\\u0027");
    },
    python: (_rt, v) => str(v),
    yaml_encode: (_rt, v) => pyYaml(v, true, false),
    yaml_dquote: (_rt, v) => yamlDoubleQuoted(str(v)),
    yaml_squote: (_rt, v) => yamlSingleQuoted(str(v)),
    load_yaml: (_rt, v) => parseData("yaml", textOf(v)),
    load_json: (_rt, v) => parseData("json", textOf(v)),
    load_text: (_rt, v) => textOf(v),
    traverse: (_rt, v, a, k) =>
      traverse(
        v,
        param(a, k, 0, "key", ""),
        param(a, k, 1, "default", null),
        str(param(a, k, 2, "delimiter", ":")),
      ),
    sequence: (_rt, v) => (Array.isArray(v) || isDict(v) ? v : [v]),
    to_bool: (_rt, v) => {
      if (v === null) return false;
      if (typeof v === "boolean") return v;
      if (typeof v === "string") return ["yes", "1", "true"].includes(v.toLowerCase());
      if (typeof v === "number" || typeof v === "bigint") return toNumber(v) > 0;
      if (Array.isArray(v) || isDict(v)) return iterate(v).length > 0;
      return false;
    },
    to_num: (_rt, v) => {
      const t = str(v).trim();
      if (/^[+-]?\d+$/.test(t)) return Number(t);
      if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t)) return float(Number(t));
      return v;
    },
    is_list: (_rt, v) => isList(v),
    is_iter: (_rt, v) => typeof v !== "string" && (Array.isArray(v) || isDict(v)),
    exactly_n_true: (_rt, v, a, k) =>
      iterate(v).filter(truthy).length === toNumber(param(a, k, 0, "amount", 1)),
    exactly_one_true: (_rt, v) => iterate(v).filter(truthy).length === 1,
    skip: () => "",
    quote: (_rt, v) => shellQuote(str(v)),
    regex_escape: (_rt, v) => str(v).replace(/[^\w]/gu, (c) => `\\${c}`),
    regex_search: (_rt, v, a, k) => {
      const m = pyRegex(str(param(a, k, 0, "rgx", "")), reFlags(a, k, 1)).exec(str(v));
      return m ? groups(m) : null;
    },
    regex_match: (_rt, v, a, k) => {
      const re = pyRegex(str(param(a, k, 0, "rgx", "")), `${reFlags(a, k, 1)}y`);
      re.lastIndex = 0;
      const m = re.exec(str(v));
      return m ? groups(m) : null;
    },
    regex_replace: (_rt, v, a, k) => {
      const re = pyRegex(str(param(a, k, 0, "rgx", "")), `${reFlags(a, k, 2)}g`);
      return str(v).replace(re, pyReplacement(str(param(a, k, 1, "val", ""))));
    },
    uuid: (_rt, v) => uuid5(str(v)),
    unique: (_rt, v) => uniqueList(iterate(v)),
    min: (_rt, v) => extreme(iterate(v), -1),
    max: (_rt, v) => extreme(iterate(v), 1),
    avg: (_rt, v) => {
      const items = iterate(v);
      if (!Array.isArray(v)) return float(toNumber(v));
      return float(items.reduce<number>((s, x) => s + toNumber(x), 0) / items.length);
    },
    union: (_rt, v, a) => uniqueList([...iterate(v), ...iterate(a[0])]),
    intersect: (_rt, v, a) => uniqueList(iterate(v).filter((x) => contains(a[0], x))),
    difference: (_rt, v, a) => uniqueList(iterate(v).filter((x) => !contains(a[0], x))),
    symmetric_difference: (_rt, v, a) => {
      const other = iterate(a[0]);
      const both = uniqueList([...iterate(v), ...other]);
      return both.filter((x) => !(contains(v, x) && contains(a[0], x)));
    },
    flatten: (_rt, v, a, k) => {
      const levels = param(a, k, 0, "levels", null);
      const keepNulls = truthy(param(a, k, 1, "preserve_nulls", false));
      const walk = (items: unknown[], depth: number): unknown[] => {
        const out: unknown[] = [];
        for (const x of items) {
          if (x === null && !keepNulls) continue;
          if (Array.isArray(x) && (levels === null || depth < toNumber(levels)))
            out.push(...walk(x, depth + 1));
          else out.push(x);
        }
        return out;
      };
      return walk(iterate(v), 0);
    },
    zip: (_rt, v, a) => {
      const lists = [iterate(v), ...a.map(iterate)];
      const n = Math.min(...lists.map((l) => l.length));
      return Array.from({ length: n }, (_, i) => tuple(lists.map((l) => l[i])));
    },
    path_join: (_rt, v, a) => {
      const parts = [v, ...a].map(str);
      return parts.reduce((acc, p) => (p.startsWith("/") ? p : acc === "" ? p : posix.join(acc, p)), "");
    },
    md5: (_rt, v) => createHash("md5").update(str(v)).digest("hex"),
    sha1: (_rt, v) => createHash("sha1").update(str(v)).digest("hex"),
    sha256: (_rt, v) => createHash("sha256").update(str(v)).digest("hex"),
    sha512: (_rt, v) => createHash("sha512").update(str(v)).digest("hex"),
    base64_encode: (_rt, v) => Buffer.from(str(v), "utf8").toString("base64"),
    base64_decode: (_rt, v) => Buffer.from(str(v), "base64").toString("utf8"),
    // The date and address filters are loaded on first use: most templates never call them.
    strftime: async (_rt, v, a, k) => {
      const { dateCast, strftime } = await import("./strftime.js");
      const { date, micro } = dateCast(v);
      return strftime(date, str(param(a, k, 0, "format", "%Y-%m-%d")), micro);
    },
    date_format: (rt, v, a, k) => f.strftime!(rt, v, a, k),
    ipaddr: async (_rt, v, a, k) =>
      (await import("./ipaddr.js")).ipaddrFilter(v, param(a, k, 0, "options", null)),
    ipv4: async (_rt, v, a, k) =>
      (await import("./ipaddr.js")).ipvFilter(v, 4, param(a, k, 0, "options", null)),
    ipv6: async (_rt, v, a, k) =>
      (await import("./ipaddr.js")).ipvFilter(v, 6, param(a, k, 0, "options", null)),
    ip_host: (_rt, v, a, k) => network("ip_host", v, a, k),
    network_hosts: (_rt, v, a, k) => network("network_hosts", v, a, k),
    network_size: (_rt, v, a, k) => network("network_size", v, a, k),
    // Salt's json_query is jmespath.search(query, data); the library is loaded on first use.
    json_query: async (_rt, v, a, k) => {
      const { search } = (await import("jmespath")).default;
      try {
        return fromJs(search(toJs(v) as never, str(param(a, k, 0, "query", ""))), new WeakMap());
      } catch (err) {
        throw new PyError(
          "SaltRenderError",
          `json_query: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
    },
    is_ip: (_rt, v) => isIP(str(v)) !== 0,
    is_ipv4: (_rt, v) => isIP(str(v)) === 4,
    is_ipv6: (_rt, v) => isIP(str(v)) === 6,
    method_call: (rt: Runtime, v, a, k) => {
      const r = callMethod(v, str(a[0]), a.slice(1), k, rt);
      if (r === NO_METHOD) return null;
      return r;
    },
  };
  return f;
}

async function network(
  kind: "ip_host" | "network_hosts" | "network_size",
  v: unknown,
  a: unknown[],
  k: Map<string, unknown>,
): Promise<unknown> {
  const { perNetwork } = await import("./ipaddr.js");
  return perNetwork(kind)(v, param(a, k, 0, "options", null), param(a, k, 1, "version", null));
}

function extreme(items: unknown[], dir: 1 | -1): unknown {
  if (items.length === 0)
    throw new PyError("ValueError", `${dir > 0 ? "max" : "min"}() arg is an empty sequence`);
  let best = items[0];
  for (const x of items.slice(1)) {
    const c = compare(x, best, dir > 0 ? ">" : "<");
    if (dir > 0 ? c > 0 : c < 0) best = x;
  }
  return best;
}

export const SALT_TESTS: Record<string, TestFn> = {
  match: (_rt, v, a, k) => {
    const re = pyRegex(str(param(a, k, 0, "rgx", "")), `${reFlags(a, k, 1)}y`);
    re.lastIndex = 0;
    return re.test(str(v));
  },
  equalto: (_rt, v, a) => eq(v, a[0]),
  list: (_rt, v) => isList(v),
};

/** `env`: Salt's environment globals; `context`: names Salt passes in every render's context. */
export function saltGlobals(ctx: SaltContext): { env: Map<string, unknown>; context: Map<string, unknown> } {
  const g = new Map<string, unknown>();
  const c = new Map<string, unknown>();
  c.set("salt", new SaltFunctions(ctx));
  g.set(
    "raise",
    new PyFunc("raise", (a) => {
      throw new PyError("TemplateError", str(a[0]));
    }),
  );
  c.set(
    "basket",
    new PyFunc("basket", (a, k) =>
      bridge(ctx, "basket.get", [param(a, k, 0, "target", ""), param(a, k, 1, "fun", "")], new Map()),
    ),
  );
  g.set(
    "odict",
    new PyFunc("odict", (a, k) => {
      const m = new Map<unknown, unknown>();
      if (a.length > 0) for (const [kk, vv] of iterate(a[0]).map((p) => iterate(p))) m.set(kk, vv);
      for (const [kk, vv] of k) m.set(kk, vv);
      return m;
    }),
  );
  return { env: g, context: c };
}
