/**
 * `-b/--batch N|N%` as Salt runs it: a rolling window of at most N peels, the next one starting
 * as soon as one returns (after `--batch-wait` seconds), each peel its own job.
 */
import { UsageError } from "./errors.js";

export type BatchSize = { count: number } | { percent: number };

export function parseBatchSize(text: string): BatchSize {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(text);
  const n = m ? Number(m[1]) : Number.NaN;
  if (!m || !(n > 0) || (m[2] === "" && !Number.isInteger(n)) || (m[2] === "%" && n > 100)) {
    throw new UsageError(
      `--batch must be a number of peels (10) or a percentage of the matched ones (25%), not ${JSON.stringify(text)}`,
    );
  }
  return m[2] === "%" ? { percent: n } : { count: n };
}

/** Peels per window for a fleet of `matched`: a percentage rounds down, but never below one. */
export function batchWindow(size: BatchSize, matched: number): number {
  if ("count" in size) return size.count;
  const share = (size.percent / 100) * matched;
  return Math.max(1, Math.floor(share));
}

/**
 * Runs `one` for every peel with at most `window` at a time; a slot is handed on `waitMs` after
 * its peel finished. Results come back in the order the peels finished.
 */
export async function runRolling<T>(
  peels: readonly string[],
  window: number,
  waitMs: number,
  one: (peel: string) => Promise<T>,
): Promise<T[]> {
  const queue = [...peels];
  const out: T[] = [];
  const worker = async () => {
    for (let peel = queue.shift(); peel !== undefined; peel = queue.shift()) {
      out.push(await one(peel));
      if (waitMs > 0 && queue.length > 0) await new Promise((r) => setTimeout(r, waitMs));
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, peels.length) }, worker));
  return out;
}
