/** Jinja2 3.1's builtin filters, with Python semantics. */
import { percentFormat, toFixed } from "./format.js";
import type { FilterFn, Runtime } from "./interp.js";
import { pyCapitalize } from "./methods.js";
import { add } from "./operators.js";
import {
  chars,
  compare,
  eq,
  float,
  int,
  isDict,
  isFloat,
  isInt,
  isNumber,
  iterate,
  len,
  PyError,
  PyFloat,
  PyTuple,
  repr,
  sortCompare,
  str,
  toNumber,
  truthy,
  tuple,
  typeName,
  Undefined,
} from "./values.js";

type Kw = Map<string, unknown>;

/** Positional-or-keyword parameter `i` named `name`. */
export function param(args: unknown[], kwargs: Kw, i: number, name: string, dflt: unknown): unknown {
  if (i < args.length) return args[i];
  if (kwargs.has(name)) return kwargs.get(name);
  return dflt;
}

function s(v: unknown): string {
  return str(v);
}

/** Jinja's attribute paths for filters: `a.b.0` (digits are indexes). */
export function attrGetter(rt: Runtime, attribute: unknown, dflt?: unknown): (v: unknown) => unknown {
  const parts =
    typeof attribute === "string"
      ? attribute.split(".").map((p) => (/^\d+$/.test(p) ? Number(p) : p))
      : [attribute];
  return (item: unknown) => {
    let cur = item;
    for (const p of parts) {
      cur = rt.item(cur, p);
      if (cur instanceof Undefined) {
        if (dflt !== undefined) return dflt;
        break;
      }
    }
    return cur;
  };
}

function lowerKey(caseSensitive: boolean): (v: unknown) => unknown {
  return (v) => (!caseSensitive && typeof v === "string" ? v.toLowerCase() : v);
}

function list(v: unknown): unknown[] {
  return [...iterate(v)];
}

function htmlEscape(v: string): string {
  return v
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&#34;")
    .replace(/'/g, "&#39;");
}

function pyRound(x: number, digits: number): number {
  return Number(toFixed(x, digits));
}

async function selectOrReject(
  rt: Runtime,
  value: unknown,
  args: unknown[],
  kwargs: Kw,
  attr: boolean,
  keep: boolean,
): Promise<unknown[]> {
  const items = list(value);
  let getter: (v: unknown) => unknown = (v) => v;
  let rest = args;
  if (attr) {
    if (args.length === 0) throw new PyError("FilterArgumentError", "Missing parameter for attribute name");
    getter = attrGetter(rt, args[0]);
    rest = args.slice(1);
  }
  const out: unknown[] = [];
  for (const item of items) {
    const v = getter(item);
    let ok: boolean;
    if (rest.length === 0) ok = truthy(v);
    else {
      const name = s(rest[0]);
      ok = await rt.test(name, v, rest.slice(1), kwargs);
    }
    if (ok === keep) out.push(item);
  }
  return out;
}

function wordwrap(
  text: string,
  width: number,
  breakLong: boolean,
  wrapstring: string,
  breakHyphens: boolean,
): string {
  // textwrap.TextWrapper(width, expand_tabs=False, replace_whitespace=False, break_long_words, break_on_hyphens)
  const paragraphs = text.split(/\r\n|\r|\n/);
  return paragraphs
    .map((para) => {
      const chunks = para
        .split(breakHyphens ? /(\s+|(?<=[^\s-]-)(?=[^\s-]))/ : /(\s+)/)
        .filter((c) => c !== "");
      const lines: string[] = [];
      let cur: string[] = [];
      let curLen = 0;
      chunks.reverse();
      while (chunks.length > 0) {
        if (cur.length === 0 && lines.length > 0 && /^\s+$/.test(chunks[chunks.length - 1]!)) chunks.pop();
        while (chunks.length > 0) {
          const c = chunks[chunks.length - 1]!;
          if (curLen + c.length <= width) {
            cur.push(c);
            curLen += c.length;
            chunks.pop();
          } else break;
        }
        if (chunks.length > 0 && chunks[chunks.length - 1]!.length > width) {
          const c = chunks.pop()!;
          if (breakLong) {
            const room = Math.max(1, width - curLen);
            cur.push(c.slice(0, room));
            chunks.push(c.slice(room));
          } else if (cur.length === 0) {
            cur.push(c);
          } else chunks.push(c);
        }
        while (cur.length > 0 && /^\s+$/.test(cur[cur.length - 1]!)) cur.pop();
        if (cur.length > 0) lines.push(cur.join(""));
        cur = [];
        curLen = 0;
      }
      return lines.join(wrapstring);
    })
    .join(wrapstring);
}

function sumValues(values: unknown[], start: unknown): unknown {
  let total = start;
  for (const v of values) total = add(total, v);
  return total;
}

class GroupTuple extends PyTuple {
  pyAttr(name: string): unknown {
    if (name === "grouper") return this[0];
    if (name === "list") return this[1];
    return undefined;
  }
}

export const FILTERS: Record<string, FilterFn> = {
  abs: (_rt, v) => {
    if (typeof v === "bigint") return v < 0n ? -v : v;
    if (typeof v === "boolean") return v ? 1 : 0;
    if (isFloat(v)) return float(Math.abs(toNumber(v)));
    if (typeof v === "number") return Math.abs(v);
    throw new PyError("TypeError", `bad operand type for abs(): '${typeName(v)}'`);
  },
  attr: (rt, v, a) => rt.attr(v, s(a[0])),
  batch: (_rt, v, a, k) => {
    const n = toNumber(param(a, k, 0, "linecount", 1));
    const fill = param(a, k, 1, "fill_with", undefined);
    const items = list(v);
    const out: unknown[][] = [];
    for (let i = 0; i < items.length; i += n) out.push(items.slice(i, i + n));
    const last = out[out.length - 1];
    if (fill !== undefined && fill !== null && last) while (last.length < n) last.push(fill);
    return out;
  },
  capitalize: (_rt, v) => pyCapitalize(s(v)),
  center: (_rt, v, a, k) => {
    const w = toNumber(param(a, k, 0, "width", 80));
    const t = s(v);
    const n = chars(t).length;
    if (w <= n) return t;
    const total = w - n;
    const left = Math.floor(total / 2) + (total & w & 1);
    return " ".repeat(left) + t + " ".repeat(total - left);
  },
  count: (_rt, v) => len(v),
  default: (_rt, v, a, k) => {
    const dflt = param(a, k, 0, "default_value", "");
    const boolean = truthy(param(a, k, 1, "boolean", false));
    if (v instanceof Undefined || (boolean && !truthy(v))) return dflt;
    return v;
  },
  dictsort: (_rt, v, a, k) => {
    if (!isDict(v)) throw new PyError("TypeError", "dictsort expects a mapping");
    const cs = truthy(param(a, k, 0, "case_sensitive", false));
    const by = s(param(a, k, 1, "by", "key"));
    const rev = truthy(param(a, k, 2, "reverse", false));
    const pos = by === "key" ? 0 : by === "value" ? 1 : -1;
    if (pos < 0) throw new PyError("FilterArgumentError", 'You can only sort by either "key" or "value"');
    const key = lowerKey(cs);
    const items = [...v.entries()].map(([kk, vv]) => tuple([kk, vv]));
    items.sort((x, y) => sortCompare(key(x[pos]), key(y[pos])));
    if (rev) items.reverse();
    return items;
  },
  escape: (_rt, v) => htmlEscape(s(v)),
  filesizeformat: (_rt, v, a, k) => {
    const bytes = toNumber(typeof v === "string" ? Number(v) : v);
    const binary = truthy(param(a, k, 0, "binary", false));
    const base = binary ? 1024 : 1000;
    const prefixes = binary
      ? ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
      : ["kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    if (bytes === 1) return "1 Byte";
    if (bytes < base) return `${Math.trunc(bytes)} Bytes`;
    let unit = base;
    let prefix = prefixes[0]!;
    for (let i = 0; i < prefixes.length; i++) {
      unit = base ** (i + 2);
      prefix = prefixes[i]!;
      if (bytes < unit) return `${toFixed((base * bytes) / unit, 1)} ${prefix}`;
    }
    return `${toFixed((base * bytes) / unit, 1)} ${prefix}`;
  },
  first: (_rt, v) => {
    const items = iterate(v);
    return items.length > 0 ? items[0] : new Undefined("No first item, sequence was empty.");
  },
  float: (_rt, v, a, k) => {
    const dflt = param(a, k, 0, "default", new PyFloat(0));
    if (isNumber(v)) return float(toNumber(v));
    if (typeof v === "string") {
      const t = v.trim().replace(/_/g, "");
      if (/^[+-]?(\d+\.?\d*(e[+-]?\d+)?|\.\d+(e[+-]?\d+)?|inf(inity)?|nan)$/i.test(t)) {
        const n = /inf/i.test(t)
          ? t.startsWith("-")
            ? -Infinity
            : Infinity
          : /nan/i.test(t)
            ? Number.NaN
            : Number(t);
        return float(n);
      }
    }
    return dflt;
  },
  forceescape: (_rt, v) => htmlEscape(s(v)),
  format: (_rt, v, a, k) => {
    if (a.length > 0 && k.size > 0) {
      throw new PyError(
        "FilterArgumentError",
        "can't handle positional and keyword arguments at the same time",
      );
    }
    if (k.size > 0) {
      const m = new Map<unknown, unknown>(k);
      return percentFormat(s(v), m);
    }
    return percentFormat(s(v), a.length === 1 && a[0] instanceof Map ? a[0] : tuple(a));
  },
  groupby: (rt, v, a, k) => {
    const attribute = param(a, k, 0, "attribute", null);
    const dflt = param(a, k, 1, "default", undefined);
    const cs = truthy(param(a, k, 2, "case_sensitive", false));
    const get = attrGetter(rt, attribute, dflt ?? undefined);
    const key = lowerKey(cs);
    const items = list(v).sort((x, y) => sortCompare(key(get(x)), key(get(y))));
    const out: GroupTuple[] = [];
    for (const item of items) {
      const g = key(get(item));
      const last = out[out.length - 1];
      if (last && eq(key(last[0]), g)) (last[1] as unknown[]).push(item);
      else {
        // the grouper is the first item's own value (not the lower-cased key)
        const t = new GroupTuple();
        t.push(get(item), [item]);
        out.push(t);
      }
    }
    return out;
  },
  indent: (_rt, v, a, k) => {
    const width = param(a, k, 0, "width", 4);
    const first = truthy(param(a, k, 1, "first", false));
    const blank = truthy(param(a, k, 2, "blank", false));
    const ind = typeof width === "string" ? width : " ".repeat(toNumber(width));
    const text = `${s(v)}\n`;
    const lines = splitlines(text);
    let rv: string;
    if (blank) rv = lines.join(`\n${ind}`);
    else {
      rv = lines.shift() ?? "";
      if (lines.length > 0) rv += `\n${lines.map((l) => (l ? ind + l : l)).join("\n")}`;
    }
    return first ? ind + rv : rv;
  },
  int: (_rt, v, a, k) => {
    const dflt = param(a, k, 0, "default", 0);
    const base = toNumber(param(a, k, 1, "base", 10));
    if (typeof v === "string") {
      let t = v.trim().replace(/_/g, "").toLowerCase();
      let b = base;
      const neg = t.startsWith("-");
      if (neg || t.startsWith("+")) t = t.slice(1);
      const prefixed = /^0([box])/.exec(t);
      if (prefixed && (base === 16 || base === 8 || base === 2 || base === 0)) {
        b = prefixed[1] === "x" ? 16 : prefixed[1] === "o" ? 8 : 2;
        t = t.slice(2);
      }
      const digits = "0123456789abcdefghijklmnopqrstuvwxyz".slice(0, b === 0 ? 10 : b);
      if (t.length > 0 && [...t].every((c) => digits.includes(c))) {
        let n = 0n;
        for (const c of t) n = n * BigInt(b === 0 ? 10 : b) + BigInt(digits.indexOf(c));
        return int(neg ? -n : n);
      }
      const f = /^(\d+\.?\d*(e[+-]?\d+)?|\.\d+)$/.test(t) ? Number(t) : Number.NaN;
      if (Number.isFinite(f)) return int(BigInt(Math.trunc(neg ? -f : f)));
      return dflt;
    }
    if (typeof v === "boolean") return v ? 1 : 0;
    if (isInt(v)) return v;
    if (isFloat(v)) {
      const n = toNumber(v);
      return Number.isFinite(n) ? int(BigInt(Math.trunc(n))) : dflt;
    }
    return dflt;
  },
  items: (_rt, v) => {
    if (v instanceof Undefined) return [];
    if (!isDict(v)) throw new PyError("TypeError", "Can only get item pairs from a mapping.");
    return [...v.entries()].map(([kk, vv]) => tuple([kk, vv]));
  },
  join: (rt, v, a, k) => {
    const d = s(param(a, k, 0, "d", ""));
    const attribute = param(a, k, 1, "attribute", null);
    let items = list(v);
    if (attribute !== null) items = items.map(attrGetter(rt, attribute));
    return items.map(s).join(d);
  },
  last: (_rt, v) => {
    const items = iterate(v);
    return items.length > 0 ? items[items.length - 1] : new Undefined("No last item, sequence was empty.");
  },
  length: (_rt, v) => len(v),
  list: (_rt, v) => list(v),
  lower: (_rt, v) => s(v).toLowerCase(),
  map: async (rt, v, a, k) => {
    const items = list(v);
    if (a.length === 0 && k.has("attribute")) {
      const dflt = k.get("default");
      const get = attrGetter(rt, k.get("attribute"), dflt);
      return items.map(get);
    }
    if (a.length === 0) throw new PyError("FilterArgumentError", "map requires a filter argument");
    const name = s(a[0]);
    const rest = a.slice(1);
    const out: unknown[] = [];
    for (const item of items) out.push(await rt.filter(name, item, rest, k));
    return out;
  },
  max: (rt, v, a, k) => minmax(rt, v, a, k, 1),
  min: (rt, v, a, k) => minmax(rt, v, a, k, -1),
  pprint: (_rt, v) => repr(v),
  random: (_rt, v) => {
    const items = iterate(v);
    if (items.length === 0) throw new PyError("IndexError", "Cannot choose from an empty sequence");
    return items[Math.floor(Math.random() * items.length)];
  },
  reject: (rt, v, a, k) => selectOrReject(rt, v, a, k, false, false),
  rejectattr: (rt, v, a, k) => selectOrReject(rt, v, a, k, true, false),
  replace: (_rt, v, a, k) => {
    const old = s(param(a, k, 0, "old", ""));
    const neu = s(param(a, k, 1, "new", ""));
    const count = param(a, k, 2, "count", null);
    const t = s(v);
    if (count === null) return old === "" ? neu + chars(t).join(neu) + neu : t.split(old).join(neu);
    let out = t;
    let from = 0;
    for (let i = 0; i < toNumber(count); i++) {
      const at = out.indexOf(old, from);
      if (at < 0) break;
      out = out.slice(0, at) + neu + out.slice(at + old.length);
      from = at + neu.length;
    }
    return out;
  },
  reverse: (_rt, v) => {
    if (typeof v === "string") return chars(v).reverse().join("");
    return list(v).reverse();
  },
  round: (_rt, v, a, k) => {
    const precision = toNumber(param(a, k, 0, "precision", 0));
    const method = s(param(a, k, 1, "method", "common"));
    const x = toNumber(v);
    if (method === "common") return isInt(v) || typeof v === "boolean" ? v : float(pyRound(x, precision));
    const f = 10 ** precision;
    if (method === "ceil") return float(Math.ceil(x * f) / f);
    if (method === "floor") return float(Math.floor(x * f) / f);
    throw new PyError("FilterArgumentError", "method must be common, ceil or floor");
  },
  safe: (_rt, v) => s(v),
  select: (rt, v, a, k) => selectOrReject(rt, v, a, k, false, true),
  selectattr: (rt, v, a, k) => selectOrReject(rt, v, a, k, true, true),
  slice: (_rt, v, a, k) => {
    const n = toNumber(param(a, k, 0, "slices", 1));
    const fill = param(a, k, 1, "fill_with", null);
    const seq = list(v);
    const per = Math.floor(seq.length / n);
    const extra = seq.length % n;
    const out: unknown[][] = [];
    let offset = 0;
    for (let i = 0; i < n; i++) {
      const start = offset + i * per;
      if (i < extra) offset++;
      const end = offset + (i + 1) * per;
      const part = seq.slice(start, end);
      if (fill !== null && i >= extra) part.push(fill);
      out.push(part);
    }
    return out;
  },
  sort: (rt, v, a, k) => {
    const rev = truthy(param(a, k, 0, "reverse", false));
    const cs = truthy(param(a, k, 1, "case_sensitive", false));
    const attribute = param(a, k, 2, "attribute", null);
    const getters =
      attribute === null
        ? [(x: unknown) => x]
        : typeof attribute === "string"
          ? attribute.split(",").map((a) => attrGetter(rt, a.trim()))
          : [attrGetter(rt, attribute)];
    const key = lowerKey(cs);
    const items = list(v);
    items.sort((x, y) => {
      for (const get of getters) {
        const c = sortCompare(key(get(x)), key(get(y)));
        if (c !== 0) return c;
      }
      return 0;
    });
    if (rev) items.reverse();
    return items;
  },
  string: (_rt, v) => s(v),
  striptags: (_rt, v) =>
    s(v)
      .replace(/<!--.*?-->|<[^>]*>/gs, "")
      .split(/\s+/)
      .filter((x) => x)
      .join(" ")
      .replace(/&amp;/g, "&")
      .replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">")
      .replace(/&#34;|&quot;/g, '"')
      .replace(/&#39;/g, "'"),
  sum: (rt, v, a, k) => {
    const attribute = param(a, k, 0, "attribute", null);
    const start = param(a, k, 1, "start", 0);
    let items = list(v);
    if (attribute !== null) items = items.map(attrGetter(rt, attribute));
    return sumValues(items, start);
  },
  title: (_rt, v) =>
    s(v)
      .split(/([-\s({[<]+)/)
      .filter((x) => x)
      .map((w) => {
        const cs = chars(w);
        return (cs[0] ?? "").toUpperCase() + cs.slice(1).join("").toLowerCase();
      })
      .join(""),
  trim: (_rt, v, a, k) => {
    const cs = param(a, k, 0, "chars", null);
    const t = s(v);
    if (cs === null) return t.replace(/^\s+|\s+$/g, "");
    const set = s(cs);
    let i = 0;
    let j = t.length;
    while (i < j && set.includes(t[i]!)) i++;
    while (j > i && set.includes(t[j - 1]!)) j--;
    return t.slice(i, j);
  },
  truncate: (_rt, v, a, k) => {
    const t = s(v);
    const length = toNumber(param(a, k, 0, "length", 255));
    const killwords = truthy(param(a, k, 1, "killwords", false));
    const end = s(param(a, k, 2, "end", "..."));
    const leewayV = param(a, k, 3, "leeway", null);
    const leeway = leewayV === null ? 5 : toNumber(leewayV);
    if (t.length <= length + leeway) return t;
    if (killwords) return t.slice(0, length - end.length) + end;
    const cut = t.slice(0, length - end.length);
    const sp = cut.lastIndexOf(" ");
    return (sp >= 0 ? cut.slice(0, sp) : cut) + end;
  },
  unique: (rt, v, a, k) => {
    const cs = truthy(param(a, k, 0, "case_sensitive", false));
    const attribute = param(a, k, 1, "attribute", null);
    const get = attribute === null ? (x: unknown) => x : attrGetter(rt, attribute);
    const key = lowerKey(cs);
    const seen: unknown[] = [];
    const out: unknown[] = [];
    for (const item of iterate(v)) {
      const kk = key(get(item));
      if (!seen.some((x) => eq(x, kk))) {
        seen.push(kk);
        out.push(item);
      }
    }
    return out;
  },
  upper: (_rt, v) => s(v).toUpperCase(),
  urlencode: (_rt, v) => {
    const quote = (x: unknown) =>
      encodeURIComponent(s(x)).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
    const qs = (x: unknown) => quote(x).replace(/%20/g, "+");
    if (isDict(v)) return [...v.entries()].map(([kk, vv]) => `${qs(kk)}=${qs(vv)}`).join("&");
    if (typeof v !== "string" && Array.isArray(v))
      return v.map((p) => iterate(p).map(qs).join("=")).join("&");
    return quote(v).replace(/%2F/g, "/");
  },
  wordcount: (_rt, v) => (s(v).match(/\w+/gu) ?? []).length,
  wordwrap: (_rt, v, a, k) => {
    const width = toNumber(param(a, k, 0, "width", 79));
    const breakLong = truthy(param(a, k, 1, "break_long_words", true));
    const wrap = param(a, k, 2, "wrapstring", null);
    const hyph = truthy(param(a, k, 3, "break_on_hyphens", true));
    return wordwrap(s(v), width, breakLong, wrap === null ? "\n" : s(wrap), hyph);
  },
  xmlattr: (_rt, v, a, k) => {
    const autospace = truthy(param(a, k, 0, "autospace", true));
    if (!isDict(v)) throw new PyError("TypeError", "xmlattr expects a mapping");
    const parts: string[] = [];
    for (const [kk, vv] of v) {
      if (vv === null || vv instanceof Undefined) continue;
      parts.push(`${htmlEscape(s(kk))}="${htmlEscape(s(vv))}"`);
    }
    const rv = parts.join(" ");
    return autospace && rv ? ` ${rv}` : rv;
  },
};
FILTERS.d = FILTERS.default!;
FILTERS.e = FILTERS.escape!;

function splitlines(t: string): string[] {
  const out = t.split(/\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/);
  if (out[out.length - 1] === "") out.pop();
  return out;
}

function minmax(rt: Runtime, v: unknown, a: unknown[], k: Kw, dir: 1 | -1): unknown {
  const cs = truthy(param(a, k, 0, "case_sensitive", false));
  const attribute = param(a, k, 1, "attribute", null);
  const get = attribute === null ? (x: unknown) => x : attrGetter(rt, attribute);
  const key = lowerKey(cs);
  const items = iterate(v);
  if (items.length === 0) return new Undefined(`No aggregated item, sequence was empty.`);
  let best = items[0];
  for (const x of items.slice(1)) {
    const c = compare(key(get(x)), key(get(best)), dir > 0 ? ">" : "<");
    if (dir > 0 ? c > 0 : c < 0) best = x;
  }
  return best;
}
