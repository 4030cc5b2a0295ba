import { createRequire } from "node:module";
import type { RevertNote } from "../revert/record.js";
import { type RunSummary, type StateResult, summarize } from "../state/result.js";
import { formatHighstate } from "./highstate.js";
import { formatNested } from "./nested.js";
import { type Color, indent, type Paint, painter } from "./paint.js";

/** One peel's answer to a job, as the CLI prints it (DESIGN.md §6). */
export interface PeelRun {
  peel_id: string;
  success: boolean;
  status: "success" | "failed" | "unreachable";
  error?: string;
  results: StateResult[];
  summary?: RunSummary;
  /** An execution function's return value (test.ping, cmd.run, ...), for calls that are not state runs. */
  returned?: unknown;
  /** Something the operator should know although the run went on (e.g. settings from a snapshot). */
  warning?: string;
  /** The run was kept and `state.revert <run>` can undo it (docs/revert.md). */
  revert?: RevertNote;
}

/** Formats of a job's runs: Zester's text, machine json/yaml, and Salt's highstate and nested outputters. */
export type OutputFormat = "text" | "json" | "yaml" | "highstate" | "nested";
export const OUTPUT_FORMATS: readonly OutputFormat[] = ["text", "json", "yaml", "highstate", "nested"];

export interface FormatOptions {
  color: boolean;
  /** "changes" hides states that succeeded without changing anything (Salt's state_verbose: False). */
  stateOutput?: "full" | "changes";
}

// Loaded only for --format yaml: parsing the yaml package costs ~25 ms of CLI start-up.
const requireLazy = createRequire(import.meta.url);
function yamlStringify(value: unknown): string {
  return (requireLazy("yaml") as typeof import("yaml")).stringify(value, { lineWidth: 0 });
}

/** Formats runs for stdout; the string always ends with a newline. */
export function formatRuns(runs: readonly PeelRun[], format: OutputFormat, opts: FormatOptions): string {
  switch (format) {
    case "json":
      return `${JSON.stringify(runs.map(toRecord), null, 2)}\n`;
    case "yaml":
      return runs.length === 0 ? "[]\n" : yamlStringify(runs.map(toRecord));
    case "text":
      return formatText(runs, opts);
    case "highstate":
      return formatHighstate(runs, opts);
    case "nested":
      return formatNested(runs, opts);
  }
}

/**
 * Exit status for a whole job: 0 all succeeded, 2 some peel failed, 3 some peel unreachable
 * (none failed), 4 both. 1 is left to usage and infrastructure errors.
 */
export function exitCodeFor(runs: readonly PeelRun[]): number {
  const failed = runs.some(isFailed);
  const unreachable = runs.some((r) => r.status === "unreachable");
  if (failed && unreachable) return 4;
  if (failed) return 2;
  if (unreachable) return 3;
  return 0;
}

function isFailed(r: PeelRun): boolean {
  // A peel that answered but says success: false counts as failed even if status was set loosely.
  return r.status === "failed" || (r.status === "success" && !r.success);
}

/** The machine-readable shape shared by json and yaml: stable keys, `error` always present. */
function toRecord(r: PeelRun): Record<string, unknown> {
  const rec: Record<string, unknown> = {
    peel_id: r.peel_id,
    success: r.success,
    status: r.status,
    error: r.error ?? null,
    results: r.results,
  };
  const summary = summaryFor(r);
  if (summary) rec.summary = summary;
  if (r.returned !== undefined) rec.return = r.returned;
  if (r.warning !== undefined) rec.warning = r.warning;
  if (r.revert !== undefined) rec.revert = r.revert;
  return rec;
}

/** State runs get a summary; exec calls and peels that never answered do not, unless one was given. */
function summaryFor(r: PeelRun): RunSummary | undefined {
  if (r.summary) return r.summary;
  if (r.returned !== undefined || r.status === "unreachable") return undefined;
  return summarize(
    r.results,
    r.results.reduce((sum, s) => sum + s.duration_ms, 0),
  );
}

// ---- text ----------------------------------------------------------------------------------

const LABEL_WIDTH = 12;
/** Continuation lines of a field line up under its value: label width + ": ". */
const VALUE_INDENT = " ".repeat(LABEL_WIDTH + 2);
const RULE = "----------";

function formatText(runs: readonly PeelRun[], opts: FormatOptions): string {
  const paint = painter(opts.color);
  const blocks = runs.map((r) => formatPeel(r, opts, paint));
  if (runs.length > 1) blocks.push(formatFleetLine(runs, paint));
  return `${blocks.join("\n\n")}\n`;
}

function formatPeel(r: PeelRun, opts: FormatOptions, paint: Paint): string {
  const headerColor: Color = r.status === "success" && r.success ? "green" : "red";
  const out: string[] = [paint(headerColor, `${r.peel_id}:`)];
  if (r.warning) out.push(paint("yellow", `    Warning: ${r.warning}`));

  if (r.status === "unreachable") {
    out.push(paint("red", `    Peel did not return: ${r.error ?? "no response"}`));
    return out.join("\n");
  }
  if (r.returned !== undefined) {
    // A call that failed returns nothing: print its error, not a `None` above it.
    if (!(r.returned === null && r.error)) out.push(indent(renderValue(r.returned), "    "));
    if (r.error) out.push(paint("red", `    Error: ${r.error}`));
    return out.join("\n");
  }

  const ordered = [...r.results].sort((a, b) => a.run_num - b.run_num);
  const shown = opts.stateOutput === "changes" ? ordered.filter(isInteresting) : ordered;
  out.push(RULE);
  for (const s of shown) {
    out.push(formatState(s, paint));
    out.push(RULE);
  }
  if (r.error) out.push(paint("red", `Error: ${r.error}`));
  out.push("", formatSummary(r, summaryFor(r)!, paint));
  return out.join("\n");
}

/** What state_verbose: False keeps: anything that failed, changed or would change. */
function isInteresting(s: StateResult): boolean {
  return (!s.result && !s.skipped) || s.changed || s.pending === true;
}

function stateColor(s: StateResult): Color {
  if (s.skipped) return "yellow";
  if (!s.result) return "red";
  if (s.pending) return "yellow";
  if (s.changed) return "cyan";
  return "green";
}

function field(label: string, value: string): string {
  const lines = value.split("\n");
  const first = `${label.padStart(LABEL_WIDTH)}: ${lines[0]}`.trimEnd();
  return [first, ...lines.slice(1).map((l) => (l === "" ? "" : VALUE_INDENT + l))].join("\n");
}

function formatState(s: StateResult, paint: Paint): string {
  const color = stateColor(s);
  const resultText = s.skipped ? "Skipped" : !s.result ? "False" : s.pending ? "None" : "True";
  // The comment is the sentence (Salt's wording); skip_reason is the code, for machines.
  const comment = s.comment || s.skip_reason || "";
  const head = [
    field("ID", s.id),
    field("Function", s.module),
    field("Name", s.name),
    field("Result", resultText),
    field("Comment", comment),
    field("Duration", formatMs(s.duration_ms)),
  ];
  if (s.warnings?.length) head.push(field("Warnings", s.warnings.join("\n")));
  const lines = [paint(color, head.join("\n")), paint(color, field("Changes", ""))];
  const changes = renderChanges(s, color, paint);
  if (changes !== "") lines.push(indent(changes, VALUE_INDENT));
  return lines.join("\n");
}

/** Structured changes as YAML, then the diff (coloured like `git diff`) under a `diff:` key. */
function renderChanges(s: StateResult, color: Color, paint: Paint): string {
  const changes = { ...s.changes };
  // Engines may put the same diff in both places; print it once.
  if (s.diff !== undefined && changes.diff === s.diff) delete changes.diff;
  const parts: string[] = [];
  if (Object.keys(changes).length > 0) parts.push(paint(color, yamlStringify(changes).trimEnd()));
  if (s.diff) {
    const diffLines = s.diff
      .replace(/\n$/, "")
      .split("\n")
      .map((l) => paint(diffLineColor(l), l));
    parts.push(`diff:\n${indent(diffLines.join("\n"), "    ")}`);
  }
  return parts.join("\n");
}

function diffLineColor(line: string): Color | undefined {
  if (line.startsWith("+++") || line.startsWith("---")) return undefined;
  if (line.startsWith("+")) return "green";
  if (line.startsWith("-")) return "red";
  if (line.startsWith("@@")) return "cyan";
  return undefined;
}

function formatSummary(r: PeelRun, sum: RunSummary, paint: Paint): string {
  const pending = r.results.filter((s) => s.pending && !s.skipped).length;
  const extra = [`changed=${sum.changed}`];
  if (pending > 0) extra.push(`pending=${pending}`);
  const succeeded = `${paint("green", `Succeeded: ${sum.succeeded}`)} ${paint(
    sum.changed > 0 ? "cyan" : undefined,
    `(${extra.join(", ")})`,
  )}`;
  return [
    `Summary for ${r.peel_id}`,
    "------------",
    succeeded,
    paint(sum.failed > 0 ? "red" : undefined, `Failed:    ${sum.failed}`),
    paint(sum.skipped > 0 ? "yellow" : undefined, `Skipped:   ${sum.skipped}`),
    "------------",
    `Total states run:     ${sum.total}`,
    `Total run time: ${formatMs(sum.duration_ms).padStart(10)}`,
    ...(r.revert ? [revertLine(r.revert)] : []),
  ].join("\n");
}

function revertLine(n: RevertNote): string {
  if (n.error !== undefined) return `Run id: ${n.run} (cannot be reverted: ${n.error})`;
  const cannot = n.cannot > 0 ? `; ${n.cannot} cannot be reverted` : "";
  return `Run id: ${n.run} (undo with state.revert ${n.run}: ${n.states} state(s) revertable${cannot})`;
}

function formatFleetLine(runs: readonly PeelRun[], paint: Paint): string {
  const ok = runs.filter((r) => !isFailed(r) && r.status !== "unreachable").length;
  const failed = runs.filter(isFailed).length;
  const unreachable = runs.filter((r) => r.status === "unreachable").length;
  return [
    `Peels: ${runs.length}`,
    paint("green", `succeeded: ${ok}`),
    paint(failed > 0 ? "red" : undefined, `failed: ${failed}`),
    paint(unreachable > 0 ? "red" : undefined, `unreachable: ${unreachable}`),
  ].join(", ");
}

/** Milliseconds below a second, seconds above, three decimals like Salt's summary. */
export function formatMs(ms: number): string {
  // 999.9996 would round up to "1000.000 ms"; switch units on the rounded value.
  return ms < 999.9995 ? `${ms.toFixed(3)} ms` : `${(ms / 1000).toFixed(3)} s`;
}

/** An exec call's return value: Python-style booleans as Salt prints them, text as-is, the rest as YAML. */
function renderValue(v: unknown): string {
  if (v === true) return "True";
  if (v === false) return "False";
  if (v === null) return "None";
  if (typeof v === "string") return v.replace(/\n$/, "");
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  return yamlStringify(v).trimEnd();
}
