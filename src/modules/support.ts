/**
 * Helpers every state family shares: failed plans, parameter readers, tool lookup, text files
 * kept line for line and atomic replacement. Module-facing only; generic error text lives in
 * src/util/errors.ts.
 */
import { constants } from "node:fs";
import { access, chown, writeFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { errnoText } from "../util/errors.js";
import type { ExecResult } from "../util/exec.js";
import { statOrUndefined, writeFileAtomic } from "../util/files.js";
import type { ApplyOutcome, Plan, StateFunction } from "./types.js";

// ---------------------------------------------------------------------------------------------
// Errors and plans.

/** An error whose message is already a complete, user-facing comment. */
export class StateError extends Error {}

export function failed(comment: string): Plan {
  return { changes: {}, comment, failed: true };
}

export function unchanged(comment: string): Plan {
  return { changes: {}, comment };
}

/**
 * A family's states with what `state.revert` does for each (StateFunction.revert, served by
 * `zester doc`); kept in one table per family, next to the family's definition.
 */
export function withRevertDocs(
  states: Record<string, StateFunction>,
  docs: Readonly<Record<string, string>>,
): Record<string, StateFunction> {
  const out: Record<string, StateFunction> = {};
  for (const [n, fn] of Object.entries(states)) {
    const doc = docs[n];
    out[n] = doc === undefined ? fn : { ...fn, revert: doc };
  }
  return out;
}

/** An apply that ran but did not get the system where the plan said. */
export function applyFailed(comment: string): ApplyOutcome {
  return { result: false, changes: {}, comment };
}

/** Runs a plan computation, turning any thrown error into a failed plan with a clear comment. */
export async function guard(fn: () => Promise<Plan>): Promise<Plan> {
  try {
    return await fn();
  } catch (err) {
    return failed(errnoText(err));
  }
}

/**
 * Wraps an apply so a failure while changing the system becomes a failed result, not an exception.
 * `done` is the comment when the apply itself reports nothing (a plan's comment says what *would*
 * happen).
 */
export function applying(
  fn: () => Promise<ApplyOutcome | undefined>,
  done?: string,
): () => Promise<ApplyOutcome | undefined> {
  return async () => {
    try {
      return (await fn()) ?? (done === undefined ? undefined : { comment: done });
    } catch (err) {
      return applyFailed(`Failed while applying: ${errnoText(err)}`);
    }
  };
}

/** Throws a StateError carrying the tool's own message when a command did not succeed. */
export function checkRun(what: string, res: ExecResult): void {
  if (res.retcode === 0) return;
  const msg = (res.stderr.trim() || res.stdout.trim() || `exit code ${res.retcode}`).replace(/\s+/g, " ");
  throw new StateError(`${what} failed: ${msg}`);
}

/** The last lines of a command's output, for failure comments that stay readable. */
export function tail(text: string, lines = 8): string {
  const all = text.trimEnd().split("\n");
  return all.slice(-lines).join("\n");
}

/** A command result as a one-line failure reason. */
export function failure(what: string, res: { retcode: number; stdout: string; stderr: string }): string {
  const out = tail(res.stderr || res.stdout);
  return `${what} failed (exit ${res.retcode})${out ? `: ${out}` : ""}`;
}

// ---------------------------------------------------------------------------------------------
// Parameter readers. The `params[key]` readers throw a StateError naming the key on a bad value;
// the value readers (listParam, optString, boolParam) are lenient and never throw.

export function str(params: Record<string, unknown>, key: string): string | undefined {
  const v = params[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  throw new StateError(`${key} must be a string`);
}

export function reqStr(params: Record<string, unknown>, key: string): string {
  const v = str(params, key);
  if (v === undefined || v === "") throw new StateError(`${key} is required`);
  return v;
}

export function bool(params: Record<string, unknown>, key: string, dflt: boolean): boolean {
  const v = params[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v === "boolean") return v;
  if (v === "true" || v === "True") return true;
  if (v === "false" || v === "False") return false;
  throw new StateError(`${key} must be true or false`);
}

/** A list param that also accepts a single value or a comma-separated string (Salt does). */
export function strList(params: Record<string, unknown>, key: string): string[] | undefined {
  const v = params[key];
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v)) return v.map((x) => String(x).trim()).filter((x) => x !== "");
  if (typeof v === "string")
    return v
      .split(",")
      .map((x) => x.trim())
      .filter((x) => x !== "");
  if (typeof v === "number") return [String(v)];
  throw new StateError(`${key} must be a list`);
}

/** A non-negative integer given as a number or a string of digits. */
export function nonNegInt(params: Record<string, unknown>, key: string): number | undefined {
  const v = params[key];
  if (v === undefined || v === null) return undefined;
  const text = typeof v === "number" ? String(v) : typeof v === "string" ? v.trim() : "";
  if (!/^\d+$/.test(text))
    throw new StateError(`${key} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(text);
}

/** A scalar or a list of scalars as a list of strings; null/undefined is empty. */
export function listParam(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  return (Array.isArray(value) ? value : [value]).map((v) => String(v));
}

export function optString(value: unknown): string | undefined {
  return value === undefined || value === null || value === "" ? undefined : String(value);
}

/** Salt accepts booleans written as strings in some trees ("True", "false"). */
export function boolParam(value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === null) return fallback;
  if (typeof value === "boolean") return value;
  const s = String(value).toLowerCase();
  if (["true", "yes", "1", "on"].includes(s)) return true;
  if (["false", "no", "0", "off"].includes(s)) return false;
  return fallback;
}

// ---------------------------------------------------------------------------------------------
// Tools.

/** Finds an executable on PATH plus the sbin directories a non-login PATH may lack. */
export async function which(bin: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, bin);
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

export async function requireTool(bin: string, why: string): Promise<string> {
  const path = await which(bin);
  if (!path) throw new StateError(`${bin} is not installed on this machine; it is needed to ${why}`);
  return path;
}

// ---------------------------------------------------------------------------------------------
// Files and text.

export { lstatOrUndefined, readTextOrUndefined } from "../util/files.js";

export function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Text ending in a newline (unless empty), so a line appended after it stands alone. */
export function ensureNewline(text: string): string {
  return text === "" || text.endsWith("\n") ? text : `${text}\n`;
}

/** Lines of a text file, remembering whether the last one ended with a newline. */
export interface TextLines {
  lines: string[];
  eol: boolean;
}

export function splitText(text: string): TextLines {
  if (text === "") return { lines: [], eol: true };
  const eol = text.endsWith("\n");
  const lines = (eol ? text.slice(0, -1) : text).split("\n");
  return { lines, eol };
}

export function joinText(t: { readonly lines: readonly string[]; readonly eol: boolean }): string {
  if (t.lines.length === 0) return "";
  return t.lines.join("\n") + (t.eol ? "\n" : "");
}

/** Appends lines; a last line without a newline gets one first so the new line stands alone. */
export function appendLines(t: TextLines, add: readonly string[]): TextLines {
  return { lines: [...t.lines, ...add], eol: true };
}

/**
 * Replaces a file's content atomically, keeping the mode and owner of the file it replaces.
 * Files that are mount points (a container's /etc/hosts) cannot be renamed over; they are
 * rewritten in place instead.
 */
export async function replaceFile(path: string, text: string, newMode = 0o644): Promise<void> {
  const st = await statOrUndefined(path);
  const mode = st ? st.mode & 0o7777 : newMode;
  try {
    await writeFileAtomic(path, text, { mode });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EBUSY" && code !== "EXDEV") throw err;
    await writeFile(path, text);
    return;
  }
  if (st && (st.uid !== 0 || st.gid !== 0)) await chown(path, st.uid, st.gid);
}
