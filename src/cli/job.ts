/** `zester job list|show|active|kill`: job history and control, from the `jobs` and `job-returns` buckets. */

import { Command } from "commander";
import { stringify } from "yaml";
import { decode, encode } from "../bus/codec.js";
import { subjects } from "../bus/names.js";
import { isKsuid } from "../jobs/ksuid.js";
import { JobStore } from "../jobs/store.js";
import type { JobRecord, PeelReturn } from "../jobs/wire.js";
import type { KillReply } from "../master/dispatcher.js";
import { addConnectOptions, type ConnectFlags, connectWith, explainRequestError } from "./connect-options.js";
import { UsageError } from "./errors.js";
import { runProgram } from "./nats-auth.js";
import { formatRuns, type OutputFormat, type PeelRun } from "./output.js";

/** One PeelRun per targeted peel, in id order, from a record and the returns stored for it. */
export function runsFor(record: JobRecord, returns: ReadonlyMap<string, PeelReturn>): PeelRun[] {
  return Object.keys(record.peels)
    .sort()
    .map((peel) => runFor(peel, record, returns.get(peel)));
}

export function runFor(peel: string, record: JobRecord, ret: PeelReturn | undefined): PeelRun {
  const st = record.peels[peel];
  // A stored return is what the peel actually did, even if it arrived after the job ended.
  if (ret) {
    const run: PeelRun = {
      peel_id: peel,
      success: ret.success,
      status: ret.success ? "success" : "failed",
      results: ret.results ?? [],
    };
    if (ret.error !== undefined) run.error = ret.error;
    if (ret.summary !== undefined) run.summary = ret.summary;
    if (ret.revert !== undefined) run.revert = ret.revert;
    if (ret.results === undefined) run.returned = ret.return ?? null;
    if (ret.settings_source === "snapshot") {
      run.warning = `settings from the last-known-good snapshot${ret.settings_warning ? `: ${ret.settings_warning}` : ""}`;
    }
    return run;
  }
  switch (st) {
    case "unreachable":
      return noAnswer(
        peel,
        "unreachable",
        `peel unreachable: no heartbeat and no ack${record.peel_notes?.[peel] ? `; ${record.peel_notes[peel]}` : ""}`,
      );
    case "timeout":
      return noAnswer(peel, "failed", `no return within the job timeout (${record.timeout_s} s)`);
    case "canceled":
      return noAnswer(peel, "failed", "job canceled before the peel returned");
    case "acked":
      return noAnswer(peel, "failed", "still running");
    case "expired":
      return noAnswer(
        peel,
        "unreachable",
        `queued for ${record.queue_ttl_s ?? 0} s; the peel did not connect and take it in that time`,
      );
    case "queued":
      return noAnswer(peel, "unreachable", "queued: waiting for the peel to connect");
    default:
      return noAnswer(peel, "unreachable", "no answer yet");
  }
}

function noAnswer(peel: string, status: PeelRun["status"], error: string): PeelRun {
  return { peel_id: peel, success: false, status, error, results: [] };
}

export function parseFormat(f: string | undefined): OutputFormat {
  const v = f ?? "text";
  if (v !== "text" && v !== "json" && v !== "yaml")
    throw new UsageError("--format must be text, json or yaml");
  return v;
}

export function printData(data: unknown, format: OutputFormat): void {
  process.stdout.write(
    format === "yaml" ? stringify(data, { lineWidth: 0 }) : `${JSON.stringify(data, null, 2)}\n`,
  );
}

/** Left-aligned columns; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

/** Same subject as the master's KILL_SUBJECT, without loading the master code into the CLI. */
const KILL_SUBJECT = subjects.admin("job.kill");

function requireJid(jid: string): string {
  if (!isKsuid(jid)) throw new UsageError(`not a job id: ${JSON.stringify(jid)} (27 base62 characters)`);
  return jid;
}

type Opts = ConnectFlags & { format?: string; limit?: string };

async function withStore<T>(opts: Opts, fn: (store: JobStore) => Promise<T>): Promise<T> {
  const nc = await connectWith(opts);
  try {
    return await fn(await JobStore.open(nc));
  } finally {
    await nc.close();
  }
}

export async function run(argv: string[]): Promise<number> {
  const program = new Command("zester job").description("jobs: history, detail, running jobs, cancel");
  let code = 0;

  addConnectOptions(
    program
      .command("list")
      .description("recent jobs, newest first")
      .option("--limit <n>", "how many", "20")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (opts: Opts) => {
    const format = parseFormat(opts.format);
    const limit = Number(opts.limit);
    if (!Number.isInteger(limit) || limit < 1) throw new UsageError("--limit must be a positive integer");
    const jobs = await withStore(opts, (s) => s.list({ limit }));
    if (format !== "text") return printData(jobs, format);
    process.stdout.write(
      table(
        ["JID", "FUNCTION", "TARGET", "STATUS", "PEELS", "CREATED"],
        jobs.map((j) => [
          j.jid,
          j.fun,
          j.target,
          j.status,
          String(Object.keys(j.peels).length),
          j.created_at,
        ]),
      ),
    );
  });

  addConnectOptions(
    program
      .command("show")
      .description("one job: its record and every peel's return")
      .argument("<jid>", "job id")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (jid: string, opts: Opts) => {
    const format = parseFormat(opts.format);
    requireJid(jid);
    const found = await withStore(opts, async (s) => {
      const rec = await s.get(jid);
      return rec
        ? { record: rec.record, returns: await s.returnsOf(jid, Object.keys(rec.record.peels)) }
        : undefined;
    });
    if (!found) throw new Error(`no job ${jid}`);
    const { record, returns } = found;
    if (format !== "text") {
      return printData({ ...record, returns: Object.fromEntries([...returns].sort()) }, format);
    }
    const head: [string, string | undefined][] = [
      ["Job", record.jid],
      ["Function", record.fun],
      ["Arguments", record.args.length > 0 ? JSON.stringify(record.args) : undefined],
      ["Keywords", Object.keys(record.kwargs).length > 0 ? JSON.stringify(record.kwargs) : undefined],
      ["Target", record.target],
      ["Status", record.status + (record.test ? " (test run)" : "")],
      ["Created", record.created_at],
      ["Finished", record.finished_at],
      ["Master", record.master],
      ["User", record.user],
      ["States", record.states_rev !== undefined ? `revision ${record.states_rev}` : undefined],
      ["Queue", record.queue_ttl_s !== undefined ? `${record.queue_ttl_s} s for offline peels` : undefined],
    ];
    const lines = head.filter(([, v]) => v !== undefined).map(([k, v]) => `${`${k}:`.padEnd(11)}${v}`);
    const peelIds = Object.keys(record.peels).sort();
    lines.push(`${"Peels:".padEnd(11)}${peelIds.map((p) => `${p} ${record.peels[p]}`).join(", ")}`);
    for (const p of peelIds) {
      const note = record.peel_notes?.[p];
      if (note !== undefined) lines.push(`${"Note:".padEnd(11)}${p} ${note}`);
    }
    process.stdout.write(`${lines.join("\n")}\n`);
    // Returns as the peels sent them; peels still working or that never answered are in the line above.
    const answered = runsFor(record, returns).filter((r) => returns.has(r.peel_id));
    if (answered.length > 0) process.stdout.write(`\n${formatRuns(answered, "text", { color: useColor() })}`);
  });

  addConnectOptions(
    program
      .command("active")
      .description("jobs still running")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (opts: Opts) => {
    const format = parseFormat(opts.format);
    const active = await withStore(opts, (s) => s.active());
    if (format !== "text") return printData(active, format);
    process.stdout.write(
      table(
        ["JID", "FUNCTION", "TARGET", "CREATED"],
        active.map((a) => [a.jid, a.fun, a.target, a.created_at]),
      ),
    );
  });

  addConnectOptions(
    program
      .command("kill")
      .description("cancel a running job: peels still working are told to stop")
      .argument("<jid>", "job id")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (jid: string, opts: Opts) => {
    const format = parseFormat(opts.format);
    requireJid(jid);
    const nc = await connectWith(opts);
    let reply: KillReply;
    try {
      const m = await nc.request(KILL_SUBJECT, encode({ jid }), { timeout: 10_000 }).catch((err) => {
        throw explainRequestError(err, KILL_SUBJECT);
      });
      reply = decode<KillReply>(m.data);
    } finally {
      await nc.close();
    }
    if (format !== "text") printData(reply, format);
    if (reply.error) {
      if (format === "text") process.stderr.write(`zester: ${reply.error}\n`);
      code = 1;
      return;
    }
    if (format === "text") {
      const who =
        reply.canceled && reply.canceled.length > 0 ? `; told to stop: ${reply.canceled.join(", ")}` : "";
      process.stdout.write(`job ${jid} ${reply.status}${who}\n`);
    }
  });

  const rc = await runProgram(program, argv);
  return rc !== 0 ? rc : code;
}

export function useColor(): boolean {
  return process.stdout.isTTY === true && !process.env.NO_COLOR;
}
