/**
 * Reading events: live from the bus, or replayed from the `events` stream from a sequence or a
 * time and then live. Every message is validated before a caller sees it; spoofed or malformed
 * ones are reported apart so a watcher can say so instead of printing them.
 */
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import type { MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import { subjects } from "../bus/names.js";
import { jetStreamAnswerReason } from "../bus/validate.js";
import { globToRegExp } from "../target/glob.js";
import { parseInterval } from "../util/duration.js";
import { EventError, EventRejected, matchKey, parseEvent, type ZesterEvent } from "./event.js";

export const EVENTS_STREAM = "events";

/** Where a watch starts: only new events, the stream's start, a stream sequence, or a time. */
export type EventSince =
  | { kind: "new" }
  | { kind: "all" }
  | { kind: "seq"; seq: number }
  | { kind: "time"; time: Date };

/** `0` (the stream's start), a sequence number, a duration back from now (`10m`), or an ISO time. */
export function parseSince(s: string, now = Date.now()): EventSince {
  const t = s.trim();
  if (t === "0") return { kind: "all" };
  if (/^\d+$/.test(t)) return { kind: "seq", seq: Number(t) };
  const back = /^\d+(\.\d+)?(ms|s|m|h|d)$/.test(t) ? parseInterval(t) : undefined;
  if (back !== undefined) return { kind: "time", time: new Date(now - back) };
  const at = Date.parse(t);
  if (!Number.isNaN(at) && /\d{4}-\d{2}-\d{2}/.test(t)) return { kind: "time", time: new Date(at) };
  throw new EventError(
    `--since ${JSON.stringify(s)}: use 0 (the stream's start), a sequence number, a duration back ` +
      "from now (30s, 10m, 2h, 1d) or an ISO time (2026-01-31T12:00:00Z)",
  );
}

/** A glob over match keys (`<origin>/<tag>`); `*` crosses `/`. Throws EventError for a bad one. */
export function matchKeyGlob(glob: string): RegExp {
  const re = globToRegExp(glob);
  if (typeof re === "string") throw new EventError(re);
  return re;
}

export interface WatchedEvent {
  event: ZesterEvent;
  subject: string;
  /** Stream sequence; absent for live events read without the stream. */
  seq?: number;
}

export interface WatchOptions {
  /** Match-key glob; default every event. */
  glob?: string;
  since?: EventSince;
  signal?: AbortSignal;
  /** With `since`: stop once the stream has nothing more (no live tail). */
  catchUpOnly?: boolean;
  /** Stream subject filter narrower than every event (e.g. `zester.event._master.reactor.>`). */
  subject?: string;
  /** Called for each accepted event; return false to stop watching. */
  onEvent(e: WatchedEvent): boolean | undefined | Promise<boolean | undefined>;
  /** Called for a message that failed validation (spoofed tag or origin, bad shape). */
  onRejected?(subject: string, err: EventRejected): void;
}

/** Watches until onEvent returns false or the signal aborts. */
export async function watchEvents(nc: NatsConnection, opts: WatchOptions): Promise<void> {
  const re = opts.glob === undefined ? undefined : matchKeyGlob(opts.glob);
  const since = opts.since ?? { kind: "new" };
  const handle = async (subject: string, data: Uint8Array, seq?: number, h?: MsgHdrs): Promise<boolean> => {
    let event: ZesterEvent;
    try {
      // A peel can have a direct get answer onto any event subject (reply-to): its bytes, not an event.
      const relayed = jetStreamAnswerReason(h);
      if (relayed) throw new EventRejected(relayed, true);
      event = parseEvent(subject, data);
    } catch (err) {
      if (err instanceof EventRejected) {
        opts.onRejected?.(subject, err);
        return true;
      }
      throw err;
    }
    if (re && !re.test(matchKey(event))) return true;
    const w: WatchedEvent = { event, subject };
    if (seq !== undefined) w.seq = seq;
    return (await opts.onEvent(w)) !== false;
  };

  if (since.kind === "new") {
    const sub = nc.subscribe(opts.subject ?? subjects.eventAll);
    const onAbort = () => sub.unsubscribe();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const m of sub) {
        if (!(await handle(m.subject, m.data, undefined, m.headers))) break;
      }
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      sub.unsubscribe();
    }
    return;
  }

  const consumer = await jetstream(nc).consumers.get(EVENTS_STREAM, {
    filter_subjects: opts.subject ?? subjects.eventAll,
    ...(since.kind === "all"
      ? { deliver_policy: DeliverPolicy.All }
      : since.kind === "seq"
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, since.seq) }
        : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: since.time.toISOString() }),
  });
  if (opts.catchUpOnly && (await consumer.info()).num_pending === 0) return;
  const messages = await consumer.consume();
  const onAbort = () => void messages.stop();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const m of messages) {
      if (!(await handle(m.subject, m.data, m.seq, m.headers))) break;
      if (opts.catchUpOnly && m.info.pending === 0) break;
    }
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    await messages.close().catch(() => {});
  }
}
