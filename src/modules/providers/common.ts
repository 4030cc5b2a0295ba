/**
 * Small helpers shared by the system modules (pkg, service, git, archive, mount, pip) and their
 * providers. Nothing here touches the system.
 */

export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
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
