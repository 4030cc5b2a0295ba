/**
 * Text forms of Python values as Salt's filters produce them: Python's `json.dumps` and PyYAML's
 * `safe_dump` (flow or block style).
 */
import { floatRepr, isFloat, PyError, str, toNumber, Undefined, undefinedError } from "./values.js";

export interface JsonOptions {
  sortKeys?: boolean;
  indent?: number | string | null;
  ensureAscii?: boolean;
}

function jsonString(s: string, ascii: boolean): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c < 0x20 || (ascii && c > 0x7e)) {
      if (c > 0xffff) {
        const hi = Math.floor((c - 0x10000) / 0x400) + 0xd800;
        const lo = ((c - 0x10000) % 0x400) + 0xdc00;
        out += `\\u${hi.toString(16).padStart(4, "0")}\\u${lo.toString(16).padStart(4, "0")}`;
      } else out += `\\u${c.toString(16).padStart(4, "0")}`;
    } else out += ch;
  }
  return `${out}"`;
}

function jsonFloat(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Number.POSITIVE_INFINITY) return "Infinity";
  if (n === Number.NEGATIVE_INFINITY) return "-Infinity";
  return floatRepr(n);
}

function jsonKey(k: unknown, ascii: boolean): string {
  if (typeof k === "string") return jsonString(k, ascii);
  if (k === null) return '"null"';
  if (typeof k === "boolean") return k ? '"true"' : '"false"';
  if (isFloat(k)) return `"${jsonFloat(toNumber(k))}"`;
  if (typeof k === "number" || typeof k === "bigint") return `"${str(k)}"`;
  throw new PyError("TypeError", `keys must be str, int, float, bool or None, not ${typeof k}`);
}

/** Python's `json.dumps(value, sort_keys=, indent=, ensure_ascii=)`. */
export function pyJson(v: unknown, o: JsonOptions = {}, level = 0): string {
  const ascii = o.ensureAscii ?? true;
  const ind =
    o.indent === null || o.indent === undefined
      ? null
      : typeof o.indent === "string"
        ? o.indent
        : " ".repeat(o.indent);
  if (v === null) return "null";
  if (v instanceof Undefined) throw undefinedError(v);
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "string") return jsonString(v, ascii);
  if (isFloat(v)) return jsonFloat(toNumber(v));
  if (typeof v === "number" || typeof v === "bigint") return str(v);
  const nl = ind === null ? "" : `\n${ind.repeat(level + 1)}`;
  const end = ind === null ? "" : `\n${ind.repeat(level)}`;
  const sep = ind === null ? ", " : ",";
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    return `[${nl}${v.map((x) => pyJson(x, o, level + 1)).join(sep + nl)}${end}]`;
  }
  if (v instanceof Map) {
    if (v.size === 0) return "{}";
    let entries = [...v.entries()];
    if (o.sortKeys) entries = entries.sort(([a], [b]) => (str(a) < str(b) ? -1 : str(a) > str(b) ? 1 : 0));
    return `{${nl}${entries.map(([k, x]) => `${jsonKey(k, ascii)}: ${pyJson(x, o, level + 1)}`).join(sep + nl)}${end}}`;
  }
  throw new PyError("TypeError", `Object of type ${typeof v} is not JSON serializable`);
}

// ---------------------------------------------------------------------------------------------
// YAML (PyYAML's safe_dump choices for scalars)

const RESOLVES =
  /^(?:~|null|Null|NULL|true|True|TRUE|false|False|FALSE|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|y|Y|n|N|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0[0-7_]+|[-+]?0x[0-9a-fA-F_]+|[-+]?0b[01_]+|[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?|\d{4}-\d\d?-\d\d?(?:(?:[Tt]|[ \t]+)\d\d?:\d\d:\d\d(?:\.\d*)?(?:[ \t]*(?:Z|[-+]\d\d?(?::\d\d)?))?)?|=|<<)$/;

function plainAllowed(s: string, flow: boolean): boolean {
  if (s === "" || RESOLVES.test(s)) return false;
  if (/^[\s]|[\s]$/.test(s)) return false;
  if (/^[-?:,[\]{}#&*!|>'"%@`]/.test(s) && !/^[-?:][^\s,[\]{}]/.test(s)) return false;
  if (/[\n\r\t\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff]/.test(s)) return false;
  if (/: |:$| #/.test(s)) return false;
  if (flow && /[,[\]{}]/.test(s)) return false;
  if (flow && /:[,[\]{}]/.test(s)) return false;
  return true;
}

export function yamlDoubleQuoted(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\0") out += "\\0";
    else if (c < 0x20 || (c >= 0x7f && c <= 0x9f))
      out += `\\x${c.toString(16).padStart(2, "0").toUpperCase()}`;
    else if (c === 0xfeff) out += "\\uFEFF";
    else out += ch;
  }
  return `${out}"`;
}

export function yamlSingleQuoted(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

function yamlScalar(v: unknown, flow: boolean): string {
  if (v === null) return "null";
  if (v instanceof Undefined) throw undefinedError(v);
  if (typeof v === "boolean") return v ? "true" : "false";
  if (isFloat(v)) {
    const n = toNumber(v);
    if (Number.isNaN(n)) return ".nan";
    if (!Number.isFinite(n)) return n > 0 ? ".inf" : "-.inf";
    const r = floatRepr(n);
    // PyYAML writes exponents with a dot in the mantissa: 1.0e+20
    return r.includes("e") && !r.split("e")[0]!.includes(".") ? r.replace("e", ".0e") : r;
  }
  if (typeof v === "number" || typeof v === "bigint") return str(v);
  const s = str(v);
  if (plainAllowed(s, flow)) return s;
  if (/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff]/.test(s) || /\n/.test(s)) return yamlDoubleQuoted(s);
  return yamlSingleQuoted(s);
}

function sortedEntries(m: Map<unknown, unknown>): [unknown, unknown][] {
  return [...m.entries()].sort(([a], [b]) => {
    const x = str(a);
    const y = str(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

function yamlFlow(v: unknown, sortKeys: boolean): string {
  if (Array.isArray(v)) return `[${v.map((x) => yamlFlow(x, sortKeys)).join(", ")}]`;
  if (v instanceof Map) {
    const entries = sortKeys ? sortedEntries(v) : [...v.entries()];
    return `{${entries.map(([k, x]) => `${yamlScalar(k, true)}: ${yamlFlow(x, sortKeys)}`).join(", ")}}`;
  }
  return yamlScalar(v, true);
}

function yamlBlock(v: unknown, indent: string, sortKeys: boolean): string {
  if (Array.isArray(v)) {
    if (v.length === 0) return `${indent}[]\n`;
    return v
      .map((x) => {
        if ((Array.isArray(x) && x.length > 0) || (x instanceof Map && x.size > 0)) {
          const inner = yamlBlock(x, `${indent}  `, sortKeys);
          return `${indent}- ${inner.slice(indent.length + 2)}`;
        }
        return `${indent}- ${yamlFlow(x, sortKeys)}\n`;
      })
      .join("");
  }
  if (v instanceof Map) {
    if (v.size === 0) return `${indent}{}\n`;
    const entries = sortKeys ? sortedEntries(v) : [...v.entries()];
    return entries
      .map(([k, x]) => {
        const key = `${indent}${yamlScalar(k, false)}:`;
        if (x instanceof Map && x.size > 0) return `${key}\n${yamlBlock(x, `${indent}  `, sortKeys)}`;
        if (Array.isArray(x) && x.length > 0) return `${key}\n${yamlBlock(x, indent, sortKeys)}`;
        return `${key} ${yamlFlow(x, sortKeys)}\n`;
      })
      .join("");
  }
  return `${indent}${yamlScalar(v, false)}\n`;
}

/** PyYAML `safe_dump(value, default_flow_style=flow)`, stripped, without the `...` end marker. */
export function pyYaml(v: unknown, flow = true, sortKeys = true): string {
  const text =
    flow || !(Array.isArray(v) || v instanceof Map) ? yamlFlow(v, sortKeys) : yamlBlock(v, "", sortKeys);
  return text.trim();
}
