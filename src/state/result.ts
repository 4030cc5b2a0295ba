/** The result of one state, as reported in every output format (DESIGN.md §5). */
export interface StateResult {
  /** `<module.function>:<id>` */
  name: string;
  id: string;
  /** `module.function` */
  module: string;
  result: boolean;
  changed: boolean;
  comment: string;
  changes: Record<string, unknown>;
  diff?: string;
  skipped: boolean;
  skip_reason?: string;
  duration_ms: number;
  /** When the state started (ISO 8601); Salt's `start_time`, printed by `--out highstate`. */
  started_at?: string;
  run_num: number;
  sls?: string;
  /** Set in test mode when the state would change something. */
  pending?: boolean;
  /** Salt's `warnings`: non-fatal problems, e.g. parameters the function ignored. */
  warnings?: string[];
}

export interface RunSummary {
  succeeded: number;
  failed: number;
  changed: number;
  skipped: number;
  total: number;
  duration_ms: number;
}

/** States a test run reports as pending: what a real run would change (Salt's `None`). */
export function pendingCount(results: readonly StateResult[] | undefined): number {
  return (results ?? []).filter((r) => r.pending === true).length;
}

export function summarize(results: readonly StateResult[], durationMs: number): RunSummary {
  let failed = 0;
  let changed = 0;
  let skipped = 0;
  for (const r of results) {
    if (r.skipped) skipped++;
    else if (!r.result) failed++;
    if (r.changed) changed++;
  }
  return {
    succeeded: results.length - failed - skipped,
    failed,
    changed,
    skipped,
    total: results.length,
    duration_ms: durationMs,
  };
}
