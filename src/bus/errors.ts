/**
 * JetStream answers told apart by their API error code, never by the message text (which the
 * server and the client both reword between versions).
 */
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";

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
