/** Python's `%` formatting, `str.format` and the format-spec mini-language. */
import {
  floatRepr,
  isFloat,
  isNumber,
  PyError,
  PyFloat,
  PyTuple,
  repr,
  str,
  toBig,
  toNumber,
  typeName,
} from "./values.js";

/** Python rounds ties to even on the exact binary value; JavaScript's toFixed rounds them up. */
export function toFixed(x: number, prec: number): string {
  if (!Number.isFinite(x)) return x > 0 ? "inf" : x < 0 ? "-inf" : "nan";
  if (Math.abs(x) >= 1e21) {
    const whole = BigInt(Math.trunc(x)).toString();
    return prec > 0 ? `${whole}.${"0".repeat(prec)}` : whole;
  }
  const exact = x.toFixed(Math.min(100, prec + 30));
  const dot = exact.indexOf(".");
  const tail = exact.slice(dot + 1 + prec);
  if (/^50*$/.test(tail)) {
    // an exact tie: keep the even neighbour
    const kept = prec > 0 ? exact.slice(0, dot + 1 + prec) : exact.slice(0, dot);
    const last = Number(kept.replace(/[.-]/g, "").slice(-1));
    if (last % 2 === 0) return kept;
  }
  return x.toFixed(prec);
}

function toExp(x: number, prec: number, upper = false): string {
  if (!Number.isFinite(x)) return fmtSpecial(x, upper);
  const [m, e] = x.toExponential(prec).split("e") as [string, string];
  const exp = Number(e);
  const s = `${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  return upper ? s.toUpperCase() : s;
}

function fmtSpecial(x: number, upper: boolean): string {
  const s = Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  return upper ? s.toUpperCase() : s;
}

function toGeneral(x: number, prec: number, alt: boolean, upper = false): string {
  if (!Number.isFinite(x)) return fmtSpecial(x, upper);
  const p = prec === 0 ? 1 : prec;
  if (x === 0) {
    const z = Object.is(x, -0) ? "-0" : "0";
    return alt ? `${z}.${"0".repeat(p - 1)}` : z;
  }
  const exp = Number(x.toExponential(p - 1).split("e")[1]);
  let s: string;
  if (exp >= -4 && exp < p) {
    s = toFixed(x, p - 1 - exp);
    if (!alt && s.includes(".")) s = s.replace(/0+$/, "").replace(/\.$/, "");
  } else {
    s = toExp(x, p - 1, upper);
    if (!alt) s = s.replace(/\.?0+e/, "e").replace(/\.?0+E/, "E");
  }
  return s;
}

function intText(v: unknown): string {
  if (typeof v === "bigint") return v.toString();
  return toBig(Math.trunc(toNumber(v))).toString();
}

// ---------------------------------------------------------------------------------------------
// printf-style

const PERCENT = /%(?:\(([^)]*)\))?([-+ 0#]*)(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([diouxXeEfFgGcrsa%])/g;

export function percentFormat(fmt: string, args: unknown): string {
  const positional = args instanceof PyTuple ? [...args] : [args];
  const mapping = args instanceof Map ? args : undefined;
  let next = 0;
  let usedMapping = false;
  const take = (): unknown => {
    if (next >= positional.length) throw new PyError("TypeError", "not enough arguments for format string");
    return positional[next++];
  };
  let out = "";
  let last = 0;
  for (const m of fmt.matchAll(PERCENT)) {
    out += fmt.slice(last, m.index);
    last = m.index! + m[0].length;
    const [, name, flags = "", widthSpec, precSpec, type] = m;
    if (type === "%") {
      out += "%";
      continue;
    }
    const width = widthSpec === "*" ? toNumber(take()) : widthSpec ? Number(widthSpec) : 0;
    const prec = precSpec === "*" ? toNumber(take()) : precSpec !== undefined ? Number(precSpec) : undefined;
    let value: unknown;
    if (name !== undefined) {
      if (!mapping) throw new PyError("TypeError", "format requires a mapping");
      usedMapping = true;
      if (!mapping.has(name)) throw new PyError("KeyError", repr(name));
      value = mapping.get(name);
    } else {
      value = take();
    }
    out += printfOne(value, type!, flags, width, prec);
  }
  out += fmt.slice(last);
  if (!mapping && !usedMapping && next < positional.length) {
    throw new PyError("TypeError", "not all arguments converted during string formatting");
  }
  return out;
}

function printfOne(
  value: unknown,
  type: string,
  flags: string,
  width: number,
  prec: number | undefined,
): string {
  const left = flags.includes("-");
  const zero = flags.includes("0") && !left;
  const plus = flags.includes("+");
  const space = flags.includes(" ");
  const alt = flags.includes("#");
  let body: string;
  let numeric = true;
  switch (type) {
    case "s":
    case "r":
    case "a":
      numeric = false;
      body = type === "s" ? str(value) : repr(value);
      if (prec !== undefined) body = body.slice(0, prec);
      break;
    case "c":
      numeric = false;
      body = typeof value === "string" ? value : String.fromCodePoint(toNumber(value));
      break;
    default: {
      if (!isNumber(value)) {
        const what = "diouxX".includes(type) ? "a real number is required" : "must be real number";
        throw new PyError(
          "TypeError",
          "diouxX".includes(type)
            ? `%${type} format: ${what}, not ${typeName(value)}`
            : `${what}, not ${typeName(value)}`,
        );
      }
      body = numberBody(value, type, prec, alt);
    }
  }
  if (numeric) {
    let sign = "";
    if (body.startsWith("-")) {
      sign = "-";
      body = body.slice(1);
    } else if (plus) sign = "+";
    else if (space) sign = " ";
    if (
      zero &&
      body.length + sign.length < width &&
      !/[a-z]/i.test(body.replace(/^0[xob]/i, "").replace(/e[+-]/i, ""))
    ) {
      body = body.padStart(width - sign.length, "0");
    }
    body = sign + body;
  }
  return left ? body.padEnd(width) : body.padStart(width);
}

function numberBody(value: unknown, type: string, prec: number | undefined, alt: boolean): string {
  switch (type) {
    case "d":
    case "i":
    case "u":
      return intText(value);
    case "o":
    case "x":
    case "X": {
      const n = typeof value === "bigint" ? value : toBig(Math.trunc(toNumber(value)));
      const base = type === "o" ? 8 : 16;
      let s = (n < 0n ? -n : n).toString(base);
      if (type === "X") s = s.toUpperCase();
      if (alt) s = (type === "o" ? "0o" : type === "x" ? "0x" : "0X") + s;
      return (n < 0n ? "-" : "") + s;
    }
    case "e":
    case "E":
      return toExp(toNumber(value), prec ?? 6, type === "E");
    case "f":
    case "F":
      return toFixed(toNumber(value), prec ?? 6);
    default:
      return toGeneral(toNumber(value), prec ?? 6, alt, type === "G");
  }
}

// ---------------------------------------------------------------------------------------------
// str.format and format()

export interface FieldAccess {
  attr(obj: unknown, name: string): unknown;
  item(obj: unknown, key: unknown): unknown;
}

export function strFormat(
  fmt: string,
  args: unknown[],
  kwargs: Map<string, unknown>,
  access: FieldAccess,
): string {
  let auto = 0;
  let out = "";
  let i = 0;
  while (i < fmt.length) {
    const c = fmt[i]!;
    if (c === "{") {
      if (fmt[i + 1] === "{") {
        out += "{";
        i += 2;
        continue;
      }
      // find the matching close brace (one level of nesting in the spec)
      let depth = 1;
      let j = i + 1;
      while (j < fmt.length && depth > 0) {
        if (fmt[j] === "{") depth++;
        else if (fmt[j] === "}") depth--;
        if (depth > 0) j++;
      }
      if (depth !== 0) throw new PyError("ValueError", "expected '}' before end of string");
      const field = fmt.slice(i + 1, j);
      i = j + 1;
      let conv: string | undefined;
      let spec = "";
      let name = field;
      const colon = findTop(field, ":");
      if (colon >= 0) {
        spec = field.slice(colon + 1);
        name = field.slice(0, colon);
      }
      const bang = name.indexOf("!");
      if (bang >= 0) {
        conv = name.slice(bang + 1);
        name = name.slice(0, bang);
      }
      if (spec.includes("{")) spec = strFormat(spec, args, kwargs, access);
      const m = /^([^.[]*)(.*)$/s.exec(name)!;
      const head = m[1]!;
      let value: unknown;
      if (head === "") {
        if (auto >= args.length)
          throw new PyError(
            "IndexError",
            "Replacement index 0 out of range for positional args tuple".replace("0", String(auto)),
          );
        value = args[auto++];
      } else if (/^\d+$/.test(head)) {
        const n = Number(head);
        if (n >= args.length)
          throw new PyError("IndexError", `Replacement index ${n} out of range for positional args tuple`);
        value = args[n];
      } else {
        if (!kwargs.has(head)) throw new PyError("KeyError", repr(head));
        value = kwargs.get(head);
      }
      const rest = m[2]!;
      for (const part of rest.matchAll(/\.([^.[]+)|\[([^\]]*)\]/g)) {
        if (part[1] !== undefined) value = access.attr(value, part[1]);
        else value = access.item(value, /^\d+$/.test(part[2]!) ? Number(part[2]) : part[2]);
      }
      if (conv === "r" || conv === "a") value = repr(value);
      else if (conv === "s") value = str(value);
      out += formatValue(value, spec);
      continue;
    }
    if (c === "}") {
      if (fmt[i + 1] === "}") {
        out += "}";
        i += 2;
        continue;
      }
      throw new PyError("ValueError", "Single '}' encountered in format string");
    }
    out += c;
    i++;
  }
  return out;
}

function findTop(field: string, ch: string): number {
  let inBracket = false;
  for (let i = 0; i < field.length; i++) {
    const c = field[i];
    if (c === "[") inBracket = true;
    else if (c === "]") inBracket = false;
    else if (c === ch && !inBracket) return i;
  }
  return -1;
}

const SPEC = /^(?:(.)?([<>=^]))?([-+ ])?(z)?(#)?(0)?(\d+)?([,_])?(?:\.(\d+))?([bcdeEfFgGnosxX%])?$/s;

/** Python's `format(value, spec)`. */
export function formatValue(value: unknown, spec: string): string {
  if (spec === "") return str(value);
  const m = SPEC.exec(spec);
  if (!m)
    throw new PyError(
      "ValueError",
      `Invalid format specifier '${spec}' for object of type '${typeName(value)}'`,
    );
  let [, fill, align, sign, , alt, zero, widthS, group, precS, type] = m;
  const width = widthS ? Number(widthS) : 0;
  const prec = precS !== undefined ? Number(precS) : undefined;
  if (zero && !align) {
    fill = fill ?? "0";
    align = "=";
  }
  fill = fill ?? " ";
  let body: string;
  let signStr = "";
  if (typeof value === "string") {
    if (type && type !== "s") {
      throw new PyError("ValueError", `Unknown format code '${type}' for object of type 'str'`);
    }
    body = prec !== undefined ? value.slice(0, prec) : value;
    align = align ?? "<";
  } else if (isNumber(value)) {
    let t = type;
    const isF = isFloat(value);
    if (!t && typeof value === "boolean" && !sign && !widthS && !group && prec === undefined)
      return str(value);
    if (!isF && t && "eEfFgG%".includes(t)) value = new PyFloat(toNumber(value));
    if (isF && t && "bcdoxX".includes(t)) {
      throw new PyError("ValueError", `Unknown format code '${t}' for object of type 'float'`);
    }
    const isFl = isFloat(value);
    let digits: string;
    if (!isFl) {
      const n = toBig(value);
      const abs = n < 0n ? -n : n;
      if (n < 0n) signStr = "-";
      switch (t) {
        case "b":
          digits = (alt ? "0b" : "") + abs.toString(2);
          break;
        case "o":
          digits = (alt ? "0o" : "") + abs.toString(8);
          break;
        case "x":
          digits = (alt ? "0x" : "") + abs.toString(16);
          break;
        case "X":
          digits = (alt ? "0X" : "") + abs.toString(16).toUpperCase();
          break;
        case "c":
          digits = String.fromCodePoint(Number(abs));
          break;
        default:
          digits = abs.toString();
      }
      if (group && (!t || t === "d" || t === "n")) digits = groupDigits(digits, group);
    } else {
      const x = toNumber(value);
      if (x < 0 || Object.is(x, -0)) signStr = "-";
      const ax = Math.abs(x);
      switch (t) {
        case "e":
        case "E":
          digits = toExp(ax, prec ?? 6, t === "E");
          break;
        case "f":
        case "F":
          digits = toFixed(ax, prec ?? 6);
          if (t === "F") digits = digits.toUpperCase();
          break;
        case "%":
          digits = `${toFixed(ax * 100, prec ?? 6)}%`;
          break;
        case "g":
        case "G":
          digits = toGeneral(ax, prec ?? 6, Boolean(alt), t === "G");
          break;
        default:
          if (prec === undefined) digits = floatRepr(ax);
          else {
            digits = toGeneral(ax, prec, Boolean(alt));
            if (/^\d+$/.test(digits) && Number.isFinite(ax)) digits += ".0";
          }
      }
      if (group) {
        const [ip, fp] = digits.split(/(?=[.eE%])/, 2) as [string, string | undefined];
        digits = groupDigits(ip, group) + digits.slice(ip.length);
        void fp;
      }
    }
    if (!signStr) signStr = sign === "+" ? "+" : sign === " " ? " " : "";
    body = digits;
    align = align ?? ">";
    t = undefined;
    void t;
  } else {
    if (value === null) {
      throw new PyError("TypeError", "unsupported format string passed to NoneType.__format__");
    }
    throw new PyError("TypeError", `unsupported format string passed to ${typeName(value)}.__format__`);
  }
  const total = signStr.length + body.length;
  if (total >= width) return signStr + body;
  const pad = width - total;
  switch (align) {
    case "<":
      return signStr + body + fill.repeat(pad);
    case "^": {
      const l = Math.floor(pad / 2);
      return fill.repeat(l) + signStr + body + fill.repeat(pad - l);
    }
    case "=":
      return signStr + fill.repeat(pad) + body;
    default:
      return fill.repeat(pad) + signStr + body;
  }
}

function groupDigits(digits: string, sep: string): string {
  const m = /^(0[box])?(\d+)$/i.exec(digits);
  if (!m) return digits;
  return (m[1] ?? "") + m[2]!.replace(/\B(?=(\d{3})+(?!\d))/g, sep);
}
