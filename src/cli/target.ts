/**
 * `zester '<target>' <module.function> [args...] [key=value ...]`: run a function on the peels a
 * target matches, through a master. The job is followed through KV watches (the `jobs` record
 * and `job-returns` `<jid>.*`), which replay what was written before the watch started, so no
 * return can slip past between the dispatch reply and the subscription.
 */
import type { KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import type { NatsConnection } from "@nats-io/transport-node";
import { decode, encode } from "../bus/codec.js";
import { subjects } from "../bus/names.js";
import { JobStore } from "../jobs/store.js";
import type { DispatchReply, DispatchRequest, JobRecord, PeelReturn } from "../jobs/wire.js";
import {
  CONNECT_HELP,
  type ConnectFlags,
  connectWith,
  explainRequestError,
  takeConnectFlag,
} from "./connect-options.js";
import { UsageError } from "./errors.js";
import { printData, runFor, runsFor, useColor } from "./job.js";
import { parseValue } from "./local.js";
import { exitCodeFor, formatRuns, type OutputFormat, type PeelRun } from "./output.js";

const USAGE = `Usage: zester '<target>' <module.function> [args...] [key=value ...] [options]

Options:
  --test            dry run (same as test=true)
  --timeout S       seconds the master waits for returns (default: the master's, 60)
  --format FMT      text, json or yaml (default text)
  --async           print the job id and return at once
${CONNECT_HELP}
Exit codes: 0 all succeeded, 1 usage or infrastructure error, 2 some peel failed,
3 some peel unreachable (none failed), 4 both.
`;

interface TargetOptions {
  target: string;
  fun: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  test: boolean;
  timeoutS?: number;
  format: OutputFormat;
  async: boolean;
  conn: ConnectFlags;
}

/** How long past the job timeout the CLI waits for a master to finish the record. */
const FINALISE_GRACE_MS = 30_000;

export async function parseTargetArgs(argv: readonly string[]): Promise<TargetOptions | "help"> {
  if (argv.includes("--help") || argv.includes("-h")) return "help";
  const [target, fun, ...rest] = argv;
  if (target === undefined || fun === undefined) throw new UsageError(`missing target or function\n${USAGE}`);
  const o: TargetOptions = {
    target,
    fun,
    args: [],
    kwargs: {},
    test: false,
    format: "text",
    async: false,
    conn: {},
  };
  const positional: string[] = [];
  const rawKw: [string, string][] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    const took = takeConnectFlag(rest, i, o.conn);
    if (took !== undefined) {
      i = took;
      continue;
    }
    if (a === "--") {
      positional.push(...rest.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const flag = eq > 0 ? a.slice(0, eq) : a;
      const value = () => {
        if (eq > 0) return a.slice(eq + 1);
        const v = rest[++i];
        if (v === undefined) throw new UsageError(`${flag} needs a value`);
        return v;
      };
      switch (flag) {
        case "--test":
          o.test = true;
          break;
        case "--async":
          o.async = true;
          break;
        case "--timeout": {
          const t = Number(value());
          if (!Number.isFinite(t) || t <= 0)
            throw new UsageError("--timeout must be a positive number of seconds");
          o.timeoutS = t;
          break;
        }
        case "--format": {
          const f = value();
          if (f !== "text" && f !== "json" && f !== "yaml")
            throw new UsageError("--format must be text, json or yaml");
          o.format = f;
          break;
        }
        default:
          throw new UsageError(`unknown option ${flag}\n${USAGE}`);
      }
      continue;
    }
    const eq = a.indexOf("=");
    if (eq > 0 && /^[A-Za-z_][\w-]*$/.test(a.slice(0, eq))) rawKw.push([a.slice(0, eq), a.slice(eq + 1)]);
    else positional.push(a);
  }
  const { parse } = await import("yaml");
  for (const [k, v] of rawKw) o.kwargs[k] = parseValue(v, parse);
  o.args = positional.map((p) => parseValue(p, parse));
  if ("test" in o.kwargs) {
    o.test = o.test || o.kwargs.test === true || o.kwargs.test === "true";
    delete o.kwargs.test;
  }
  return o;
}

export async function run(argv: string[]): Promise<number> {
  const parsed = await parseTargetArgs(argv);
  if (parsed === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  const o = parsed;
  const nc = await connectWith(o.conn);
  try {
    return await runJob(nc, o);
  } finally {
    await nc.close().catch(() => {});
  }
}

async function runJob(nc: NatsConnection, o: TargetOptions): Promise<number> {
  const req: DispatchRequest = {
    target: o.target,
    fun: o.fun,
    args: o.args,
    kwargs: o.kwargs,
    test: o.test,
    ...(o.timeoutS !== undefined ? { timeout_s: o.timeoutS } : {}),
    ...(process.env.USER ? { user: process.env.USER } : {}),
  };
  const msg = await nc.request(subjects.dispatch, encode(req), { timeout: 15_000 }).catch((err) => {
    throw explainRequestError(err, subjects.dispatch);
  });
  const reply = decode<DispatchReply>(msg.data);
  if (reply.error !== undefined || reply.jid === undefined) {
    throw new Error(reply.error ?? "the master answered without a job id");
  }
  const jid = reply.jid;
  if (o.async) {
    if (o.format === "text") process.stdout.write(`${jid}\n`);
    else printData({ jid, peels: reply.peels ?? [] }, o.format);
    return 0;
  }

  const store = await JobStore.open(nc);
  const returns = new Map<string, PeelReturn>();
  const printed = new Set<string>();
  const color = useColor();
  let latest: JobRecord | undefined;

  const stream = (ret: PeelReturn) => {
    if (o.format !== "text" || printed.has(ret.peel) || !latest) return;
    // A blank line between peels, as formatRuns separates them in one block.
    if (printed.size > 0) process.stdout.write("\n");
    printed.add(ret.peel);
    process.stdout.write(formatRuns([runFor(ret.peel, latest, ret)], "text", { color }));
  };

  const returnsWatch = await store.returns.watch({ key: `${jid}.*` });
  const jobWatch = await store.jobs.watch({ key: jid });
  try {
    const finalRecord = await new Promise<JobRecord>((resolve, reject) => {
      let deadline: NodeJS.Timeout | undefined;
      const armDeadline = (timeoutS: number) => {
        if (deadline) return;
        deadline = setTimeout(
          () =>
            reject(
              new Error(`job ${jid} was not finished by a master in time; see \`zester job show ${jid}\``),
            ),
          timeoutS * 1000 + FINALISE_GRACE_MS,
        );
      };
      // Until the record names the master's default timeout, wait as long as any sane job takes.
      armDeadline(o.timeoutS ?? 3600);
      follow(returnsWatch, (e) => {
        if (e.operation !== "PUT") return;
        const peel = e.key.slice(jid.length + 1);
        const ret = { ...decode<PeelReturn>(e.value), peel };
        returns.set(peel, ret);
        stream(ret);
      });
      follow(jobWatch, (e) => {
        if (e.operation !== "PUT") return;
        const rec = decode<JobRecord>(e.value);
        const first = latest === undefined;
        latest = rec;
        if (first) {
          if (o.timeoutS === undefined && deadline) {
            clearTimeout(deadline);
            deadline = undefined;
            armDeadline(rec.timeout_s);
          }
          for (const r of returns.values()) stream(r);
        }
        if (rec.status !== "running") {
          if (deadline) clearTimeout(deadline);
          resolve(rec);
        }
      });
    });
    // The two watches are independent: fetch returns the record counts but we have not seen yet.
    for (const [peel, st] of Object.entries(finalRecord.peels)) {
      if (returns.has(peel) || (st !== "success" && st !== "failed")) continue;
      const ret = await store.getReturn(jid, peel);
      if (ret) returns.set(peel, ret);
    }
    const runs = runsFor(finalRecord, returns);
    printFinal(runs, finalRecord, printed, o.format, color);
    return exitCodeFor(runs);
  } finally {
    returnsWatch.stop();
    jobWatch.stop();
  }
}

/** Feeds watch entries to `fn`; an unreadable entry is reported and skipped, never fatal. */
function follow(iter: QueuedIterator<KvWatchEntry>, fn: (e: KvWatchEntry) => void): void {
  void (async () => {
    for await (const e of iter) {
      try {
        fn(e);
      } catch (err) {
        process.stderr.write(
          `zester: ignoring unreadable ${e.bucket} entry ${e.key}: ${(err as Error).message}\n`,
        );
      }
    }
  })().catch(() => {});
}

function printFinal(
  runs: PeelRun[],
  rec: JobRecord,
  printed: ReadonlySet<string>,
  format: OutputFormat,
  color: boolean,
): void {
  if (format !== "text") {
    process.stdout.write(formatRuns(runs, format, { color: false }));
    return;
  }
  let first = printed.size === 0;
  for (const r of runs) {
    if (printed.has(r.peel_id)) continue;
    if (!first) process.stdout.write("\n");
    first = false;
    process.stdout.write(formatRuns([r], "text", { color }));
  }
  const ok = runs.filter((r) => r.status === "success" && r.success).length;
  const unreachable = runs.filter((r) => r.status === "unreachable").length;
  const failed = runs.length - ok - unreachable;
  process.stdout.write(
    `\nJob ${rec.jid} ${rec.status}: ${runs.length} peel${runs.length === 1 ? "" : "s"}, ${ok} succeeded, ${failed} failed, ` +
      `${unreachable} unreachable\n`,
  );
}
