/**
 * Shell-style globs (`*`, `?`, `[a-c]`, `[!x]`) turned into anchored regular expressions, plus the
 * literal prefix an index can use to narrow a scan.
 */

const GLOB_CHARS = /[*?[]/;

export function hasGlobChars(pattern: string): boolean {
  return GLOB_CHARS.test(pattern);
}

/** The characters before the first wildcard: every match starts with them. */
export function globLiteralPrefix(pattern: string): string {
  const m = GLOB_CHARS.exec(pattern);
  return m ? pattern.slice(0, m.index) : pattern;
}

function escapeRegExp(ch: string): string {
  return /[\\^$.*+?()[\]{}|/-]/.test(ch) ? `\\${ch}` : ch;
}

/**
 * Compiles a glob. Returns an error message instead of throwing so the parser can attach a
 * column to it.
 */
export function globToRegExp(pattern: string, ignoreCase = false): RegExp | string {
  let out = "^";
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === "*") {
      // Collapse runs of `*`: `a**b` is `a*b`, and it keeps the regex from backtracking badly.
      while (pattern[i + 1] === "*") i++;
      out += "[\\s\\S]*";
    } else if (ch === "?") {
      out += "[\\s\\S]";
    } else if (ch === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) return `unclosed "[" in glob "${pattern}"`;
      let body = pattern.slice(i + 1, end);
      let negate = false;
      if (body.startsWith("!") || body.startsWith("^")) {
        negate = true;
        body = body.slice(1);
      }
      if (body === "") return `empty "[]" in glob "${pattern}"`;
      let cls = "";
      for (let j = 0; j < body.length; j++) {
        const c = body[j]!;
        if (c === "-" && j > 0 && j < body.length - 1) {
          const lo = body[j - 1]!;
          const hi = body[j + 1]!;
          if (lo > hi) return `bad range "${lo}-${hi}" in glob "${pattern}"`;
          cls += "-";
        } else cls += c === "\\" || c === "]" || c === "^" || c === "-" || c === "[" ? `\\${c}` : c;
      }
      out += negate ? `[^${cls}]` : `[${cls}]`;
      i = end;
    } else out += escapeRegExp(ch);
  }
  return new RegExp(`${out}$`, ignoreCase ? "i" : "");
}
