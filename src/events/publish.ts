/**
 * Sending events. `publishEvent` waits for the `events` stream to store the event (the event id
 * is the stream's `Nats-Msg-Id`, so a retried send is stored once); `emitEvent` is the
 * fire-and-forget form for the master's own bookkeeping events, where a lost event must never
 * hold up a job.
 */
import { jetstream } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { encode } from "../bus/codec.js";
import { eventSubject, makeEvent, type NewEvent, type ZesterEvent } from "./event.js";

export interface PublishedEvent {
  event: ZesterEvent;
  /** Sequence in the `events` stream. */
  seq: number;
  /** True when the stream already held an event with this id (a retried send). */
  duplicate: boolean;
}

/** Makes, checks and stores one event; throws EventError for a bad event, or the bus error. */
export async function publishEvent(
  nc: NatsConnection,
  e: NewEvent,
  opts: { timeoutMs?: number } = {},
): Promise<PublishedEvent> {
  const event = makeEvent(e);
  const ack = await jetstream(nc).publish(eventSubject(event.origin, event.tag), encode(event), {
    msgID: event.id,
    timeout: opts.timeoutMs ?? 5_000,
  });
  return { event, seq: ack.seq, duplicate: ack.duplicate };
}

/** Makes and publishes one event without waiting for the stream; returns it. */
export function emitEvent(nc: NatsConnection, e: NewEvent): ZesterEvent {
  const event = makeEvent(e);
  const h = headers();
  h.set("Nats-Msg-Id", event.id);
  nc.publish(eventSubject(event.origin, event.tag), encode(event), { headers: h });
  return event;
}
