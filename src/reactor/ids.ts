/**
 * Deterministic ids for what a reaction makes: the same event, rule and block always give the
 * same job id (and chained event id), so a redelivered event, or one handled by a second master
 * after the first died mid-reaction, finds the job already recorded instead of making another.
 * The KSUID's time is the event's, so the ids sort with their cause.
 */
import { derivedKsuid } from "../events/derived-id.js";
import { parseKsuid } from "../jobs/ksuid.js";

export function reactionId(eventId: string, ...parts: string[]): string {
  return derivedKsuid(parseKsuid(eventId).timestamp, eventId, ...parts);
}
