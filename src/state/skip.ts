/**
 * Why a state did not run. The code goes out as `skip_reason` (machines, `--format json`); its
 * sentence, Salt's wording where Salt has one, is the state's comment unless the runner has a
 * more precise one (which prereq, which guard). The CLI prints the comment (src/cli/output.ts).
 */
export const SKIP_SENTENCES = {
  require_failed: "One or more requisite failed",
  require_any_failed: "None of the require_any requisites succeeded",
  watch_failed: "One or more watched state failed",
  watch_any_failed: "None of the watch_any requisites succeeded",
  prereq_failed: "A prereq state failed",
  prereq_not_met: "No changes detected in the prereq states",
  onchanges_not_met: "State was not run because none of the onchanges reqs changed",
  onfail_not_met: "State was not run because onfail req did not change",
  onlyif: "onlyif condition is false",
  unless: "unless condition is true",
  failhard: "Not run: an earlier state failed with failhard",
  cancelled: "Not run: cancelled",
  "not reached": "Not run: not reached",
  cannot_revert: "cannot be reverted",
} as const satisfies Record<string, string>;

export type SkipReason = keyof typeof SKIP_SENTENCES;

/** Skips that leave the run successful (a condition not met) versus blocked by a failure. */
export type SkipStatus = "notrun" | "blocked";
