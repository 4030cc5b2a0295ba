/**
 * Python's methods on str, list, tuple and dict, the ones a sandboxed Jinja2 template can call.
 * Mutating methods change the value in place (visible through `{% do %}`) and return None.
 */
import { type FieldAccess, strFormat } from "./format.js";
import { traverse } from "./traverse.js";
import {
  ContextDict,
  chars,
  DictView,
  dictKey,
  eq,
  iterate,
  PyError,
  PyTuple,
  repr,
  sortCompare,
  toNumber,
  tuple,
  typeName,
  view,
} from "./values.js";

/** Returned when the object has no such method (the caller then tries an item, or reports). */
export const NO_METHOD = Symbol("no method");

type Args = unknown[];
type Kwargs = Map<string, unknown>;

function arg(args: Args, kwargs: Kwargs, i: number, name: string, dflt: unknown): unknown {
  if (i < args.length) return args[i];
  if (kwargs.has(name)) return kwargs.get(name);
  return dflt;
}

function needStr(v: unknown, what: string): string {
  if (typeof v !== "string") throw new PyError("TypeError", `${what} arg must be None or str`);
  return v;
}

const WS =
  " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";

function stripChars(s: string, set: string | null, left: boolean, right: boolean): string {
  const cs = set ?? WS;
  let a = 0;
  let b = s.length;
  if (left) while (a < b && cs.includes(s[a]!)) a++;
  if (right) while (b > a && cs.includes(s[b - 1]!)) b--;
  return s.slice(a, b);
}

function splitWs(s: string, max: number): string[] {
  const out: string[] = [];
  let i = 0;
  const n = s.length;
  for (;;) {
    while (i < n && WS.includes(s[i]!)) i++;
    if (i >= n) break;
    if (max >= 0 && out.length >= max) {
      out.push(stripChars(s.slice(i), null, false, true));
      break;
    }
    let j = i;
    while (j < n && !WS.includes(s[j]!)) j++;
    out.push(s.slice(i, j));
    i = j;
  }
  return out;
}

function rsplitWs(s: string, max: number): string[] {
  const out: string[] = [];
  let j = s.length;
  for (;;) {
    while (j > 0 && WS.includes(s[j - 1]!)) j--;
    if (j <= 0) break;
    if (max >= 0 && out.length >= max) {
      out.unshift(stripChars(s.slice(0, j), null, true, false));
      break;
    }
    let i = j;
    while (i > 0 && !WS.includes(s[i - 1]!)) i--;
    out.unshift(s.slice(i, j));
    j = i;
  }
  return out;
}

function split(s: string, sep: unknown, maxArg: unknown, fromRight: boolean): string[] {
  const max = maxArg === null || maxArg === undefined ? -1 : toNumber(maxArg);
  if (sep === null || sep === undefined) return fromRight ? rsplitWs(s, max) : splitWs(s, max);
  const d = needStr(sep, "sep");
  if (d === "") throw new PyError("ValueError", "empty separator");
  const parts = s.split(d);
  if (max < 0 || parts.length - 1 <= max) return parts;
  if (fromRight) {
    const keep = parts.slice(parts.length - max);
    return [parts.slice(0, parts.length - max).join(d), ...keep];
  }
  return [...parts.slice(0, max), parts.slice(max).join(d)];
}

export function pyTitle(s: string): string {
  let out = "";
  let prevCased = false;
  for (const ch of s) {
    const cased = ch.toLowerCase() !== ch.toUpperCase();
    out += cased ? (prevCased ? ch.toLowerCase() : ch.toUpperCase()) : ch;
    prevCased = cased;
  }
  return out;
}

export function pyCapitalize(s: string): string {
  const cs = chars(s);
  if (cs.length === 0) return s;
  return cs[0]!.toUpperCase() + cs.slice(1).join("").toLowerCase();
}

function isCased(s: string, upper: boolean): boolean {
  let any = false;
  for (const ch of s) {
    const lo = ch.toLowerCase();
    const up = ch.toUpperCase();
    if (lo === up) continue;
    any = true;
    if (upper ? ch !== up : ch !== lo) return false;
  }
  return any;
}

function prefixes(v: unknown): string[] {
  if (v instanceof PyTuple) return v.map((x) => needStr(x, "startswith"));
  if (typeof v !== "string") {
    throw new PyError("TypeError", `startswith first arg must be str or a tuple of str, not ${typeName(v)}`);
  }
  return [v];
}

function sliceRange(s: string, args: Args): string {
  const start = args[1] === undefined || args[1] === null ? 0 : toNumber(args[1]);
  const end = args[2] === undefined || args[2] === null ? s.length : toNumber(args[2]);
  const n = s.length;
  const a = start < 0 ? Math.max(0, n + start) : start;
  const b = end < 0 ? Math.max(0, n + end) : end;
  return s.slice(a, b);
}

function pad(width: unknown, fill: unknown): [number, string] {
  const f = fill === undefined ? " " : String(fill);
  if (f.length !== 1) throw new PyError("TypeError", "The fill character must be exactly one character long");
  return [toNumber(width), f];
}

export function strMethod(s: string, name: string, args: Args, kwargs: Kwargs, access: FieldAccess): unknown {
  switch (name) {
    case "lower":
    case "casefold":
      return s.toLowerCase();
    case "upper":
      return s.toUpperCase();
    case "swapcase":
      return Array.from(s, (c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase())).join("");
    case "title":
      return pyTitle(s);
    case "capitalize":
      return pyCapitalize(s);
    case "strip":
    case "lstrip":
    case "rstrip": {
      const set = arg(args, kwargs, 0, "chars", null);
      return stripChars(s, set === null ? null : needStr(set, "strip"), name !== "rstrip", name !== "lstrip");
    }
    case "split":
    case "rsplit":
      return split(
        s,
        arg(args, kwargs, 0, "sep", null),
        arg(args, kwargs, 1, "maxsplit", -1),
        name === "rsplit",
      );
    case "splitlines": {
      const keep = Boolean(arg(args, kwargs, 0, "keepends", false));
      const out: string[] = [];
      const re = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/g;
      let last = 0;
      for (const m of s.matchAll(re)) {
        out.push(s.slice(last, keep ? m.index! + m[0].length : m.index));
        last = m.index! + m[0].length;
      }
      if (last < s.length) out.push(s.slice(last));
      return out;
    }
    case "startswith":
    case "endswith": {
      const sub = sliceRange(s, args);
      return prefixes(args[0]).some((p) => (name === "startswith" ? sub.startsWith(p) : sub.endsWith(p)));
    }
    case "replace": {
      const old = needStr(args[0], "replace");
      const neu = needStr(args[1], "replace");
      const count = args[2] === undefined ? -1 : toNumber(args[2]);
      if (count < 0) {
        if (old === "") return neu + chars(s).join(neu) + (s === "" ? "" : neu);
        return s.split(old).join(neu);
      }
      let out = s;
      let from = 0;
      for (let i = 0; i < count; i++) {
        const k = out.indexOf(old, from);
        if (k < 0) break;
        out = out.slice(0, k) + neu + out.slice(k + old.length);
        from = k + neu.length + (old === "" ? 1 : 0);
      }
      return out;
    }
    case "find":
    case "index":
    case "rfind":
    case "rindex": {
      const sub = needStr(args[0], name);
      const start = args[1] === undefined || args[1] === null ? 0 : toNumber(args[1]);
      const a = start < 0 ? Math.max(0, s.length + start) : start;
      const region = sliceRange(s, args);
      const k = name.startsWith("r") ? region.lastIndexOf(sub) : region.indexOf(sub);
      if (k < 0) {
        if (name.endsWith("index")) throw new PyError("ValueError", "substring not found");
        return -1;
      }
      return k + a;
    }
    case "count": {
      const sub = needStr(args[0], "count");
      const region = sliceRange(s, args);
      if (sub === "") return chars(region).length + 1;
      return region.split(sub).length - 1;
    }
    case "join": {
      const items = iterate(args[0]);
      return items
        .map((x, i) => {
          if (typeof x !== "string") {
            throw new PyError("TypeError", `sequence item ${i}: expected str instance, ${typeName(x)} found`);
          }
          return x;
        })
        .join(s);
    }
    case "format":
      return strFormat(s, args, kwargs, access);
    case "format_map":
      return strFormat(s, [], args[0] as Map<string, unknown>, access);
    case "center": {
      const [w, f] = pad(args[0], args[1]);
      const n = chars(s).length;
      if (w <= n) return s;
      const total = w - n;
      const left = Math.floor(total / 2) + (total & w & 1);
      return f.repeat(left) + s + f.repeat(total - left);
    }
    case "ljust": {
      const [w, f] = pad(args[0], args[1]);
      return s + f.repeat(Math.max(0, w - chars(s).length));
    }
    case "rjust": {
      const [w, f] = pad(args[0], args[1]);
      return f.repeat(Math.max(0, w - chars(s).length)) + s;
    }
    case "zfill": {
      const w = toNumber(args[0]);
      const n = chars(s).length;
      if (w <= n) return s;
      const sign = s[0] === "-" || s[0] === "+" ? s[0] : "";
      return sign + "0".repeat(w - n) + s.slice(sign.length);
    }
    case "partition":
    case "rpartition": {
      const sep = needStr(args[0], name);
      if (sep === "") throw new PyError("ValueError", "empty separator");
      const k = name === "partition" ? s.indexOf(sep) : s.lastIndexOf(sep);
      if (k < 0) return name === "partition" ? tuple([s, "", ""]) : tuple(["", "", s]);
      return tuple([s.slice(0, k), sep, s.slice(k + sep.length)]);
    }
    case "removeprefix": {
      const p = needStr(args[0], name);
      return p && s.startsWith(p) ? s.slice(p.length) : s;
    }
    case "removesuffix": {
      const p = needStr(args[0], name);
      return p && s.endsWith(p) ? s.slice(0, s.length - p.length) : s;
    }
    case "isdigit":
    case "isnumeric":
    case "isdecimal":
      return s.length > 0 && /^\p{Nd}+$/u.test(s);
    case "isalpha":
      return s.length > 0 && /^\p{L}+$/u.test(s);
    case "isalnum":
      return s.length > 0 && /^[\p{L}\p{Nd}]+$/u.test(s);
    case "isspace":
      return s.length > 0 && [...s].every((c) => WS.includes(c));
    case "islower":
      return isCased(s, false);
    case "isupper":
      return isCased(s, true);
    case "istitle":
      return s.length > 0 && pyTitle(s) === s && /\p{L}/u.test(s);
    case "isidentifier":
      return /^[\p{L}_][\p{L}\p{N}_]*$/u.test(s);
    case "expandtabs": {
      const size = args[0] === undefined ? 8 : toNumber(args[0]);
      let col = 0;
      let out = "";
      for (const c of s) {
        if (c === "\t") {
          const n = size > 0 ? size - (col % size) : 0;
          out += " ".repeat(n);
          col += n;
        } else {
          out += c;
          col = c === "\n" || c === "\r" ? 0 : col + 1;
        }
      }
      return out;
    }
  }
  return NO_METHOD;
}

function listIndex(list: unknown[], i: unknown): number {
  let n = toNumber(i);
  if (n < 0) n += list.length;
  return n;
}

export function listMethod(list: unknown[], name: string, args: Args, kwargs: Kwargs): unknown {
  const isTuple = list instanceof PyTuple;
  switch (name) {
    case "index": {
      const k = list.findIndex((x) => eq(x, args[0]));
      if (k < 0)
        throw new PyError(
          "ValueError",
          isTuple ? "tuple.index(x): x not in tuple" : `${repr(args[0])} is not in list`,
        );
      return k;
    }
    case "count":
      return list.filter((x) => eq(x, args[0])).length;
  }
  if (isTuple || list instanceof DictView) return NO_METHOD;
  switch (name) {
    case "append":
      list.push(args[0]);
      return null;
    case "extend":
      list.push(...iterate(args[0]));
      return null;
    case "insert": {
      let i = listIndex(list, args[0]);
      i = Math.max(0, Math.min(i, list.length));
      list.splice(i, 0, args[1]);
      return null;
    }
    case "pop": {
      if (list.length === 0) throw new PyError("IndexError", "pop from empty list");
      const i = args.length > 0 ? listIndex(list, args[0]) : list.length - 1;
      if (i < 0 || i >= list.length) throw new PyError("IndexError", "pop index out of range");
      return list.splice(i, 1)[0];
    }
    case "remove": {
      const k = list.findIndex((x) => eq(x, args[0]));
      if (k < 0) throw new PyError("ValueError", "list.remove(x): x not in list");
      list.splice(k, 1);
      return null;
    }
    case "reverse":
      list.reverse();
      return null;
    case "sort": {
      const rev = Boolean(kwargs.get("reverse"));
      list.sort(sortCompare);
      if (rev) list.reverse();
      return null;
    }
    case "copy":
      return [...list];
    case "clear":
      list.length = 0;
      return null;
  }
  return NO_METHOD;
}

function pairs(v: unknown): [unknown, unknown][] {
  if (v instanceof Map) return [...v.entries()];
  return iterate(v).map((p, i) => {
    const kv = iterate(p);
    if (kv.length !== 2) {
      throw new PyError(
        "ValueError",
        `dictionary update sequence element #${i} has length ${kv.length}; 2 is required`,
      );
    }
    return [kv[0], kv[1]];
  });
}

export function dictMethod(d: Map<unknown, unknown>, name: string, args: Args, kwargs: Kwargs): unknown {
  switch (name) {
    case "keys":
      return view("dict_keys", [...d.keys()]);
    case "values":
      return view("dict_values", [...d.values()]);
    case "items":
      return view(
        "dict_items",
        [...d.entries()].map(([k, v]) => tuple([k, v])),
      );
    case "get": {
      const k = dictKey(args[0]);
      if (d.has(k)) return d.get(k);
      if (d instanceof ContextDict && typeof k === "string" && k.includes(":")) {
        return traverse(d, k, args.length > 1 ? args[1] : null);
      }
      return args.length > 1 ? args[1] : null;
    }
    case "update":
      if (args.length > 0) for (const [k, v] of pairs(args[0])) d.set(dictKey(k), v);
      for (const [k, v] of kwargs) d.set(k, v);
      return null;
    case "setdefault": {
      const k = dictKey(args[0]);
      if (!d.has(k)) d.set(k, args.length > 1 ? args[1] : null);
      return d.get(k);
    }
    case "pop": {
      const k = dictKey(args[0]);
      if (d.has(k)) {
        const v = d.get(k);
        d.delete(k);
        return v;
      }
      if (args.length > 1) return args[1];
      throw new PyError("KeyError", repr(args[0]));
    }
    case "popitem": {
      const last = [...d.keys()].pop();
      if (last === undefined && d.size === 0)
        throw new PyError("KeyError", "'popitem(): dictionary is empty'");
      const v = d.get(last);
      d.delete(last);
      return tuple([last, v]);
    }
    case "copy":
      return new Map(d);
    case "clear":
      d.clear();
      return null;
  }
  return NO_METHOD;
}

/** Names a sandboxed template may read as methods of each type (for `getattr` without a call). */
export function hasMethod(obj: unknown, name: string): boolean {
  if (typeof obj === "string") return STR_METHODS.has(name);
  if (obj instanceof PyTuple || obj instanceof DictView) return name === "index" || name === "count";
  if (Array.isArray(obj)) return LIST_METHODS.has(name);
  if (obj instanceof Map) return DICT_METHODS.has(name);
  return false;
}

const STR_METHODS = new Set(
  "lower casefold upper swapcase title capitalize strip lstrip rstrip split rsplit splitlines startswith endswith replace find index rfind rindex count join format format_map center ljust rjust zfill partition rpartition removeprefix removesuffix isdigit isnumeric isdecimal isalpha isalnum isspace islower isupper istitle isidentifier expandtabs".split(
    " ",
  ),
);
const LIST_METHODS = new Set(
  "index count append extend insert pop remove reverse sort copy clear".split(" "),
);
const DICT_METHODS = new Set("keys values items get update setdefault pop popitem copy clear".split(" "));

export function callMethod(
  obj: unknown,
  name: string,
  args: Args,
  kwargs: Kwargs,
  access: FieldAccess,
): unknown {
  if (typeof obj === "string") return strMethod(obj, name, args, kwargs, access);
  if (Array.isArray(obj)) return listMethod(obj, name, args, kwargs);
  if (obj instanceof Map) return dictMethod(obj, name, args, kwargs);
  return NO_METHOD;
}
