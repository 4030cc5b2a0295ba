/**
 * `zester dev`'s reactor demonstration: sends the operator event `dev/hello` and reports what the
 * reactor did with it (the example rules in examples/reactor react to it).
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { ADMIN_ORIGIN } from "../events/event.js";
import { publishEvent } from "../events/publish.js";
import { watchEvents } from "../events/watch.js";
import type { ReactionRecord } from "./reactor.js";
import { reactorTags } from "./reactor.js";

export async function demoReaction(nc: NatsConnection, timeoutMs = 10_000): Promise<string> {
  const { event, seq } = await publishEvent(nc, {
    origin: ADMIN_ORIGIN,
    tag: "dev/hello",
    data: { who: "zester dev" },
  });
  const found: ReactionRecord[] = [];
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    await watchEvents(nc, {
      since: { kind: "seq", seq },
      subject: `zester.event._master.${reactorTags.reaction.replaceAll("/", ".")}`,
      signal: ac.signal,
      onEvent: (w) => {
        const r = w.event.data as unknown as ReactionRecord;
        if (r.event_id === event.id) found.push(r);
        return found.length === 0;
      },
    });
  } finally {
    clearTimeout(timer);
  }
  const r = found[0];
  if (!r)
    return `reactor: no reaction to _admin/dev/hello within ${timeoutMs / 1000} s (no rule for it in the reactor dir?)`;
  const jobs = r.actions.filter((a) => a.jid).map((a) => `job ${a.jid}`);
  return (
    `reactor: sent _admin/dev/hello; rule ${r.rule} ran ${r.reaction}: ${r.outcome}` +
    `${jobs.length > 0 ? ` (${jobs.join(", ")})` : ""}${r.error ? `: ${r.error}` : ""}`
  );
}
