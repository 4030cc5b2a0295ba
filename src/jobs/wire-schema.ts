/**
 * Schemas for the wire payloads that peels send (wire.ts has the types). A peel writes these
 * bytes, so a master parses them with these instead of casting.
 */
import { arrayOf, bool, json, literal, num, object, recordOf, type Schema, str } from "../bus/validate.js";
import type { PeelReturn } from "./wire.js";

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
