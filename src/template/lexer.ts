/** Jinja2's lexer with Salt's settings: default delimiters, no trim_blocks, no lstrip_blocks. */

export type TokenType =
  | "data"
  | "var_begin"
  | "var_end"
  | "block_begin"
  | "block_end"
  | "name"
  | "string"
  | "int"
  | "float"
  | "op"
  | "eof";

export interface Token {
  type: TokenType;
  /** Text for data/name/op; the decoded value for string; the number (or bigint) for numbers. */
  value: string;
  num?: number | bigint;
  line: number;
  col: number;
}

/** A syntax error at a 1-based position of the template being lexed or parsed. */
export class SyntaxErr extends Error {
  constructor(
    message: string,
    readonly line: number,
    readonly col: number,
  ) {
    super(message);
  }
}

const OPERATORS = [
  "//",
  "**",
  "==",
  "!=",
  ">=",
  "<=",
  "+",
  "-",
  "/",
  "*",
  "%",
  "~",
  "[",
  "]",
  "(",
  ")",
  "{",
  "}",
  ">",
  "<",
  "=",
  ".",
  ":",
  "|",
  ",",
  ";",
];
const NAME = /[\p{L}_][\p{L}\p{N}_]*/uy;
const FLOAT = /(?:\d+_)*\d+(?:(?:\.(?:\d+_)*\d+)?[eE][+-]?(?:\d+_)*\d+|\.(?:\d+_)*\d+)/y;
const INTEGER = /0[bB](?:_?[01])+|0[oO](?:_?[0-7])+|0[xX](?:_?[\da-fA-F])+|[1-9](?:_?\d)*|0(?:_?0)*/y;
const STRING = /'([^'\\]*(?:\\.[^'\\]*)*)'|"([^"\\]*(?:\\.[^"\\]*)*)"/sy;
const WS = /\s+/y;
const RAW_BEGIN = /\{%[-+]?\s*raw\s*(-?)%\}/y;
const RAW_END = /\{%([-+]?)\s*endraw\s*(-?)%\}/g;

export class Lexer {
  private readonly lineStarts: number[] = [0];

  constructor(private readonly src: string) {
    for (let i = 0; i < src.length; i++) if (src.charCodeAt(i) === 10) this.lineStarts.push(i + 1);
  }

  pos(offset: number): { line: number; col: number } {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, col: offset - this.lineStarts[lo]! + 1 };
  }

  private fail(message: string, offset: number): never {
    const p = this.pos(offset);
    throw new SyntaxErr(message, p.line, p.col);
  }

  private tok(type: TokenType, value: string, offset: number, num?: number | bigint): Token {
    const p = this.pos(offset);
    const t: Token = { type, value, line: p.line, col: p.col };
    if (num !== undefined) t.num = num;
    return t;
  }

  tokenize(): Token[] {
    const src = this.src;
    const out: Token[] = [];
    let i = 0;
    let lstripNext = false;
    while (i < src.length) {
      let j = i;
      // find the next tag opener
      let open = -1;
      while (j < src.length) {
        const k = src.indexOf("{", j);
        if (k < 0 || k + 1 >= src.length) break;
        const c = src[k + 1];
        if (c === "{" || c === "%" || c === "#") {
          open = k;
          break;
        }
        j = k + 1;
      }
      const end = open < 0 ? src.length : open;
      let text = src.slice(i, end);
      if (lstripNext) text = text.replace(/^\s+/, "");
      lstripNext = false;
      if (open < 0) {
        if (text) out.push(this.tok("data", text, i));
        break;
      }
      const kind = src[open + 1]!;
      const strip = src[open + 2] === "-";
      if (strip) text = text.replace(/\s+$/, "");
      if (text) out.push(this.tok("data", text, i));
      if (kind === "#") {
        const close = src.indexOf("#}", open + 2);
        if (close < 0) this.fail("Missing end of comment tag", open);
        i = close + 2;
        lstripNext = src[close - 1] === "-" && close - 1 > open + 1;
        continue;
      }
      if (kind === "%") {
        RAW_BEGIN.lastIndex = open;
        const raw = RAW_BEGIN.exec(src);
        if (raw) {
          RAW_END.lastIndex = RAW_BEGIN.lastIndex;
          const e = RAW_END.exec(src);
          if (!e) this.fail("Missing end of raw directive", open);
          let body = src.slice(RAW_BEGIN.lastIndex, e.index);
          if (raw[1] === "-") body = body.replace(/^\s+/, "");
          if (e[1] === "-") body = body.replace(/\s+$/, "");
          if (body) out.push(this.tok("data", body, RAW_BEGIN.lastIndex));
          i = RAW_END.lastIndex;
          lstripNext = e[2] === "-";
          continue;
        }
      }
      out.push(this.tok(kind === "{" ? "var_begin" : "block_begin", "", open));
      const after = this.expression(
        open + 2 + (strip || src[open + 2] === "+" ? 1 : 0),
        kind === "{" ? "}}" : "%}",
        out,
      );
      i = after.next;
      lstripNext = after.lstrip;
    }
    out.push(this.tok("eof", "", src.length));
    return out;
  }

  /** Tokens of one `{{ }}` or `{% %}`; returns the offset after its closing delimiter. */
  private expression(start: number, closer: string, out: Token[]): { next: number; lstrip: boolean } {
    const src = this.src;
    const endType: TokenType = closer === "}}" ? "var_end" : "block_end";
    const balance: string[] = [];
    let i = start;
    for (;;) {
      WS.lastIndex = i;
      if (WS.exec(src)) i = WS.lastIndex;
      if (i >= src.length) this.fail(`unexpected end of template, expected '${closer}'`, i);
      if (balance.length === 0) {
        if (src.startsWith(closer, i)) {
          out.push(this.tok(endType, "", i));
          return { next: i + 2, lstrip: false };
        }
        if (src[i] === "-" && src.startsWith(closer, i + 1)) {
          out.push(this.tok(endType, "", i));
          return { next: i + 3, lstrip: true };
        }
        if (src[i] === "+" && closer === "%}" && src.startsWith(closer, i + 1)) {
          out.push(this.tok(endType, "", i));
          return { next: i + 3, lstrip: false };
        }
      }
      const c = src[i]!;
      if (c === "'" || c === '"') {
        STRING.lastIndex = i;
        const m = STRING.exec(src);
        if (!m) this.fail("unexpected end of string", i);
        out.push(this.tok("string", decodeEscapes(m[1] ?? m[2] ?? ""), i));
        i = STRING.lastIndex;
        continue;
      }
      if (c >= "0" && c <= "9") {
        const prev = out[out.length - 1];
        const afterDot = prev?.type === "op" && prev.value === ".";
        FLOAT.lastIndex = i;
        const f = afterDot ? null : FLOAT.exec(src);
        if (f) {
          out.push(this.tok("float", f[0], i, Number(f[0].replace(/_/g, ""))));
          i = FLOAT.lastIndex;
          continue;
        }
        INTEGER.lastIndex = i;
        const n = INTEGER.exec(src);
        if (n) {
          const text = n[0].replace(/_/g, "");
          const big = BigInt(text);
          const num = big <= 9007199254740991n ? Number(big) : big;
          out.push(this.tok("int", n[0], i, num));
          i = INTEGER.lastIndex;
          continue;
        }
      }
      NAME.lastIndex = i;
      const name = NAME.exec(src);
      if (name) {
        out.push(this.tok("name", name[0], i));
        i = NAME.lastIndex;
        continue;
      }
      const op = OPERATORS.find((o) => src.startsWith(o, i));
      if (!op) this.fail(`unexpected char '${c}' at ${i}`, i);
      if (op === "(" || op === "[" || op === "{") balance.push(op === "(" ? ")" : op === "[" ? "]" : "}");
      else if (op === ")" || op === "]" || op === "}") {
        const want = balance.pop();
        if (want === undefined) this.fail(`unexpected '${op}'`, i);
        if (want !== op) this.fail(`unexpected '${op}', expected '${want}'`, i);
      }
      out.push(this.tok("op", op, i));
      i += op.length;
    }
  }
}

/** Python's unicode-escape decoding of a string literal's body. */
function decodeEscapes(s: string): string {
  if (!s.includes("\\")) return s.replace(/\r\n?/g, "\n");
  return s
    .replace(/\r\n?/g, "\n")
    .replace(
      /\\(?:([\\'"abfnrtv\n])|x([\da-fA-F]{2})|u([\da-fA-F]{4})|U([\da-fA-F]{8})|([0-7]{1,3}))/g,
      (whole, simple: string | undefined, x, u, U, oct) => {
        if (simple !== undefined) {
          const map: Record<string, string> = {
            a: "\x07",
            b: "\b",
            f: "\f",
            n: "\n",
            r: "\r",
            t: "\t",
            v: "\v",
            "\n": "",
          };
          return map[simple] ?? simple;
        }
        const hex = x ?? u ?? U;
        if (hex !== undefined) return String.fromCodePoint(Number.parseInt(hex, 16));
        if (oct !== undefined) return String.fromCodePoint(Number.parseInt(oct, 8));
        return whole;
      },
    );
}
