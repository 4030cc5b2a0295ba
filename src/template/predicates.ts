/** Jinja2 3.1's builtin tests (`x is defined`, `n is divisibleby 3`, ...). */
import type { Runtime, TestFn } from "./interp.js";
import { Macro } from "./interp.js";
import { mod } from "./operators.js";
import { compare, contains, eq, isDict, isFloat, isInt, isNumber, PyFunc, Undefined } from "./values.js";

function cased(v: unknown, upper: boolean): boolean {
  if (typeof v !== "string") return false;
  let any = false;
  for (const ch of v) {
    const lo = ch.toLowerCase();
    const up = ch.toUpperCase();
    if (lo === up) continue;
    any = true;
    if (ch !== (upper ? up : lo)) return false;
  }
  return any;
}

const cmp =
  (op: string, f: (c: number) => boolean): TestFn =>
  (_rt, v, a) =>
    f(compare(v, a[0], op));

export const TESTS: Record<string, TestFn> = {
  boolean: (_rt, v) => typeof v === "boolean",
  callable: (_rt, v) => v instanceof PyFunc || v instanceof Macro,
  defined: (_rt, v) => !(v instanceof Undefined),
  divisibleby: (_rt, v, a) => eq(mod(v, a[0]), 0),
  eq: (_rt, v, a) => eq(v, a[0]),
  escaped: () => false,
  even: (_rt, v) => isInt(v) && eq(mod(v, 2), 0),
  false: (_rt, v) => v === false,
  filter: (rt: Runtime, v) => typeof v === "string" && rt.hasFilter(v),
  float: (_rt, v) => isFloat(v),
  ge: cmp(">=", (c) => c >= 0),
  gt: cmp(">", (c) => c > 0),
  in: (_rt, v, a) => contains(a[0], v),
  integer: (_rt, v) => isInt(v),
  iterable: (_rt, v) => typeof v === "string" || Array.isArray(v) || isDict(v),
  le: cmp("<=", (c) => c <= 0),
  lower: (_rt, v) => cased(v, false),
  lt: cmp("<", (c) => c < 0),
  mapping: (_rt, v) => isDict(v),
  ne: (_rt, v, a) => !eq(v, a[0]),
  none: (_rt, v) => v === null,
  number: (_rt, v) => isNumber(v),
  odd: (_rt, v) => isInt(v) && eq(mod(v, 2), 1),
  sameas: (_rt, v, a) => v === a[0] || (typeof v === "number" && Number.isNaN(v) && v === a[0]),
  sequence: (_rt, v) => typeof v === "string" || Array.isArray(v) || isDict(v),
  string: (_rt, v) => typeof v === "string",
  test: (rt: Runtime, v) => typeof v === "string" && rt.hasTest(v),
  true: (_rt, v) => v === true,
  undefined: (_rt, v) => v instanceof Undefined,
  upper: (_rt, v) => cased(v, true),
};
TESTS["=="] = TESTS.eq!;
TESTS.equalto = TESTS.eq!;
TESTS["!="] = TESTS.ne!;
TESTS[">"] = TESTS.gt!;
TESTS.greaterthan = TESTS.gt!;
TESTS[">="] = TESTS.ge!;
TESTS["<"] = TESTS.lt!;
TESTS.lessthan = TESTS.lt!;
TESTS["<="] = TESTS.le!;
