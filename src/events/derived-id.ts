import { createHash } from "node:crypto";
import { formatKsuid } from "../jobs/ksuid.js";

/**
 * A KSUID that every master computes alike for the same fact (a reaction's job, a peel going
 * offline): time from `at`, payload from a hash of `parts`. As an event id it lets the `events`
 * stream store the event once however many masters announce it.
 */
export function derivedKsuid(at: Date, ...parts: string[]): string {
  const h = createHash("sha256").update(parts.join("\0")).digest();
  return formatKsuid(at, h.subarray(0, 16));
}
