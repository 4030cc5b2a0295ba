/**
 * The peel execution function `event.send <tag> [key=value ...]`: an event of the peel's own
 * origin (`zester.event.<peel>.<tag>`), as Salt's `event.send` from a minion. The key=value
 * arguments are the event's data; `data={...}` merges a whole mapping in.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { errText } from "../util/errors.js";
import { EventError } from "./event.js";
import { type PublishedEvent, publishEvent } from "./publish.js";

export const EVENT_SEND_DOC =
  "Sends an event from this peel: event.send <tag> [key=value ...] (the key=value pairs are its data; " +
  "data={...} adds a mapping). Returns the event id, tag and stream sequence.";

export interface EventSendCall {
  args: readonly unknown[];
  kwargs: Record<string, unknown>;
}

/** The tag and data an `event.send` call names; throws EventError for a call without a tag. */
export function eventSendArgs(call: EventSendCall): { tag: string; data: Record<string, unknown> } {
  const { tag: tagKw, data: dataKw, ...rest } = call.kwargs;
  const tag = call.args[0] ?? tagKw;
  if (typeof tag !== "string" || tag === "")
    throw new EventError("event.send needs a tag: event.send <tag> [key=value ...]");
  if (call.args.length > 1) {
    throw new EventError("event.send takes one positional argument (the tag); give the data as key=value");
  }
  if (dataKw !== undefined && (dataKw === null || typeof dataKw !== "object" || Array.isArray(dataKw))) {
    throw new EventError("event.send: data= must be a mapping ({key: value})");
  }
  return { tag, data: { ...((dataKw as Record<string, unknown> | undefined) ?? {}), ...rest } };
}

/** Runs `event.send` for `peelId` over `nc` (undefined while the peel is disconnected). */
export async function peelEventSend(
  nc: NatsConnection | undefined,
  peelId: string,
  call: EventSendCall,
  /** The depth of the job's event chain (0 for a job an operator started). */
  depth = 0,
): Promise<{ success: true; value: Record<string, unknown> } | { success: false; error: string }> {
  try {
    const { tag, data } = eventSendArgs(call);
    if (!nc || nc.isClosed()) return { success: false, error: "event.send: not connected to the bus" };
    const p: PublishedEvent = await publishEvent(nc, { origin: peelId, tag, data, depth });
    return {
      success: true,
      value: { id: p.event.id, tag: p.event.tag, seq: p.seq, ...(depth > 0 ? { depth } : {}) },
    };
  } catch (err) {
    return { success: false, error: errText(err) };
  }
}
