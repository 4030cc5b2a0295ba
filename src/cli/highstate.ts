/**
 * Salt's `highstate` outputter (salt/output/highstate.py, state_output: full with the profile
 * lines): per peel a `<peel>:` header, one `----------` block per state in run order with
 * ID / Function / Result / Comment / Started / Duration / Changes (changes through the nested
 * outputter at column 14), then `Summary for <peel>` with Succeeded (changed=N), Failed, Total
 * states run and Total run time, aligned as Salt aligns them. Answers that are not state runs
 * (test.ping, cmd.run, ...) print through the nested outputter, as Salt falls back to it.
 *
 * Differs from Salt on purpose: results carry no separate `name` (Salt's third key part), so the
 * Name line, which Salt prints only when the name differs from the ID, is never printed.
 */
import type { StateResult } from "../state/result.js";
import { nestedLines, saltDuration, saltReturnOf, saltStartTime } from "./nested.js";
import type { FormatOptions, PeelRun } from "./output.js";
import { type Color, type Paint, painter } from "./paint.js";

const COMMENT_INDENT = " ".repeat(14);

export function formatHighstate(runs: readonly PeelRun[], opts: FormatOptions): string {
  const paint = painter(opts.color);
  return `${runs.map((r) => formatHost(r, paint)).join("\n")}\n`;
}

function formatHost(r: PeelRun, paint: Paint): string {
  const failed = r.status !== "success" || !r.success;
  if (r.status === "unreachable" || r.returned !== undefined) {
    return nestedLines({ [r.peel_id]: saltReturnOf(r) }, 0, paint, failed).join("\n");
  }
  if (r.results.length === 0 && r.error) {
    return [
      paint("red", `${r.peel_id}:`),
      paint("red", "    Data failed to compile:"),
      paint("red", `----------\n    ${r.error}`),
    ].join("\n");
  }
  let hostColor: Color = "green";
  const lines: string[] = [];
  const counts = { succeeded: 0, failed: 0, none: 0 };
  let changed = 0;
  let totalMs = 0;
  for (const s of [...r.results].sort((a, b) => a.run_num - b.run_num)) {
    const result = s.pending ? null : s.result;
    const hasChanges = Object.keys(s.changes).length > 0 || s.diff !== undefined;
    let color: Color = hasChanges ? "cyan" : "green";
    if (result === false) {
      hostColor = "red";
      color = "red";
    } else if (result === null) {
      if (hostColor !== "red") hostColor = "yellow";
      color = "yellow";
    }
    if (result === true) counts.succeeded++;
    else if (result === false) counts.failed++;
    else counts.none++;
    if (hasChanges) changed++;
    totalMs += s.duration_ms;
    lines.push(...stateBlock(s, result, color, paint));
  }
  if (r.error) lines.push(paint("red", `    Error: ${r.error}`));
  lines.push(...summary(r.peel_id, counts, changed, totalMs, paint));
  return [paint(hostColor, `${r.peel_id}:`), ...lines].join("\n");
}

function stateBlock(s: StateResult, result: boolean | null, color: Color, paint: Paint): string[] {
  const dot = s.module.indexOf(".");
  // A skipped state's sentence is its comment; the code is the fallback for older peels.
  const comment = (s.comment || s.skip_reason || "").trim().replace(/\n/g, `\n${COMMENT_INDENT}`);
  const head = [
    "----------",
    `          ID: ${s.id}`,
    `    Function: ${s.module.slice(0, dot)}.${s.module.slice(dot + 1)}`,
    `      Result: ${result === null ? "None" : result ? "True" : "False"}`,
    `     Comment: ${comment}`,
    `     Started: ${s.started_at !== undefined ? saltStartTime(s.started_at) : ""}`,
    `    Duration: ${saltDuration(s.duration_ms)} ms`,
  ].map((l) => paint(color, l));
  const changes: Record<string, unknown> = { ...s.changes };
  if (s.diff !== undefined) changes.diff = s.diff;
  const out = [...head, paint(color, "     Changes:   ")];
  if (Object.keys(changes).length > 0) out.push(...nestedLines(changes, 14, paint, result === false));
  return out;
}

function summary(
  peel: string,
  counts: { succeeded: number; failed: number; none: number },
  changed: number,
  totalMs: number,
  paint: Paint,
): string[] {
  const present = [counts.succeeded, counts.failed, counts.none].filter((n) => n > 0);
  // Salt's column: the longest label ("Succeeded") + ": " + the widest count it saw.
  const width = "Succeeded".length + 2 + Math.max(0, ...present.map((n) => String(n).length));
  const count = (label: string, n: number) => `${label}: ${String(n).padStart(width - label.length - 2)}`;
  const stats: string[] = [];
  if (counts.none > 0) stats.push(paint("yellow", `unchanged=${counts.none}`));
  if (changed > 0) stats.push(paint("green", `changed=${changed}`));
  const total = counts.succeeded + counts.failed + counts.none;
  const [time, unit] = totalMs > 999 ? [totalMs / 1000, "s"] : [totalMs, "ms"];
  return [
    paint("cyan", `\nSummary for ${peel}\n${"-".repeat(width)}`),
    paint("green", count("Succeeded", counts.succeeded + counts.none)) +
      (stats.length > 0 ? ` (${stats.join(", ")})` : ""),
    paint(counts.failed > 0 ? "red" : "cyan", count("Failed", counts.failed)),
    paint("cyan", `${"-".repeat(width)}\nTotal states run: ${String(total).padStart(width - 7)}`),
    paint("cyan", `Total run time: ${time.toFixed(3).padStart(width - 5)} ${unit}`),
  ];
}
