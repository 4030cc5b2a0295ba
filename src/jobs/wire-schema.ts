/**
 * Schemas for the wire payloads that peels send (wire.ts has the types). A peel writes these
 * bytes, so a master parses them with these instead of casting.
 */
import { arrayOf, bool, json, literal, num, object, recordOf, type Schema, str } from "../bus/validate.js";
import type { Ack, PeelReturn } from "./wire.js";

/**
 * An ack names its job. JetStream's own answers (a publish ack, an API reply) sent with a job's
 * ack subject as reply-to carry no JetStream headers, so only their shape tells them apart.
 */
export const ackSchema: Schema<Ack> = object({ jid: str, queued: num });

export const peelReturnSchema: Schema<PeelReturn> = object(
  { jid: str, peel: str, fun: str, success: bool, started_at: str, finished_at: str },
  {
    return: json,
    results: arrayOf(recordOf(json)),
    summary: recordOf(json),
    error: str,
    origin: literal("job", "schedule"),
    settings_source: literal("bus", "snapshot"),
    settings_warning: str,
    revert: object({ run: str, states: num, cannot: num }, { error: str }),
  },
) as Schema<PeelReturn>;
