/**
 * `zester reactor test <match-key> [key=value ...]`: what the live rules would do for an event,
 * rendered and validated by a master, nothing taken. `zester reactor log`: recent reactions and
 * drops from the events stream. `zester reactor stats`: each master's counters.
 */
import { Command } from "commander";
import { decode, encode } from "../bus/codec.js";
import { subjects } from "../bus/names.js";
import { parseSince } from "../events/watch.js";
import type { ReactionRecord, ReactorStats } from "../reactor/reactor.js";
import type { ReactorTestReply } from "../reactor/service.js";
import { REACTOR_STATS_SUBJECT } from "../reactor/service.js";
import { errText } from "../util/errors.js";
import { addConnectOptions, type ConnectFlags, connectWith, explainRequestError } from "./connect-options.js";
import { UsageError } from "./errors.js";
import { parseEventData } from "./event.js";
import { printData, table } from "./job.js";
import { runProgram } from "./nats-auth.js";

interface Opts extends ConnectFlags {
  format?: string;
  limit?: string;
  since?: string;
}

function format(f: string | undefined): "text" | "json" | "yaml" {
  const v = f ?? "text";
  if (v !== "text" && v !== "json" && v !== "yaml")
    throw new UsageError("--format must be text, json or yaml");
  return v;
}

function actionLine(a: ReactionRecord["actions"][number]): string {
  const what = a.plan ? ` ${JSON.stringify(a.plan)}` : "";
  const jid = a.jid ? ` job ${a.jid}${a.existing ? " (already dispatched)" : ""}` : "";
  const err = a.error ? ` error: ${a.error}` : "";
  return `    ${a.ok ? "ok  " : "FAIL"} ${a.block}: ${a.action}${what}${jid}${err}`;
}

export function reactionText(r: ReactionRecord, header = true): string {
  const lines = header ? [`${r.rule} → ${r.reaction}: ${r.outcome}`] : [];
  if (r.error) lines.push(`    ${r.error.replaceAll("; ", "\n    ")}`);
  for (const a of r.actions) lines.push(actionLine(a));
  return `${lines.join("\n")}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const program = new Command("zester reactor").description("reactor: dry runs, recent reactions, counters");
  let code = 0;

  addConnectOptions(
    program
      .command("test")
      .description(
        "render and validate the rules an event would fire, and print their actions (nothing is done)",
      )
      .argument("<match-key>", "<origin>/<tag>, e.g. web-01/myco/deploy/finished or _admin/myco/deploy")
      .argument("[data...]", "key=value pairs: the event's data")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (key: string, words: string[], opts: Opts) => {
    const fmt = format(opts.format);
    const data = await parseEventData(words);
    const nc = await connectWith(opts);
    let reply: ReactorTestReply;
    try {
      const m = await nc
        .request(subjects.reactorTest, encode({ match_key: key, data }), { timeout: 15_000 })
        .catch((err) => {
          throw explainRequestError(err, subjects.reactorTest);
        });
      reply = decode<ReactorTestReply>(m.data);
    } finally {
      await nc.close();
    }
    if (reply.error) throw new Error(reply.error);
    if (reply.reactions.some((r) => r.outcome !== "ok") || reply.dir_errors) code = 2;
    if (reply.dir_errors && fmt === "text") {
      process.stderr.write(
        `zester: the reactor dir has errors and was not published; testing the live rules (revision ${reply.rules_rev}):\n  ${reply.dir_errors.join("\n  ")}\n`,
      );
    }
    if (fmt !== "text") return printData(reply, fmt);
    if (reply.reactions.length === 0) {
      process.stdout.write(`no rule matches ${reply.match_key} (rules revision ${reply.rules_rev})\n`);
      return;
    }
    process.stdout.write(`${reply.match_key} (rules revision ${reply.rules_rev}, master ${reply.master}):\n`);
    for (const r of reply.reactions) process.stdout.write(reactionText(r));
  });

  addConnectOptions(
    program
      .command("log")
      .description("recent reactions and drops, oldest first")
      .option("--since <when>", "how far back: a duration (1h), a sequence, 0 or an ISO time", "1h")
      .option("--limit <n>", "at most this many, the newest", "20")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (opts: Opts) => {
    const fmt = format(opts.format);
    const limit = Number(opts.limit ?? "20");
    if (!Number.isInteger(limit) || limit < 1) throw new UsageError("--limit must be a positive integer");
    let since: ReturnType<typeof parseSince>;
    try {
      since = parseSince(opts.since ?? "1h");
    } catch (err) {
      throw new UsageError(errText(err));
    }
    const { watchEvents } = await import("../events/watch.js");
    const nc = await connectWith(opts);
    const rows: { ts: string; tag: string; data: Record<string, unknown> }[] = [];
    try {
      await watchEvents(nc, {
        since,
        subject: "zester.event._master.reactor.>",
        catchUpOnly: true,
        onEvent: (w) => {
          rows.push({ ts: w.event.ts, tag: w.event.tag, data: w.event.data });
          if (rows.length > limit) rows.shift();
          return undefined;
        },
      });
    } finally {
      await nc.close();
    }
    if (fmt !== "text") return printData(rows, fmt);
    for (const r of rows) {
      if (r.tag === "reactor/reaction") {
        const rec = r.data as unknown as ReactionRecord;
        process.stdout.write(
          `${r.ts} ${rec.match_key} [${rec.event_id}] ${rec.rule} → ${rec.reaction}: ${rec.outcome} (${rec.master})\n`,
        );
        process.stdout.write(reactionText(rec, false));
      } else {
        const d = r.data as {
          reason?: string;
          message?: string;
          count?: number;
          rule?: string;
          errors?: string[];
        };
        const text = d.message ?? (d.rule ? `breaker open for ${d.rule}` : (d.errors ?? []).join("; "));
        process.stdout.write(
          `${r.ts} ${r.tag}${d.reason ? ` (${d.reason})` : ""}: ${text}${d.count && d.count > 1 ? ` ×${d.count}` : ""}\n`,
        );
      }
    }
  });

  addConnectOptions(
    program
      .command("stats")
      .description("each running master's reactor counters: handled, reactions, jobs, drops by reason")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (opts: Opts) => {
    const fmt = format(opts.format);
    const nc = await connectWith(opts);
    const stats: ReactorStats[] = [];
    try {
      const replies = await nc.requestMany(REACTOR_STATS_SUBJECT, encode({}), { maxWait: 1_500 });
      for await (const m of replies) stats.push(decode<ReactorStats>(m.data));
    } finally {
      await nc.close();
    }
    stats.sort((a, b) => a.master.localeCompare(b.master));
    if (stats.length === 0)
      throw new Error(`no master answered on ${REACTOR_STATS_SUBJECT} (is zester-master running?)`);
    if (fmt !== "text") return printData(stats, fmt);
    const drops = (s: ReactorStats) =>
      Object.entries(s.drops)
        .filter(([, n]) => n > 0)
        .map(([k, n]) => `${k} ${n}`)
        .join(", ") || "none";
    process.stdout.write(
      table(
        ["MASTER", "RULES", "HANDLED", "REACTIONS", "JOBS", "DUPLICATES", "DROPS", "OPEN BREAKERS"],
        stats.map((s) => [
          s.master,
          `${s.rules} (rev ${s.rules_rev})`,
          String(s.handled),
          String(s.reactions),
          String(s.jobs),
          String(s.duplicates),
          drops(s),
          s.open_breakers.join(", ") || "-",
        ]),
      ),
    );
  });

  const rc = await runProgram(program, argv);
  return rc !== 0 ? rc : code;
}
