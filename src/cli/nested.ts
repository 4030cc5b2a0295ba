/**
 * Salt's `nested` outputter (salt/output/nested.py), the default for execution functions: keys
 * sorted, `key:` with its value four spaces deeper, `----------` above every nested mapping,
 * `- item` for scalars in lists and `|_` above mappings or lists in lists, Python's spelling of
 * True, False and None. `--out nested` prints every peel's answer this way; the highstate
 * outputter uses it for a state's changes.
 */
import type { StateResult } from "../state/result.js";
import type { FormatOptions, PeelRun } from "./output.js";
import { type Color, type Paint, painter } from "./paint.js";

/**
 * The lines for one value at `indent` spaces; `failed` paints keys red as Salt does for a
 * non-zero return code.
 */
export function nestedLines(value: unknown, indent: number, paint: Paint, failed = false): string[] {
  const out: string[] = [];
  display(value, indent, "", out, paint, failed);
  return out;
}

function line(indent: number, color: Color | undefined, text: string, paint: Paint): string {
  // Only the text is painted, never the indent: the same line Salt prints, colour codes inside.
  return " ".repeat(indent) + paint(color, text);
}

function display(v: unknown, indent: number, prefix: string, out: string[], paint: Paint, failed: boolean) {
  const keyColor: Color = failed ? "red" : "cyan";
  if (v === null || v === undefined || typeof v === "boolean") {
    out.push(line(indent, "yellow", prefix + pythonScalar(v), paint));
  } else if (typeof v === "number" || typeof v === "bigint") {
    out.push(line(indent, "yellow", prefix + String(v), paint));
  } else if (typeof v === "string") {
    // Python's splitlines: no line for an empty string, none for a trailing newline.
    const lines = v.split(/\r\n|\r|\n/);
    if (lines.at(-1) === "") lines.pop();
    lines.forEach((l, i) => {
      out.push(line(indent, "green", (i === 0 ? prefix : " ".repeat(prefix.length)) + l, paint));
    });
  } else if (Array.isArray(v)) {
    for (const item of v) {
      if (item !== null && typeof item === "object") {
        out.push(line(indent, failed ? "red" : "green", "|_", paint));
        display(item, indent + 2, Array.isArray(item) ? "- " : "", out, paint, failed);
      } else {
        display(item, indent, "- ", out, paint, failed);
      }
    }
  } else if (typeof v === "object") {
    if (indent > 0) out.push(line(indent, keyColor, "----------", paint));
    const rec = v as Record<string, unknown>;
    for (const key of Object.keys(rec).sort()) {
      out.push(line(indent, keyColor, `${prefix}${key}:`, paint));
      display(rec[key], indent + 4, "", out, paint, failed);
    }
  } else {
    out.push(line(indent, "green", prefix + String(v), paint));
  }
}

function pythonScalar(v: null | undefined | boolean): string {
  return v === true ? "True" : v === false ? "False" : "None";
}

/** What a peel answered, in the shape Salt's CLI hands to its outputters. */
export function saltReturnOf(r: PeelRun): unknown {
  if (r.status === "unreachable") return `Peel did not return: ${r.error ?? "no response"}`;
  if (r.returned !== undefined) return r.returned === null && r.error ? r.error : r.returned;
  if (r.results.length === 0 && r.error) return [r.error];
  return Object.fromEntries(r.results.map((s) => [saltStateKey(s), saltStateReturn(s)]));
}

/** `file_|-nginx_config_|-nginx_config_|-managed`: results carry the id, not Salt's separate name. */
export function saltStateKey(s: StateResult): string {
  const dot = s.module.indexOf(".");
  return `${s.module.slice(0, dot)}_|-${s.id}_|-${s.id}_|-${s.module.slice(dot + 1)}`;
}

function saltStateReturn(s: StateResult): Record<string, unknown> {
  const changes: Record<string, unknown> = { ...s.changes };
  if (s.diff !== undefined) changes.diff = s.diff;
  return {
    __id__: s.id,
    __run_num__: s.run_num,
    ...(s.sls !== undefined ? { __sls__: s.sls } : {}),
    changes,
    comment: s.comment,
    duration: Math.round(s.duration_ms * 1000) / 1000,
    name: s.id,
    result: s.pending ? null : s.result,
    ...(s.started_at !== undefined ? { start_time: saltStartTime(s.started_at) } : {}),
  };
}

/** Salt rounds a state's duration to 3 decimals and prints it as a Python float. */
export function saltDuration(ms: number): string {
  const v = Math.round(ms * 1000) / 1000;
  return Number.isInteger(v) ? v.toFixed(1) : String(v);
}

/** Salt's `start_time`: the local wall-clock time, `HH:MM:SS.ffffff`. */
export function saltStartTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const two = (n: number) => String(n).padStart(2, "0");
  const micro = `${String(d.getMilliseconds()).padStart(3, "0")}000`;
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${micro}`;
}

/** `--out nested`: each peel as `<peel>:` with its answer four spaces in. */
export function formatNested(runs: readonly PeelRun[], opts: FormatOptions): string {
  const paint = painter(opts.color);
  const blocks = runs.map((r) => {
    const failed = r.status !== "success" || !r.success;
    return nestedLines({ [r.peel_id]: saltReturnOf(r) }, 0, paint, failed).join("\n");
  });
  return `${blocks.join("\n")}\n`;
}
