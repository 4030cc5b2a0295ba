/**
 * Bus errors told apart by their class or JetStream API code, never by the message text (which
 * the server and the client both reword between versions).
 */
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { errors } from "@nats-io/transport-node";

function apiCode(err: unknown): number | undefined {
  return err instanceof JetStreamApiError ? err.code : undefined;
}

/** A compare-and-set write (KV create/update with a revision) lost to another writer. */
export function isWrongLastSequence(err: unknown): boolean {
  const code = apiCode(err);
  return (
    code === JetStreamApiCodes.StreamWrongLastSequence ||
    code === JetStreamApiCodes.StreamWrongLastSequenceUnknown
  );
}

/** The stream (or KV bucket) does not exist. */
export function isStreamNotFound(err: unknown): boolean {
  return apiCode(err) === JetStreamApiCodes.StreamNotFound;
}

/** A request nobody subscribes to (the client's RequestError caused by NoRespondersError). */
export function isNoResponders(err: unknown): boolean {
  if (err instanceof errors.NoRespondersError) return true;
  if (err instanceof errors.RequestError) return err.isNoResponders();
  return err instanceof Error && err.cause instanceof errors.NoRespondersError;
}

/** A request or operation that ran out of time. */
export function isTimeout(err: unknown): boolean {
  return (
    err instanceof errors.TimeoutError || (err instanceof Error && err.cause instanceof errors.TimeoutError)
  );
}

/**
 * The server refused the subject for this connection's user (its JWT does not allow it): creds
 * issued before a permission was added, or a subject outside the role.
 */
export function isPermissionDenied(err: unknown): boolean {
  return (
    err instanceof errors.PermissionViolationError ||
    (err instanceof Error && err.cause instanceof errors.PermissionViolationError)
  );
}
