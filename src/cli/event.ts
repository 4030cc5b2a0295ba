/**
 * `zester event send <tag> [key=value ...]` (operator origin, `_admin/<tag>`) and
 * `zester event watch [glob] [--since X] [--count N] [--format text|json]`.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { Command } from "commander";
import {
  ADMIN_ORIGIN,
  EventError,
  type EventSince,
  matchKey,
  matchKeyGlob,
  parseSince,
  publishEvent,
  type WatchedEvent,
  watchEvents,
} from "../events/index.js";
import { errText } from "../util/errors.js";
import { addConnectOptions, type ConnectFlags, connectWith } from "./connect-options.js";
import { UsageError } from "./errors.js";
import { parseValue } from "./local.js";
import { runProgram } from "./nats-auth.js";

interface Opts extends ConnectFlags {
  format?: string;
  since?: string;
  count?: string;
}

function format(f: string | undefined): "text" | "json" {
  const v = f ?? "text";
  if (v !== "text" && v !== "json") throw new UsageError("--format must be text or json");
  return v;
}

/** `key=value` words → a data mapping (values are YAML scalars, as for job arguments). */
export async function parseEventData(words: readonly string[]): Promise<Record<string, unknown>> {
  const { parse } = await import("yaml");
  const data: Record<string, unknown> = {};
  for (const w of words) {
    const eq = w.indexOf("=");
    if (eq <= 0 || !/^[A-Za-z_][\w-]*$/.test(w.slice(0, eq))) {
      throw new UsageError(`event data must be key=value (got ${JSON.stringify(w)})`);
    }
    data[w.slice(0, eq)] = parseValue(w.slice(eq + 1), parse);
  }
  return data;
}

/** One line per event: time, stream sequence, match key, data as JSON. */
export function eventLine(w: WatchedEvent): string {
  const seq = w.seq !== undefined ? ` #${w.seq}` : "";
  const depth = w.event.depth > 0 ? ` (depth ${w.event.depth})` : "";
  return `${w.event.ts}${seq} ${matchKey(w.event)}${depth} ${JSON.stringify(w.event.data)}\n`;
}

async function withBus<T>(opts: ConnectFlags, body: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connectWith(opts);
  try {
    return await body(nc);
  } finally {
    await nc.close().catch(() => {});
  }
}

export async function run(argv: string[]): Promise<number> {
  const program = new Command("zester event").description("send and watch events");

  addConnectOptions(
    program
      .command("send")
      .description("send an operator event (match key _admin/<tag>)")
      .argument("<tag>", "slash-separated tag, e.g. myco/deploy/finished")
      .argument("[data...]", "key=value pairs: the event's data")
      .option("--format <fmt>", "text or json", "text"),
  ).action(async (tag: string, words: string[], opts: Opts) => {
    const fmt = format(opts.format);
    const data = await parseEventData(words);
    const sent = await withBus(opts, (nc) =>
      publishEvent(nc, { origin: ADMIN_ORIGIN, tag, data }).catch((err: unknown) => {
        if (err instanceof EventError) throw new UsageError(err.message);
        throw err;
      }),
    );
    if (fmt === "json") {
      process.stdout.write(`${JSON.stringify({ ...sent.event, seq: sent.seq })}\n`);
    } else {
      process.stdout.write(
        `sent ${matchKey(sent.event)} (id ${sent.event.id}, stream sequence ${sent.seq})\n`,
      );
    }
  });

  addConnectOptions(
    program
      .command("watch")
      .description("print events as they happen, or replay them from the events stream")
      .argument("[glob]", "match-key glob (<origin>/<tag>; * crosses /), default every event")
      .option(
        "--since <when>",
        "replay from the stream first: 0 (its start), a sequence, 10m, or an ISO time",
      )
      .option("--count <n>", "stop after N events")
      .option("--format <fmt>", "text, or json (one object per line)", "text"),
  ).action(async (glob: string | undefined, opts: Opts) => {
    const fmt = format(opts.format);
    let since: EventSince | undefined;
    let count: number | undefined;
    try {
      if (glob !== undefined) matchKeyGlob(glob);
      if (opts.since !== undefined) since = parseSince(opts.since);
    } catch (err) {
      throw new UsageError(errText(err));
    }
    if (opts.count !== undefined) {
      count = Number(opts.count);
      if (!Number.isInteger(count) || count < 1) throw new UsageError("--count must be a positive integer");
    }
    const ac = new AbortController();
    const stop = () => ac.abort();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    let seen = 0;
    try {
      await withBus(opts, (nc) =>
        watchEvents(nc, {
          ...(glob !== undefined ? { glob } : {}),
          ...(since !== undefined ? { since } : {}),
          signal: ac.signal,
          onEvent: (w) => {
            const line =
              fmt === "json"
                ? `${JSON.stringify({ ...w.event, match_key: matchKey(w.event), ...(w.seq !== undefined ? { seq: w.seq } : {}) })}\n`
                : eventLine(w);
            process.stdout.write(line);
            seen++;
            return count === undefined || seen < count;
          },
          onRejected: (subject, err) =>
            process.stderr.write(`zester: dropped a message on ${subject}: ${err.message}\n`),
        }),
      );
    } finally {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
  });

  return runProgram(program, argv);
}
