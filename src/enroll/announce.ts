/**
 * Enrollment decisions as master events: `_master/enroll/<peel>/pending`, `.../approved`,
 * `.../rejected` (docs/events.md). One master takes each decision; the event id is derived from
 * the request and the decision, so a retried announcement is stored once.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { derivedKsuid } from "../events/derived-id.js";
import { emitMasterEvent, masterTags } from "../events/master-events.js";
import type { EnrollmentRecord } from "./protocol.js";
import type { EnrollDecision } from "./registrar.js";

/** `data` of the `_master/enroll/<peel>/<decision>` events. */
export interface EnrollmentEventData {
  peel: string;
  request_id: string;
  public_key: string;
  /** Who decided (`token` for a one-time token); absent for pending. */
  by?: string;
  /** The key or record a replacement request takes over. */
  replaces?: string;
  /** Address the request came from. */
  remote?: string;
  reason?: string;
}

export function announceEnrollment(
  nc: NatsConnection,
  what: EnrollDecision,
  r: EnrollmentRecord,
  by: string | undefined,
  now: number,
): void {
  const data: EnrollmentEventData = { peel: r.peel_id, request_id: r.request_id, public_key: r.public_key };
  if (by !== undefined) data.by = by;
  const replaces = r.replaces?.public_key ?? r.replaces_known?.public_key ?? r.replaces_known?.via;
  if (replaces !== undefined) data.replaces = replaces;
  if (r.remote !== undefined) data.remote = r.remote;
  if (r.reason !== undefined) data.reason = r.reason;
  const stamp = what === "approved" ? r.approved_at : what === "rejected" ? r.rejected_at : r.requested_at;
  const at = new Date(Number.isFinite(Date.parse(stamp ?? "")) ? Date.parse(stamp!) : now);
  emitMasterEvent(nc, masterTags.enrollment(r.peel_id, what), data, {
    id: derivedKsuid(at, "enroll", what, r.request_id),
  });
}
