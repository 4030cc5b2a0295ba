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
import { formatOptionsHelp } from "../config/load.js";
import { JobStore } from "../jobs/store.js";
import type { DispatchReply, DispatchRequest, JobRecord, PeelReturn } from "../jobs/wire.js";
import type { ResolveReply } from "../master/dispatcher.js";
import { errText } from "../util/errors.js";
import { type BatchSize, batchWindow, parseBatchSize, runRolling } from "./batch.js";
import { CLI_OPTIONS, loadCliConfig } from "./cli-config.js";
import { type ConnectFlags, connectWith, explainRequestError } from "./connect-options.js";
import { UsageError } from "./errors.js";
import { printData, runFor, runsFor, useColor } from "./job.js";
import { parseValue } from "./local.js";
import { exitCodeFor, formatRuns, type OutputFormat, type PeelRun } from "./output.js";

const USAGE = `Usage: zester '<target>' <module.function> [args...] [key=value ...] [options]

Options go anywhere on the line (Salt's habit): \`zester -t 5 '*' test.ping\`. Each is also a
ZESTER_* variable and a key in ~/.config/zester/config.yaml (flag > env > file > default).

${formatOptionsHelp(CLI_OPTIONS)}
  --config FILE           config file (env ZESTER_CONFIG, default ~/.config/zester/config.yaml)

Exit codes: 0 all succeeded, 1 usage or infrastructure error, 2 some peel failed,
3 some peel unreachable (none failed), 4 both.
`;

export interface TargetOptions {
  target: string;
  fun: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  test: boolean;
  timeoutS?: number;
  /** `--queue`: seconds the master keeps the command for offline peels. */
  queueTtlS?: number;
  format: OutputFormat;
  async: boolean;
  batch?: BatchSize;
  batchWaitS: number;
  verbose: boolean;
  conn: ConnectFlags;
}

/** How long past the job timeout the CLI waits for a master to finish the record. */
const FINALISE_GRACE_MS = 30_000;

const KWARG = /^[A-Za-z_][\w-]*$/;

export async function parseTargetArgs(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<TargetOptions | "help"> {
  const cfg = loadCliConfig(argv, env);
  if (cfg.help) return "help";
  const [target, fun, ...rest] = cfg.positionals;
  if (target === undefined || fun === undefined) throw new UsageError(`missing target or function\n${USAGE}`);
  const v = cfg.values;
  const o: TargetOptions = {
    target,
    fun,
    args: [],
    kwargs: {},
    test: v.test,
    format: v.format as OutputFormat,
    async: v.async,
    batchWaitS: v.batch_wait,
    verbose: v.verbose,
    conn: {
      natsUrl: v.nats_url,
      authDir: v.auth_dir,
      ...(v.creds !== undefined ? { creds: v.creds } : {}),
      ...(v.ca !== undefined ? { ca: v.ca } : {}),
    },
    ...(v.timeout !== undefined ? { timeoutS: v.timeout } : {}),
    ...(v.queue !== undefined ? { queueTtlS: v.queue / 1000 } : {}),
    ...(v.batch !== undefined ? { batch: parseBatchSize(v.batch) } : {}),
  };
  if (o.batch && o.async)
    throw new UsageError("--batch and --async do not go together: a batch waits for returns");
  const positional: string[] = [];
  const rawKw: [string, string][] = [];
  // Words after `--` are positional even when they look like key=value.
  const literalFrom = rest.length - cfg.literal.length;
  rest.forEach((a, i) => {
    const eq = a.indexOf("=");
    if (i < literalFrom && eq > 0 && KWARG.test(a.slice(0, eq)))
      rawKw.push([a.slice(0, eq), a.slice(eq + 1)]);
    else positional.push(a);
  });
  const { parse } = await import("yaml");
  for (const [k, val] of rawKw) o.kwargs[k] = parseValue(val, parse);
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
  // Refused here, before any peel is asked: the peels run this same version's functions.
  const { unknownFunctionError } = await import("../peel/functions.js");
  const unknown = await unknownFunctionError(o.fun);
  if (unknown !== undefined) throw new UsageError(unknown);
  const nc = await connectWith(o.conn);
  try {
    return o.batch ? await runBatches(nc, o, o.batch) : await runJob(nc, o);
  } finally {
    await nc.close().catch(() => {});
  }
}

async function request<T extends object>(nc: NatsConnection, subject: string, body: object): Promise<T> {
  const msg = await nc.request(subject, encode(body), { timeout: 15_000 }).catch((err) => {
    throw explainRequestError(err, subject);
  });
  return decode<T>(msg.data);
}

async function dispatch(
  nc: NatsConnection,
  o: TargetOptions,
  target: string,
): Promise<DispatchReply & { jid: string }> {
  const req: DispatchRequest = {
    target,
    fun: o.fun,
    args: o.args,
    kwargs: o.kwargs,
    test: o.test,
    ...(o.timeoutS !== undefined ? { timeout_s: o.timeoutS } : {}),
    ...(o.queueTtlS !== undefined ? { queue_ttl_s: o.queueTtlS } : {}),
    ...(process.env.USER ? { user: process.env.USER } : {}),
  };
  const reply = await request<DispatchReply>(nc, subjects.dispatch, req);
  if (reply.error !== undefined || reply.jid === undefined) {
    throw new Error(reply.error ?? "the master answered without a job id");
  }
  return reply as DispatchReply & { jid: string };
}

function announce(o: TargetOptions, jid: string, peels: readonly string[]): void {
  if (!o.verbose) return;
  // stderr, so --format json on stdout stays one document.
  process.stderr.write(
    `Executing job with jid ${jid} on ${peels.length} peel${peels.length === 1 ? "" : "s"}: ${peels.join(", ")}\n`,
  );
}

async function runJob(nc: NatsConnection, o: TargetOptions): Promise<number> {
  const reply = await dispatch(nc, o, o.target);
  const jid = reply.jid;
  if (o.async) {
    if (o.format === "text") process.stdout.write(`${jid}\n`);
    else printData({ jid, peels: reply.peels ?? [] }, o.format);
    return 0;
  }
  announce(o, jid, reply.peels ?? []);
  const store = await JobStore.open(nc);
  const color = useColor();
  const printed = new Set<string>();
  const { runs, record } = await followJob(store, jid, o.timeoutS, (run) => {
    if (o.format === "text") printStreamed(run, printed, color);
  });
  printFinal(runs, record.jid, record.status, printed, o.format, color);
  return exitCodeFor(runs);
}

/** One job per peel, at most a window of them at a time (Salt's rolling batch). */
async function runBatches(nc: NatsConnection, o: TargetOptions, size: BatchSize): Promise<number> {
  const resolved = await request<ResolveReply>(nc, subjects.targetResolve, { target: o.target });
  if (resolved.error !== undefined) throw new Error(resolved.error);
  const peels = resolved.peels ?? [];
  if (peels.length === 0) throw new Error(`no peels match ${o.target}`);
  const window = batchWindow(size, peels.length);
  if (o.verbose) process.stderr.write(`Batch of ${window} over ${peels.length} peels: ${peels.join(", ")}\n`);
  const store = await JobStore.open(nc);
  const color = useColor();
  const printed = new Set<string>();
  const all = await runRolling(peels, window, o.batchWaitS * 1000, async (peel) => {
    const reply = await dispatch(nc, o, `L@${peel}`);
    announce(o, reply.jid, reply.peels ?? []);
    const { runs } = await followJob(store, reply.jid, o.timeoutS, (run) => {
      if (o.format === "text") printStreamed(run, printed, color);
    });
    // The stream shows a return as it comes; a peel that never returned is shown when its job ends.
    if (o.format === "text") for (const r of runs) printStreamed(r, printed, color);
    return runs;
  });
  const runs = all.flat().sort((a, b) => (a.peel_id < b.peel_id ? -1 : a.peel_id > b.peel_id ? 1 : 0));
  if (o.format !== "text") process.stdout.write(formatRuns(runs, o.format, { color: false }));
  else process.stdout.write(`\n${summaryLine(runs, `Batch of ${window}`, "done")}\n`);
  return exitCodeFor(runs);
}

function printStreamed(run: PeelRun, printed: Set<string>, color: boolean): void {
  if (printed.has(run.peel_id)) return;
  // A blank line between peels, as formatRuns separates them in one block.
  if (printed.size > 0) process.stdout.write("\n");
  printed.add(run.peel_id);
  process.stdout.write(formatRuns([run], "text", { color }));
}

/**
 * Follows one job through its record and its returns until a master finishes it; `onReturn`
 * sees each peel's run as its return arrives.
 */
async function followJob(
  store: JobStore,
  jid: string,
  timeoutS: number | undefined,
  onReturn: (run: PeelRun) => void,
): Promise<{ runs: PeelRun[]; record: JobRecord }> {
  const returns = new Map<string, PeelReturn>();
  let latest: JobRecord | undefined;
  const stream = (ret: PeelReturn) => {
    if (latest) onReturn(runFor(ret.peel, latest, ret));
  };
  const returnsWatch = await store.returns.watch({ key: `${jid}.*` });
  const jobWatch = await store.jobs.watch({ key: jid });
  try {
    const finalRecord = await new Promise<JobRecord>((resolve, reject) => {
      let deadline: NodeJS.Timeout | undefined;
      const armDeadline = (s: number) => {
        if (deadline) return;
        deadline = setTimeout(
          () =>
            reject(
              new Error(`job ${jid} was not finished by a master in time; see \`zester job show ${jid}\``),
            ),
          s * 1000 + FINALISE_GRACE_MS,
        );
      };
      // Until the record names the master's default timeout, wait as long as any sane job takes.
      armDeadline(timeoutS ?? 3600);
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
          // The record knows the real run: the master's default timeout, and a queue TTL on top.
          if ((timeoutS === undefined || rec.queue_ttl_s) && deadline) {
            clearTimeout(deadline);
            deadline = undefined;
            armDeadline(rec.timeout_s + (rec.queue_ttl_s ?? 0));
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
    return { runs: runsFor(finalRecord, returns), record: finalRecord };
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
        process.stderr.write(`zester: ignoring unreadable ${e.bucket} entry ${e.key}: ${errText(err)}\n`);
      }
    }
  })().catch(() => {});
}

function printFinal(
  runs: PeelRun[],
  jid: string,
  status: string,
  printed: ReadonlySet<string>,
  format: OutputFormat,
  color: boolean,
): void {
  if (format !== "text") {
    // Salt's outputters are for people and take colour; json and yaml are for machines.
    const painted = format === "highstate" || format === "nested";
    process.stdout.write(formatRuns(runs, format, { color: painted && color }));
    return;
  }
  let first = printed.size === 0;
  for (const r of runs) {
    if (printed.has(r.peel_id)) continue;
    if (!first) process.stdout.write("\n");
    first = false;
    process.stdout.write(formatRuns([r], "text", { color }));
  }
  process.stdout.write(`\n${summaryLine(runs, `Job ${jid}`, status)}\n`);
}

/** `Job <jid> done: 3 peels, 2 succeeded, 1 failed, 0 unreachable`. */
function summaryLine(runs: readonly PeelRun[], what: string, status: string): string {
  const ok = runs.filter((r) => r.status === "success" && r.success).length;
  const unreachable = runs.filter((r) => r.status === "unreachable").length;
  const failed = runs.length - ok - unreachable;
  return (
    `${what} ${status}: ${runs.length} peel${runs.length === 1 ? "" : "s"}, ${ok} succeeded, ${failed} failed, ` +
    `${unreachable} unreachable`
  );
}
