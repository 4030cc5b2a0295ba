/** Python's arithmetic operators on the value model of values.ts (ints grow into bigints). */
import { percentFormat } from "./format.js";
import {
  chars,
  float,
  int,
  isFloat,
  isNumber,
  PyError,
  PyTuple,
  toBig,
  toNumber,
  tuple,
  typeName,
  Undefined,
  undefinedError,
} from "./values.js";

function unsupported(op: string, a: unknown, b: unknown): PyError {
  return new PyError(
    "TypeError",
    `unsupported operand type(s) for ${op}: '${typeName(a)}' and '${typeName(b)}'`,
  );
}

function checkDefined(a: unknown, b: unknown): void {
  if (a instanceof Undefined) throw undefinedError(a);
  if (b instanceof Undefined) throw undefinedError(b);
}

/** Both ints (bool included): the exact integer path. */
function bothInts(a: unknown, b: unknown): boolean {
  return isNumber(a) && isNumber(b) && !isFloat(a) && !isFloat(b);
}

function intOp(
  a: unknown,
  b: unknown,
  n: (x: number, y: number) => number,
  g: (x: bigint, y: bigint) => bigint,
) {
  if (typeof a !== "bigint" && typeof b !== "bigint") {
    const r = n(toNumber(a), toNumber(b));
    if (Number.isSafeInteger(r)) return r;
  }
  return int(g(toBig(a), toBig(b)));
}

export function add(a: unknown, b: unknown): unknown {
  if (typeof a === "string" && typeof b === "string") return a + b;
  if (bothInts(a, b))
    return intOp(
      a,
      b,
      (x, y) => x + y,
      (x, y) => x + y,
    );
  if (isNumber(a) && isNumber(b)) return float(toNumber(a) + toNumber(b));
  if (Array.isArray(a) && Array.isArray(b) && a instanceof PyTuple === b instanceof PyTuple) {
    return a instanceof PyTuple ? tuple([...a, ...b]) : [...a, ...b];
  }
  checkDefined(a, b);
  if (typeof a === "string") {
    throw new PyError("TypeError", `can only concatenate str (not "${typeName(b)}") to str`);
  }
  if (Array.isArray(a) && !(a instanceof PyTuple)) {
    throw new PyError("TypeError", `can only concatenate list (not "${typeName(b)}") to list`);
  }
  throw unsupported("+", a, b);
}

export function sub(a: unknown, b: unknown): unknown {
  if (bothInts(a, b))
    return intOp(
      a,
      b,
      (x, y) => x - y,
      (x, y) => x - y,
    );
  if (isNumber(a) && isNumber(b)) return float(toNumber(a) - toNumber(b));
  checkDefined(a, b);
  throw unsupported("-", a, b);
}

function repeat(seq: unknown, n: unknown): unknown {
  const times = Math.max(0, toNumber(n));
  if (typeof seq === "string") return seq.repeat(times);
  const arr = seq as unknown[];
  const out: unknown[] = [];
  for (let i = 0; i < times; i++) out.push(...arr);
  return seq instanceof PyTuple ? tuple(out) : out;
}

export function mul(a: unknown, b: unknown): unknown {
  if (bothInts(a, b))
    return intOp(
      a,
      b,
      (x, y) => x * y,
      (x, y) => x * y,
    );
  if (isNumber(a) && isNumber(b)) return float(toNumber(a) * toNumber(b));
  const isSeq = (v: unknown) => typeof v === "string" || Array.isArray(v);
  const isIntLike = (v: unknown) => isNumber(v) && !isFloat(v);
  if (isSeq(a) && isIntLike(b)) return repeat(a, b);
  if (isIntLike(a) && isSeq(b)) return repeat(b, a);
  checkDefined(a, b);
  if (isSeq(a) && isNumber(b)) {
    throw new PyError("TypeError", `can't multiply sequence by non-int of type '${typeName(b)}'`);
  }
  if (isSeq(b) && isNumber(a)) {
    throw new PyError("TypeError", `can't multiply sequence by non-int of type '${typeName(a)}'`);
  }
  throw unsupported("*", a, b);
}

export function truediv(a: unknown, b: unknown): unknown {
  if (isNumber(a) && isNumber(b)) {
    const y = toNumber(b);
    if (y === 0) throw new PyError("ZeroDivisionError", "division by zero");
    return float(toNumber(a) / y);
  }
  checkDefined(a, b);
  throw unsupported("/", a, b);
}

export function floordiv(a: unknown, b: unknown): unknown {
  if (bothInts(a, b)) {
    if (toBig(b) === 0n) throw new PyError("ZeroDivisionError", "integer division or modulo by zero");
    if (typeof a !== "bigint" && typeof b !== "bigint") return Math.floor(toNumber(a) / toNumber(b));
    const x = toBig(a);
    const y = toBig(b);
    let q = x / y;
    if (x % y !== 0n && x < 0n !== y < 0n) q -= 1n;
    return int(q);
  }
  if (isNumber(a) && isNumber(b)) {
    const y = toNumber(b);
    if (y === 0) throw new PyError("ZeroDivisionError", "float floor division by zero");
    return float(Math.floor(toNumber(a) / y));
  }
  checkDefined(a, b);
  throw unsupported("//", a, b);
}

export function mod(a: unknown, b: unknown): unknown {
  if (typeof a === "string") return percentFormat(a, b);
  if (bothInts(a, b)) {
    if (toBig(b) === 0n) throw new PyError("ZeroDivisionError", "integer division or modulo by zero");
    if (typeof a !== "bigint" && typeof b !== "bigint") {
      const x = toNumber(a);
      const y = toNumber(b);
      const r = x % y;
      return r !== 0 && r < 0 !== y < 0 ? r + y : r;
    }
    const x = toBig(a);
    const y = toBig(b);
    const r = x % y;
    return int(r !== 0n && r < 0n !== y < 0n ? r + y : r);
  }
  if (isNumber(a) && isNumber(b)) {
    const x = toNumber(a);
    const y = toNumber(b);
    if (y === 0) throw new PyError("ZeroDivisionError", "float modulo");
    const r = x % y;
    return float(r !== 0 && r < 0 !== y < 0 ? r + y : r === 0 ? (y < 0 ? -0 : 0) : r);
  }
  checkDefined(a, b);
  throw unsupported("%", a, b);
}

export function pow(a: unknown, b: unknown): unknown {
  if (bothInts(a, b)) {
    const e = toBig(b);
    if (e >= 0n) {
      if (typeof a !== "bigint" && typeof b !== "bigint") {
        const r = toNumber(a) ** toNumber(b);
        if (Number.isSafeInteger(r)) return r;
      }
      if (e > 100000n) throw new PyError("OverflowError", "exponent too large");
      return int(toBig(a) ** e);
    }
    if (toNumber(a) === 0) {
      throw new PyError("ZeroDivisionError", "0.0 cannot be raised to a negative power");
    }
    // 1 / x**n is exact where JavaScript's x ** -n is not correctly rounded
    return float(1 / toNumber(a) ** -toNumber(b));
  }
  if (isNumber(a) && isNumber(b)) {
    const x = toNumber(a);
    const y = toNumber(b);
    if (x === 0 && y < 0) throw new PyError("ZeroDivisionError", "0.0 cannot be raised to a negative power");
    if (x < 0 && !Number.isInteger(y)) {
      throw new PyError(
        "ValueError",
        "a negative number raised to a fractional power is complex; Zester has no complex numbers",
      );
    }
    return float(x ** y);
  }
  checkDefined(a, b);
  throw unsupported("** or pow()", a, b);
}

export function neg(a: unknown): unknown {
  if (typeof a === "bigint") return int(-a);
  if (typeof a === "boolean") return a ? -1 : 0;
  if (typeof a === "number") return Number.isInteger(a) ? (a === 0 ? 0 : -a) : -a;
  if (a instanceof Undefined) throw undefinedError(a);
  if (isFloat(a)) return float(-toNumber(a));
  throw new PyError("TypeError", `bad operand type for unary -: '${typeName(a)}'`);
}

export function pos(a: unknown): unknown {
  if (typeof a === "boolean") return a ? 1 : 0;
  if (isNumber(a)) return a;
  if (a instanceof Undefined) throw undefinedError(a);
  throw new PyError("TypeError", `bad operand type for unary +: '${typeName(a)}'`);
}

/** Python slicing `seq[start:stop:step]` for str, list and tuple. */
export function slice(seq: unknown, start: unknown, stop: unknown, step: unknown): unknown {
  const items = typeof seq === "string" ? chars(seq) : Array.isArray(seq) ? seq : undefined;
  if (!items) {
    if (seq instanceof Undefined) throw undefinedError(seq);
    throw new PyError("TypeError", `'${typeName(seq)}' object is not subscriptable`);
  }
  const n = items.length;
  const st = step === null ? 1 : toNumber(step);
  if (st === 0) throw new PyError("ValueError", "slice step cannot be zero");
  const norm = (v: unknown, dflt: number, lo: number, hi: number) => {
    if (v === null) return dflt;
    let i = toNumber(v);
    if (i < 0) i += n;
    return Math.min(Math.max(i, lo), hi);
  };
  const out: unknown[] = [];
  if (st > 0) {
    const a = norm(start, 0, 0, n);
    const b = norm(stop, n, 0, n);
    for (let i = a; i < b; i += st) out.push(items[i]);
  } else {
    const a = norm(start, n - 1, -1, n - 1);
    const b = norm(stop, -1, -1, n - 1);
    for (let i = a; i > b; i += st) out.push(items[i]);
  }
  if (typeof seq === "string") return out.join("");
  return seq instanceof PyTuple ? tuple(out) : out;
}
