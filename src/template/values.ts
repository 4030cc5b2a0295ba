/**
 * Python's value model as Jinja2 sees it, on JavaScript values:
 *
 * | Python | here |
 * |---|---|
 * | None | `null` |
 * | bool | `boolean` |
 * | int | an integral `number`, or a `bigint` beyond 2^53 |
 * | float | a non-integral `number`, or a `PyFloat` for integral floats (`3.0`) |
 * | str | `string` |
 * | list | `Array` |
 * | tuple | `PyTuple` (an Array subclass) |
 * | dict | `Map` (insertion order, non-string keys) |
 * | undefined name | `Undefined` (StrictUndefined: any use but `is defined`/`default` raises) |
 *
 * Plain JavaScript data (facts, settings, parsed YAML) enters through `fromJs` and leaves through
 * `toJs`; nothing else crosses, so a template can never reach a JavaScript prototype or property.
 */

/** A float whose value is integral (`3.0`): JavaScript numbers cannot tell it from the int 3. */
export class PyFloat {
  constructor(readonly v: number) {}
}

export class PyTuple extends Array<unknown> {
  static override get [Symbol.species]() {
    return Array;
  }
}

/** `dict.keys()`, `.values()`, `.items()`: iterable, printable as Python prints them, not indexable. */
export class DictView extends Array<unknown> {
  kind: "dict_keys" | "dict_values" | "dict_items" = "dict_keys";
  static override get [Symbol.species]() {
    return Array;
  }
}

/**
 * The context's `grains`, `pillar`, `facts` and `settings` mappings: their `.get('a:b')` walks
 * the path when no key is literally `a:b` (Zester's choice, see docs/states.md).
 */
export class ContextDict extends Map<unknown, unknown> {}

export class Undefined {
  constructor(
    /** What the error says when the value is used: `'x' is undefined`. */
    readonly hint: string,
    /** Jinja's plain Undefined (an inline if without else): prints empty, is false. */
    readonly lenient = false,
  ) {}

  /** Where the missing name or attribute was looked up (file and 1-based position). */
  at?: { path: string; line: number; col: number };
}

/** A callable value: `(args, kwargs) => result`. Methods, globals, Salt functions. */
export class PyFunc {
  constructor(
    readonly name: string,
    readonly fn: (args: unknown[], kwargs: Map<string, unknown>) => unknown,
  ) {}
}

/** `namespace()`: attributes assignable with `{% set ns.x = ... %}` across scopes. */
export class Namespace {
  readonly attrs = new Map<string, unknown>();
}

/** Raised for errors a Python template would raise (TypeError, UndefinedError, ...). */
export class PyError extends Error {
  /** Set when the error belongs elsewhere than the node being evaluated (an Undefined's look-up). */
  at?: { path: string; line: number; col: number };

  constructor(
    readonly pyType: string,
    message: string,
  ) {
    super(message);
  }
}

export function tuple(items: Iterable<unknown>): PyTuple {
  const t = new PyTuple();
  for (const i of items) t.push(i);
  return t;
}

export function view(kind: DictView["kind"], items: unknown[]): DictView {
  const v = new DictView();
  v.kind = kind;
  for (const i of items) v.push(i);
  return v;
}

export function float(n: number): number | PyFloat {
  return Number.isInteger(n) ? new PyFloat(n) : n;
}

/** An int result: a number while safe, a bigint beyond. */
export function int(n: number | bigint): number | bigint {
  if (typeof n === "bigint") {
    return n >= -9007199254740991n && n <= 9007199254740991n ? Number(n) : n;
  }
  return n;
}

export function isInt(v: unknown): v is number | bigint {
  return (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
}

export function isFloat(v: unknown): v is number | PyFloat {
  return v instanceof PyFloat || (typeof v === "number" && !Number.isInteger(v));
}

/** int, float or bool (Python's bool is an int). */
export function isNumber(v: unknown): boolean {
  return typeof v === "number" || typeof v === "bigint" || typeof v === "boolean" || v instanceof PyFloat;
}

export function isList(v: unknown): v is unknown[] {
  return Array.isArray(v) && !(v instanceof PyTuple) && !(v instanceof DictView);
}

export function isDict(v: unknown): v is Map<unknown, unknown> {
  return v instanceof Map;
}

export function toNumber(v: unknown): number {
  if (typeof v === "number") return v;
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "bigint") return Number(v);
  if (v instanceof PyFloat) return v.v;
  throw new PyError("TypeError", `expected a number, got ${typeName(v)}`);
}

export function toBig(v: unknown): bigint {
  if (typeof v === "bigint") return v;
  if (typeof v === "boolean") return v ? 1n : 0n;
  return BigInt(v as number);
}

export function typeName(v: unknown): string {
  if (v === null) return "NoneType";
  switch (typeof v) {
    case "boolean":
      return "bool";
    case "bigint":
      return "int";
    case "number":
      return Number.isInteger(v) ? "int" : "float";
    case "string":
      return "str";
  }
  if (v instanceof PyFloat) return "float";
  if (v instanceof PyTuple) return "tuple";
  if (v instanceof DictView) return v.kind;
  if (Array.isArray(v)) return "list";
  if (v instanceof Map) return "dict";
  if (v instanceof Undefined) return "StrictUndefined";
  if (v instanceof Namespace) return "Namespace";
  if (v instanceof PyFunc) return "builtin_function_or_method";
  if (typeof v === "object" && v !== null && "pyType" in v) return String((v as { pyType: unknown }).pyType);
  return "object";
}

export function undefinedError(u: Undefined): PyError {
  const e = new PyError("UndefinedError", u.hint);
  if (u.at) e.at = u.at;
  return e;
}

// ---------------------------------------------------------------------------------------------
// Crossing the boundary

/** Plain JavaScript data → Python values; one cache per render keeps identity (and mutations). */
export function fromJs(v: unknown, cache?: WeakMap<object, unknown>): unknown {
  if (v === undefined || v === null) return null;
  if (typeof v !== "object") {
    if (typeof v === "function") return null;
    return v;
  }
  if (v instanceof Map || v instanceof PyTuple || v instanceof PyFloat || v instanceof DictView) return v;
  const hit = cache?.get(v);
  if (hit !== undefined) return hit;
  if (Array.isArray(v)) {
    const out: unknown[] = [];
    cache?.set(v, out);
    for (const x of v) out.push(fromJs(x, cache));
    return out;
  }
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString("utf8");
  if (isPlainObject(v)) {
    const m = new Map<unknown, unknown>();
    cache?.set(v, m);
    for (const [k, x] of Object.entries(v)) m.set(k, fromJs(x, cache));
    return m;
  }
  // Template objects (macros, loops, namespaces) pass unchanged: they are already safe values.
  return v;
}

function isPlainObject(v: object): v is Record<string, unknown> {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Python values → plain JavaScript data (for execution functions, YAML/JSON dumping). */
export function toJs(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === "bigint") return Number(v);
  if (v instanceof PyFloat) return v.v;
  if (v instanceof Undefined) throw undefinedError(v);
  if (Array.isArray(v)) return v.map(toJs);
  if (v instanceof Map) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of v) o[typeof k === "string" ? k : str(k)] = toJs(x);
    return o;
  }
  if (typeof v === "object" || typeof v === "function") return str(v);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Text

export function floatRepr(n: number): string {
  if (Number.isNaN(n)) return "nan";
  if (n === Number.POSITIVE_INFINITY) return "inf";
  if (n === Number.NEGATIVE_INFINITY) return "-inf";
  if (n === 0) return Object.is(n, -0) ? "-0.0" : "0.0";
  // toExponential() with no argument gives the shortest digits that round-trip, as repr does.
  const [mant, expPart] = Math.abs(n).toExponential().split("e") as [string, string];
  const digits = mant.replace(".", "");
  const exp = Number(expPart);
  const sign = n < 0 ? "-" : "";
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
  const frac = digits.slice(exp + 1);
  return `${sign}${intPart}.${frac === "" ? "0" : frac}`;
}

function intStr(n: number): string {
  return Math.abs(n) >= 1e21 ? BigInt(n).toString() : String(n);
}

/** Python's `str()`. */
export function str(v: unknown): string {
  if (typeof v === "string") return v;
  if (v === null) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "number") return Number.isInteger(v) ? intStr(v) : floatRepr(v);
  if (typeof v === "bigint") return v.toString();
  if (v instanceof PyFloat) return floatRepr(v.v);
  if (v instanceof Undefined) {
    if (v.lenient) return "";
    throw undefinedError(v);
  }
  return repr(v);
}

/** Python's `repr()`. */
export function repr(v: unknown, seen: Set<unknown> = new Set()): string {
  if (typeof v === "string") return strRepr(v);
  if (v === null || typeof v !== "object") return str(v);
  if (v instanceof PyFloat) return floatRepr(v.v);
  if (v instanceof Undefined) throw undefinedError(v);
  if (seen.has(v)) return Array.isArray(v) ? "[...]" : "{...}";
  seen.add(v);
  try {
    if (v instanceof PyTuple) {
      const parts = v.map((x) => repr(x, seen));
      return parts.length === 1 ? `(${parts[0]},)` : `(${parts.join(", ")})`;
    }
    if (v instanceof DictView) return `${v.kind}([${v.map((x) => repr(x, seen)).join(", ")}])`;
    if (Array.isArray(v)) return `[${v.map((x) => repr(x, seen)).join(", ")}]`;
    if (v instanceof Map) {
      const parts: string[] = [];
      for (const [k, x] of v) parts.push(`${repr(k, seen)}: ${repr(x, seen)}`);
      return `{${parts.join(", ")}}`;
    }
    if (v instanceof Namespace) {
      const parts: string[] = [];
      for (const [k, x] of v.attrs) parts.push(`${repr(k, seen)}: ${repr(x, seen)}`);
      return `<Namespace {${parts.join(", ")}}>`;
    }
    if (v instanceof PyFunc) return `<built-in method ${v.name}>`;
    const custom = (v as { pyRepr?: () => string }).pyRepr;
    if (typeof custom === "function") return custom.call(v);
    return "<object>";
  } finally {
    seen.delete(v);
  }
}

export function strRepr(s: string): string {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = q;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === "\\") out += "\\\\";
    else if (ch === q) out += `\\${q}`;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || (c >= 0x7f && c < 0xa0)) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else if (c === 0xad) out += "\\xad";
    else if ((c >= 0x2028 && c <= 0x2029) || (c >= 0xd800 && c <= 0xdfff)) {
      out += `\\u${c.toString(16).padStart(4, "0")}`;
    } else out += ch;
  }
  return out + q;
}

// ---------------------------------------------------------------------------------------------
// Truth, equality, order

export function truthy(v: unknown): boolean {
  if (v === null) return false;
  switch (typeof v) {
    case "boolean":
      return v;
    case "number":
      return v !== 0 && !Number.isNaN(v);
    case "bigint":
      return v !== 0n;
    case "string":
      return v.length > 0;
  }
  if (v instanceof PyFloat) return v.v !== 0;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof Map) return v.size > 0;
  if (v instanceof Undefined) {
    if (v.lenient) return false;
    throw undefinedError(v);
  }
  return true;
}

export function eq(a: unknown, b: unknown): boolean {
  if (a === b) return typeof a !== "number" || !Number.isNaN(a);
  if (a instanceof Undefined) throw undefinedError(a);
  if (b instanceof Undefined) throw undefinedError(b);
  if (isNumber(a) && isNumber(b)) {
    if (typeof a === "bigint" || typeof b === "bigint") {
      if (isFloat(a) || isFloat(b)) return toNumber(a) === toNumber(b);
      return toBig(a) === toBig(b);
    }
    return toNumber(a) === toNumber(b);
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a instanceof PyTuple !== b instanceof PyTuple) return false;
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!eq(a[i], b[i])) return false;
    return true;
  }
  if (a instanceof Map && b instanceof Map) {
    if (a.size !== b.size) return false;
    for (const [k, v] of a) {
      const key = dictKey(k);
      if (!b.has(key) || !eq(v, b.get(key))) return false;
    }
    return true;
  }
  return false;
}

/** Python's ordering: -1, 0, 1; a TypeError between types Python does not order. */
export function compare(a: unknown, b: unknown, op: string): number {
  if (isNumber(a) && isNumber(b)) {
    if ((typeof a === "bigint" || typeof b === "bigint") && !isFloat(a) && !isFloat(b)) {
      const x = toBig(a);
      const y = toBig(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    const x = toNumber(a);
    const y = toNumber(b);
    return x < y ? -1 : x > y ? 1 : x === y ? 0 : Number.NaN;
  }
  if (typeof a === "string" && typeof b === "string") return a < b ? -1 : a > b ? 1 : 0;
  if (Array.isArray(a) && Array.isArray(b) && a instanceof PyTuple === b instanceof PyTuple) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) {
      if (!eq(a[i], b[i])) return compare(a[i], b[i], op);
    }
    return a.length - b.length < 0 ? -1 : a.length > b.length ? 1 : 0;
  }
  if (a instanceof Undefined) throw undefinedError(a);
  if (b instanceof Undefined) throw undefinedError(b);
  throw new PyError(
    "TypeError",
    `'${op}' not supported between instances of '${typeName(a)}' and '${typeName(b)}'`,
  );
}

/** Python's sort key order, as `sorted()` uses it. */
export function sortCompare(a: unknown, b: unknown): number {
  const c = compare(a, b, "<");
  return Number.isNaN(c) ? 0 : c;
}

/** Map keys: equal Python keys must be the same JavaScript key. */
export function dictKey(k: unknown): unknown {
  if (k instanceof PyFloat) return k.v;
  if (k instanceof Undefined) throw undefinedError(k);
  if (Array.isArray(k) && !(k instanceof PyTuple)) throw new PyError("TypeError", "unhashable type: 'list'");
  if (k instanceof Map) throw new PyError("TypeError", "unhashable type: 'dict'");
  return k;
}

export function contains(container: unknown, item: unknown): boolean {
  if (typeof container === "string") {
    if (typeof item !== "string") {
      throw new PyError("TypeError", `'in <string>' requires string as left operand, not ${typeName(item)}`);
    }
    return container.includes(item);
  }
  if (Array.isArray(container)) return container.some((x) => eq(x, item));
  if (container instanceof Map) {
    const key = dictKey(item);
    if (container.has(key)) return true;
    if (typeof key === "number" || typeof key === "boolean") {
      for (const k of container.keys()) if (isNumber(k) && eq(k, key)) return true;
    }
    return false;
  }
  if (container instanceof Undefined) throw undefinedError(container);
  throw new PyError("TypeError", `argument of type '${typeName(container)}' is not iterable`);
}

// ---------------------------------------------------------------------------------------------
// Sequences

/** Strings index and measure by code point, as Python does. */
export function chars(s: string): string[] {
  return /[\ud800-\udfff]/.test(s) ? Array.from(s) : s.split("");
}

export function len(v: unknown): number {
  if (typeof v === "string") return /[\ud800-\udfff]/.test(v) ? Array.from(v).length : v.length;
  if (Array.isArray(v)) return v.length;
  if (v instanceof Map) return v.size;
  if (v instanceof Undefined) throw undefinedError(v);
  throw new PyError("TypeError", `object of type '${typeName(v)}' has no len()`);
}

/** Python's `iter()`: dicts give their keys, strings their characters. */
export function iterate(v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  if (v instanceof Map) return [...v.keys()];
  if (typeof v === "string") return chars(v);
  if (v instanceof Undefined) throw undefinedError(v);
  if (v instanceof Namespace) return [...v.attrs.keys()];
  throw new PyError("TypeError", `'${typeName(v)}' object is not iterable`);
}

export function isIterable(v: unknown): boolean {
  return Array.isArray(v) || v instanceof Map || typeof v === "string";
}

export function deepCopy(v: unknown): unknown {
  if (v instanceof PyTuple) return tuple(v.map(deepCopy));
  if (Array.isArray(v)) return v.map(deepCopy);
  if (v instanceof Map) {
    const m = new Map<unknown, unknown>();
    for (const [k, x] of v) m.set(k, deepCopy(x));
    return m;
  }
  return v;
}
