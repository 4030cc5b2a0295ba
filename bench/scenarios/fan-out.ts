/**
 * fan-out: one job to every peel of a simulated fleet, the way the CLI runs it (request on
 * `zester.dispatch`, then KV watches on `jobs` and `job-returns`), over a real TLS + operator-JWT
 * nats-server, with the master and the fleet in child processes so their memory can be read from
 * /proc. Baseline, measured in the same run against a fresh server: the same N connections
 * (same creds, same TLS) answering N addressed requests on their command subjects, with no
 * JetStream, signing or Zester code on the path.
 *
 * Sizes: 100, 1,000 and 5,000 peels, capped by ZESTER_BENCH_MAX_PEELS (default 1,000; see
 * bench/README.md for what 5,000 costs on 2 cores).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { KvWatchEntry } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { AUTH_FILES, initAuthDir, issuePeelCredsFile, peelCredsPath } from "../../src/auth/auth-dir.js";
import { decode, encode } from "../../src/bus/codec.js";
import { connect } from "../../src/bus/connect.js";
import { subjects } from "../../src/bus/names.js";
import { JobStore } from "../../src/jobs/store.js";
import type { DispatchReply, DispatchRequest, JobRecord, PeelReturn } from "../../src/jobs/wire.js";
import { errText } from "../../src/util/errors.js";
import { statOrUndefined } from "../../src/util/files.js";
import { fleetPeelId } from "../fleet-host.js";
import { fmtMs, type ScenarioOptions, type ScenarioResult, stats, table } from "../lib.js";
import { consumerCounts, cpuDelta, cpuOf, serverCounters, streamSeqs, streamWrites } from "../probes.js";

const here = dirname(fileURLToPath(import.meta.url));
/** Compiled to dist/bench/scenarios/; the repository root is three levels up. */
export const repoRoot = resolve(here, "..", "..", "..");
export const distBin = (name: string) => join(repoRoot, "dist", "bin", `${name}.js`);

const SIZES = [100, 1_000, 5_000];
export const DEFAULT_MAX_PEELS = 1_000;
const PREFIX = "bench";

// ---- child processes --------------------------------------------------------------------------

/** /proc/<pid>/status figures in KiB: current and peak resident set. */
export interface Memory {
  rssKiB: number;
  hwmKiB: number;
}

export async function procMemory(pid: number): Promise<Memory> {
  const text = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, "m").exec(text)?.[1] ?? NaN);
  return { rssKiB: field("VmRSS"), hwmKiB: field("VmHWM") };
}

export function fmtMiB(kib: number): string {
  return Number.isFinite(kib) ? `${(kib / 1024).toFixed(1)} MiB` : "n/a";
}

export interface Child {
  readonly name: string;
  readonly pid: number;
  output(): string;
  /** Resolves with the first output line matching `re` (already printed lines count). */
  waitFor(re: RegExp, ms: number): Promise<string>;
  /** Resolves with the next JSON event line `{"event": name}` on stdout. */
  event(name: string, ms: number): Promise<Record<string, unknown>>;
  send(line: string): void;
  /**
   * SIGTERM (or, with "stdin", only the end of stdin: fleet hosts then stop their peels
   * cleanly), then SIGKILL once `graceMs` has passed.
   */
  stop(graceMs?: number, how?: "signal" | "stdin"): Promise<void>;
}

/**
 * Every child the benchmark starts, so all of them die on every exit path: stopAll() in
 * `finally`, a process `exit` hook for crashes, and the children's stdin pipe (fleet hosts stop
 * when it closes).
 */
export class Children {
  private readonly all = new Set<Child>();
  private readonly procs = new Set<ChildProcess>();
  private readonly onExit = () => {
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  };

  constructor() {
    process.on("exit", this.onExit);
  }

  /**
   * Starts argv through `sh` so the open-files limit can be raised first (each peel connection
   * is a descriptor, and so is each of its clients on the server side); `exec` keeps the pid.
   */
  spawn(name: string, argv: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Child {
    const script = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"';
    const proc = spawn("sh", ["-c", script, "sh", ...argv], {
      stdio: ["pipe", "pipe", "pipe"],
      env: opts.env ?? process.env,
    });
    this.procs.add(proc);
    let out = "";
    const lineWaiters: { re: RegExp; resolve: (l: string) => void }[] = [];
    const eventWaiters: { name: string; resolve: (e: Record<string, unknown>) => void }[] = [];
    const events: Record<string, unknown>[] = [];
    let exited: string | undefined;
    const failWaiters: ((err: unknown) => void)[] = [];
    const onLine = (line: string, stdout: boolean) => {
      for (const w of [...lineWaiters]) {
        if (w.re.test(line)) {
          lineWaiters.splice(lineWaiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
      if (!stdout || !line.startsWith("{")) return;
      let ev: Record<string, unknown>;
      try {
        ev = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      const w = eventWaiters.find((x) => x.name === ev.event);
      if (w) {
        eventWaiters.splice(eventWaiters.indexOf(w), 1);
        w.resolve(ev);
      } else events.push(ev);
    };
    const reader = (stdout: boolean) => {
      let partial = "";
      return (b: Buffer) => {
        const s = b.toString("utf8");
        out += s;
        if (out.length > 200_000) out = out.slice(-100_000);
        partial += s;
        const lines = partial.split("\n");
        partial = lines.pop() ?? "";
        for (const l of lines) onLine(l, stdout);
      };
    };
    proc.stdout.on("data", reader(true));
    proc.stderr.on("data", reader(false));
    proc.stdin.on("error", () => {});
    const exitedP = new Promise<void>((res) => {
      proc.on("exit", (code, sig) => {
        exited = `exited (${sig ?? code})`;
        for (const f of failWaiters.splice(0)) f(new Error(`${name} ${exited}:\n${out.slice(-3000)}`));
        res();
      });
      proc.on("error", (err) => {
        exited = `could not start: ${err.message}`;
        for (const f of failWaiters.splice(0)) f(new Error(`${name} ${exited}`));
        res();
      });
    });
    const waitWith = <T>(register: (resolve: (v: T) => void) => void, what: string, ms: number) =>
      new Promise<T>((res, rej) => {
        if (exited) {
          rej(new Error(`${name} ${exited} before ${what}:\n${out.slice(-3000)}`));
          return;
        }
        const timer = setTimeout(
          () => rej(new Error(`${name}: no ${what} within ${ms} ms:\n${out.slice(-3000)}`)),
          ms,
        );
        failWaiters.push((err) => {
          clearTimeout(timer);
          rej(err);
        });
        register((v) => {
          clearTimeout(timer);
          res(v);
        });
      });

    const child: Child = {
      name,
      pid: proc.pid ?? -1,
      output: () => out,
      waitFor: (re, ms) => {
        const seen = out.split("\n").find((l) => re.test(l));
        if (seen !== undefined) return Promise.resolve(seen);
        return waitWith<string>((r) => lineWaiters.push({ re, resolve: r }), `line matching ${re}`, ms);
      },
      event: (ev, ms) => {
        const i = events.findIndex((e) => e.event === ev);
        if (i >= 0) return Promise.resolve(events.splice(i, 1)[0]!);
        return waitWith<Record<string, unknown>>(
          (r) => eventWaiters.push({ name: ev, resolve: r }),
          `"${ev}" event`,
          ms,
        );
      },
      send: (line) => {
        if (!exited) proc.stdin.write(`${line}\n`);
      },
      stop: async (graceMs = 10_000, how = "signal") => {
        if (!exited) {
          proc.stdin.end();
          if (how === "signal") proc.kill("SIGTERM");
          const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
          await exitedP;
          clearTimeout(t);
        }
        this.procs.delete(proc);
        this.all.delete(child);
      },
    };
    this.all.add(child);
    return child;
  }

  async stopAll(): Promise<void> {
    await Promise.allSettled([...this.all].map((c) => c.stop(5_000)));
    process.off("exit", this.onExit);
  }
}

// ---- nats-server ------------------------------------------------------------------------------

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === "object" ? res(addr.port) : rej(new Error("no port"))));
    });
  });
}

export interface BenchAuth {
  dir: string;
  port: number;
  url: string;
  caFile: string;
}

/** An auth dir (trust chain, CA, server config) for one server port, as `zester nats-auth init` writes it. */
export async function benchAuth(dir: string): Promise<BenchAuth> {
  const port = await freePort();
  await initAuthDir({ dir, port, listenHost: "127.0.0.1" });
  return { dir, port, url: `tls://127.0.0.1:${port}`, caFile: join(dir, "nats-ca.crt") };
}

/**
 * Starts nats-server on the auth dir's config with an empty JetStream store; with `monitorPort`
 * its monitoring endpoint (`/varz`: message counters) listens there on loopback.
 */
export async function startServer(
  children: Children,
  auth: BenchAuth,
  opts: { monitorPort?: number } = {},
): Promise<Child> {
  const js = join(auth.dir, AUTH_FILES.jetstreamDir);
  await rm(js, { recursive: true, force: true });
  await mkdir(js, { recursive: true, mode: 0o700 });
  const server = children.spawn("nats-server", [
    "nats-server",
    "-c",
    join(auth.dir, AUTH_FILES.serverConfig),
    ...(opts.monitorPort !== undefined ? ["-m", String(opts.monitorPort)] : []),
  ]);
  await server.waitFor(/Server is ready/, 20_000);
  return server;
}

/** Issues creds for peels 0..n-1 that do not have them yet (kept across sizes). */
export async function ensurePeelCreds(authDir: string, n: number): Promise<void> {
  const todo: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = fleetPeelId(PREFIX, i);
    if (!(await statOrUndefined(peelCredsPath(authDir, id)))) todo.push(id);
  }
  let next = 0;
  const worker = async () => {
    while (next < todo.length) await issuePeelCredsFile(authDir, todo[next++]!);
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}

// ---- measurements -----------------------------------------------------------------------------

export interface FanOutSample {
  /** From the dispatch request until the last return was seen. */
  allMs: number;
  /** p99 over peels of (return seen - dispatch sent), within this one job. */
  peelP99Ms: number;
  /** Until the job record left `running` (zester jobs only). */
  doneMs?: number;
  /** Until the master answered the dispatch request (zester jobs only). */
  replyMs?: number;
  firstMs: number;
  failed: number;
}

function p99(values: number[]): number {
  return stats(values).p99;
}

/** A payload the size of a signed command, so the baseline moves as many bytes. */
function commandSizedPayload(): Uint8Array {
  return encode({
    jid: "2Bm2zyb7uUPCNDUYCDHeYGb0fwz",
    fun: "test.ping",
    args: [],
    kwargs: {},
    test: false,
    peel: "bench-00000",
    ts: Date.now(),
    timeout_s: 120,
    master: "U".padEnd(56, "A"),
    sig: "s".repeat(86),
  });
}

async function busFanOut(nc: NatsConnection, ids: string[], timeoutMs: number): Promise<FanOutSample> {
  const inbox = `_INBOX.bench.${process.pid}.${Math.random().toString(36).slice(2)}`;
  const payload = commandSizedPayload();
  const arrivals: number[] = [];
  let t0 = 0;
  const done = new Promise<void>((res, rej) => {
    const timer = setTimeout(
      () => rej(new Error(`bus fan-out: ${arrivals.length}/${ids.length} replies in ${timeoutMs} ms`)),
      timeoutMs,
    );
    nc.subscribe(inbox, {
      max: ids.length,
      callback: () => {
        arrivals.push(performance.now() - t0);
        if (arrivals.length === ids.length) {
          clearTimeout(timer);
          res();
        }
      },
    });
  });
  await nc.flush();
  t0 = performance.now();
  for (const id of ids) nc.publish(subjects.cmd(id), payload, { reply: inbox });
  await done;
  return {
    allMs: Math.max(...arrivals),
    firstMs: Math.min(...arrivals),
    peelP99Ms: p99(arrivals),
    failed: 0,
  };
}

/** One job to '*', followed as `zester '*' <fun>` follows it. */
export async function zesterJob(
  nc: NatsConnection,
  store: JobStore,
  fun: string,
  n: number,
  timeoutS: number,
): Promise<FanOutSample> {
  const req: DispatchRequest = { target: "*", fun, args: [], kwargs: {}, test: false, timeout_s: timeoutS };
  const t0 = performance.now();
  const msg = await nc.request(subjects.dispatch, encode(req), { timeout: 30_000 });
  const replyMs = performance.now() - t0;
  const reply = decode<DispatchReply>(msg.data);
  if (reply.error !== undefined || reply.jid === undefined) throw new Error(`dispatch: ${reply.error}`);
  if (reply.peels?.length !== n) throw new Error(`dispatch resolved ${reply.peels?.length} peels, not ${n}`);
  const jid = reply.jid;
  const arrivals = new Map<string, number>();
  let failed = 0;
  let allMs = 0;
  let doneMs: number | undefined;
  const returnsWatch = await store.returns.watch({ key: `${jid}.*` });
  const jobWatch = await store.jobs.watch({ key: jid });
  try {
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(
        () =>
          rej(new Error(`${fun}: ${arrivals.size}/${n} returns, record finished: ${doneMs !== undefined}`)),
        (timeoutS + 30) * 1000,
      );
      // A job that ended with peels in timeout or unreachable is measured as it is: once the
      // record is final, only the returns it counts are still waited for.
      let expected = n;
      const check = () => {
        if (doneMs !== undefined && arrivals.size >= expected) {
          clearTimeout(timer);
          res();
        }
      };
      const follow = (it: AsyncIterable<KvWatchEntry>, fn: (e: KvWatchEntry) => void) =>
        void (async () => {
          for await (const e of it) if (e.operation === "PUT") fn(e);
        })().catch(rej);
      follow(returnsWatch, (e) => {
        const peel = e.key.slice(jid.length + 1);
        if (arrivals.has(peel)) return;
        const at = performance.now() - t0;
        arrivals.set(peel, at);
        allMs = Math.max(allMs, at);
        if (!decode<PeelReturn>(e.value).success) failed++;
        check();
      });
      follow(jobWatch, (e) => {
        const rec = decode<JobRecord>(e.value);
        if (rec.status === "running" || doneMs !== undefined) return;
        doneMs = performance.now() - t0;
        expected = Object.values(rec.peels).filter((st) => st === "success" || st === "failed").length;
        if (rec.status !== "complete") {
          const bad = Object.entries(rec.peels).filter(([, s]) => s !== "success");
          process.stderr.write(
            `bench: ${fun} job ${jid} ${rec.status}; e.g. ${JSON.stringify(bad.slice(0, 3))}\n`,
          );
        }
        check();
      });
    });
  } finally {
    returnsWatch.stop();
    jobWatch.stop();
  }
  const seen = [...arrivals.values()];
  return {
    allMs,
    firstMs: Math.min(...seen),
    peelP99Ms: p99(seen),
    doneMs: doneMs!,
    replyMs,
    failed: failed + (n - arrivals.size),
  };
}

/** Load-independent cost of one job (or one baseline round), averaged over the measured runs. */
interface JobWork {
  /** CPU ms per job, by process (`server`, `master`, `fleet`). */
  cpuMs: Record<string, number>;
  /** Messages the server took in from clients per job (its `/varz` `in_msgs`). */
  inMsgs: number;
  /** JetStream writes per job, by stream (KV buckets are `KV_<bucket>`). */
  writes: [string, number][];
}

/**
 * Runs the warm-up, then the measured runs between two snapshots of the counters; the
 * difference divided by the runs is what one job cost, whatever the machine's load.
 */
async function measureWork(
  runs: number,
  warmup: number,
  once: () => Promise<FanOutSample>,
  probe: { pids: Record<string, number>; monitorPort: number; js?: NatsConnection },
): Promise<{ samples: FanOutSample[]; work: JobWork }> {
  for (let i = 0; i < warmup; i++) await once();
  const snap = async () => ({
    cpu: await cpuOf(probe.pids),
    varz: await serverCounters(probe.monitorPort),
    seqs: probe.js ? await streamSeqs(probe.js).catch(() => ({})) : {},
  });
  const a = await snap();
  const samples: FanOutSample[] = [];
  for (let i = 0; i < runs; i++) samples.push(await once());
  const b = await snap();
  const cpu = cpuDelta(a.cpu, b.cpu);
  for (const k of Object.keys(cpu)) cpu[k] = cpu[k]! / runs;
  const inMsgs = a.varz && b.varz ? (b.varz.inMsgs - a.varz.inMsgs) / runs : Number.NaN;
  const writes = streamWrites(a.seqs, b.seqs).map(([s, d]) => [s, d / runs] as [string, number]);
  return { samples, work: { cpuMs: cpu, inMsgs, writes } };
}

export async function waitUntil<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * A built Zester tree whose master and fleet host a Zester phase runs: this checkout, or
 * another one named by ZESTER_BENCH_AGAINST (e.g. an older commit, built), measured in the same
 * run for a before/after.
 */
export interface Build {
  /** Empty for this checkout; otherwise what the rows say (`against 6f862a9`). */
  label: string;
  root: string;
}

export function buildsFromEnv(env: NodeJS.ProcessEnv = process.env): Build[] {
  const builds: Build[] = [{ label: "", root: repoRoot }];
  const raw = env.ZESTER_BENCH_AGAINST;
  if (raw === undefined || raw.trim() === "") return builds;
  for (const dir of raw.split(",").map((s) => resolve(s.trim()))) {
    if (
      !existsSync(join(dir, "dist", "bin", "zester-master.js")) ||
      !existsSync(join(dir, "dist", "bench"))
    ) {
      throw new Error(`ZESTER_BENCH_AGAINST: ${dir} has no built dist/ (run npm ci && npm run build there)`);
    }
    let name = basename(dir);
    try {
      name = execFileSync("git", ["-C", dir, "log", "-1", "--format=%h"], { encoding: "utf8" }).trim();
    } catch {
      // Not a git checkout: its directory name says which build it is.
    }
    builds.push({ label: `against ${name}`, root: dir });
  }
  return builds;
}

/** Peels per fleet-host process: a bigger fleet is split over several hosts (several cores). */
export const PEELS_PER_HOST = 5_000;

interface ZesterPhase {
  build: Build;
  ping: FanOutSample[];
  apply: FanOutSample[];
  pingWork?: JobWork;
  applyWork?: JobWork;
  mem: { server: Memory; hosts: Memory; master: Memory };
  startMs: number;
  syncMs: number;
  slow: number;
  /** JetStream consumers on the server once the fleet is up and idle, by stream. */
  consumers?: Record<string, number>;
  /** Set when the phase broke off: the rows measured before it are kept. */
  error?: string;
}

interface SizeResult {
  n: number;
  bus: FanOutSample[];
  busWork: JobWork;
  busMem: { server: Memory; hosts: Memory };
  busStartMs: number;
  slowBus: number;
  phases: ZesterPhase[];
  runs: number;
}

function slowConsumers(server: Child): number {
  return server.output().match(/slow consumer/gi)?.length ?? 0;
}

/** The last lines each process printed, for a failure message. */
function tails(children: Child[]): string {
  return children.map((c) => `--- ${c.name} (pid ${c.pid}):\n${c.output().slice(-2500)}`).join("\n");
}

export function maxPeelsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.ZESTER_BENCH_MAX_PEELS;
  if (raw === undefined || raw === "") return DEFAULT_MAX_PEELS;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`ZESTER_BENCH_MAX_PEELS must be a positive integer, not ${raw}`);
  return n;
}

/** With ZESTER_BENCH_CPU_PROF=<dir>, the master writes a V8 CPU profile there when it stops. */
function profArgs(what: string): string[] {
  const dir = process.env.ZESTER_BENCH_CPU_PROF;
  return dir
    ? ["--cpu-prof", `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${what}-${Date.now()}.cpuprofile`]
    : [];
}

function hostArgs(
  build: Build,
  mode: "bus" | "peels",
  auth: BenchAuth,
  work: string,
  first: number,
  count: number,
): string[] {
  // Thousands of connections and peels in one heap: give it room, not a default-sized heap.
  return [
    process.execPath,
    "--max-old-space-size=8192",
    join(build.root, "dist", "bench", "fleet-host.js"),
    "--mode",
    mode,
    "--url",
    auth.url,
    "--auth-dir",
    auth.dir,
    "--creds-dir",
    dirname(peelCredsPath(auth.dir, fleetPeelId(PREFIX, 0))),
    "--work",
    work,
    "--count",
    String(count),
    "--prefix",
    PREFIX,
    // Only hosts after the first need it, so an older build's host (without --first) still runs.
    ...(first > 0 ? ["--first", String(first)] : []),
  ];
}

/** Fleet hosts for peels 0..n-1, PEELS_PER_HOST each, started together. */
export function spawnHosts(
  children: Children,
  build: Build,
  mode: "bus" | "peels",
  auth: BenchAuth,
  work: string,
  n: number,
): Child[] {
  const hosts: Child[] = [];
  for (let first = 0; first < n; first += PEELS_PER_HOST) {
    const count = Math.min(PEELS_PER_HOST, n - first);
    const name = `fleet-host(${mode}${first > 0 ? ` from ${first}` : ""})`;
    hosts.push(children.spawn(name, hostArgs(build, mode, auth, work, first, count)));
  }
  return hosts;
}

/** Waits for every host's `ready`; the fleet's start time is the slowest host's. */
export async function hostsReady(hosts: Child[], ms: number): Promise<number> {
  const ready = await Promise.all(hosts.map((h) => h.event("ready", ms)));
  return Math.max(...ready.map((r) => Number(r.ms)));
}

/** Summed memory of the fleet hosts (peak = the sum of each one's peak). */
async function hostsMemory(hosts: Child[]): Promise<Memory> {
  const m = await Promise.all(hosts.map((h) => procMemory(h.pid)));
  return { rssKiB: m.reduce((a, x) => a + x.rssKiB, 0), hwmKiB: m.reduce((a, x) => a + x.hwmKiB, 0) };
}

function hostPids(hosts: Child[]): Record<string, number> {
  return Object.fromEntries(hosts.map((h, i) => [`fleet${i}`, h.pid]));
}

async function runSize(
  n: number,
  opts: ScenarioOptions,
  builds: Build[],
  auth: BenchAuth,
  work: string,
  children: Children,
): Promise<SizeResult> {
  const log = (m: string) => process.stderr.write(`bench: fan-out ${n}: ${m}\n`);
  const ids = Array.from({ length: n }, (_, i) => fleetPeelId(PREFIX, i));
  // Big fleets are slow per job; fewer runs keep a 5,000-peel pass within minutes.
  const runs = n >= 5_000 ? Math.min(opts.runs, 3) : opts.runs;
  const warmup = n >= 5_000 ? Math.min(opts.warmup, 1) : opts.warmup;
  const startTimeout = 120_000 + n * 200;
  const monitorPort = await freePort();

  log("issuing peel creds");
  await ensurePeelCreds(auth.dir, n);

  // Baseline: bare connections on a fresh server.
  log("baseline: bare connections");
  const server = await startServer(children, auth, { monitorPort });
  const busHosts = spawnHosts(children, builds[0]!, "bus", auth, work, n);
  const busStartMs = await hostsReady(busHosts, startTimeout);
  const bnc = await connect({
    servers: auth.url,
    credsFile: join(auth.dir, AUTH_FILES.masterCreds),
    caFile: auth.caFile,
  });
  let bus: { samples: FanOutSample[]; work: JobWork };
  try {
    bus = await measureWork(runs, warmup, () => busFanOut(bnc, ids, 60_000), {
      pids: { server: server.pid, ...hostPids(busHosts) },
      monitorPort,
    });
  } finally {
    await bnc.close();
  }
  const busMem = { hosts: await hostsMemory(busHosts), server: await procMemory(server.pid) };
  const slowBus = slowConsumers(server);
  await Promise.all(busHosts.map((h) => h.stop(30_000, "stdin")));
  await server.stop();

  const phases: ZesterPhase[] = [];
  for (const build of builds) {
    phases.push(
      await zesterPhase(n, build, { runs, warmup, startTimeout, monitorPort }, auth, work, children),
    );
  }
  return { n, bus: bus.samples, busWork: bus.work, busMem, busStartMs, slowBus, phases, runs };
}

/** Master and peels of one build on a fresh server: test.ping, then state.apply, to `*`. */
async function zesterPhase(
  n: number,
  build: Build,
  o: { runs: number; warmup: number; startTimeout: number; monitorPort: number },
  auth: BenchAuth,
  work: string,
  children: Children,
): Promise<ZesterPhase> {
  const log = (m: string) =>
    process.stderr.write(`bench: fan-out ${n}${build.label ? ` ${build.label}` : ""}: ${m}\n`);
  const jobTimeoutS = 60 + Math.ceil(n / 20);
  log("zester: master and peels");
  await rm(join(work, "peels"), { recursive: true, force: true });
  const server = await startServer(children, auth, { monitorPort: o.monitorPort });
  const statesDir = join(work, "states");
  const master = children.spawn("zester-master", [
    process.execPath,
    ...profArgs(`master-${n}${build.label ? `-${build.label.replace(/\W+/g, "-")}` : ""}`),
    join(build.root, "dist", "bin", "zester-master.js"),
    "--id",
    "bench-master",
    "--nats-url",
    auth.url,
    "--auth-dir",
    auth.dir,
    "--states-dir",
    statesDir,
  ]);
  await master.waitFor(/running \(signing key/, 30_000);
  const hosts = spawnHosts(children, build, "peels", auth, work, n);
  const startMs = await hostsReady(hosts, o.startTimeout);
  log(`${n} peels connected in ${fmtMs(startMs)}`);
  const admin = await connect({
    servers: auth.url,
    credsFile: join(auth.dir, AUTH_FILES.adminCreds),
    caFile: auth.caFile,
  });
  const probe = {
    pids: { server: server.pid, master: master.pid, ...hostPids(hosts) },
    monitorPort: o.monitorPort,
    js: admin,
  };
  const phase: ZesterPhase = {
    build,
    ping: [],
    apply: [],
    mem: {
      server: { rssKiB: Number.NaN, hwmKiB: Number.NaN },
      hosts: { rssKiB: 0, hwmKiB: 0 },
      master: { rssKiB: 0, hwmKiB: 0 },
    },
    startMs,
    syncMs: Number.NaN,
    slow: 0,
  };
  try {
    const store = await JobStore.open(admin);
    await waitUntil(`the master to know all ${n} peels`, o.startTimeout, async () => {
      const m = await admin.request(subjects.targetResolve, encode({ target: "*" }), { timeout: 10_000 });
      return (decode<{ peels?: string[] }>(m.data).peels?.length ?? 0) === n ? true : undefined;
    });
    for (const h of hosts) h.send("states");
    const synced = await Promise.all(hosts.map((h) => h.event("states", o.startTimeout)));
    phase.syncMs = Math.max(...synced.map((s) => Number(s.ms)));
    log(`state tree rev ${String(synced[0]!.rev)} on every peel`);
    phase.consumers = await consumerCounts(admin).catch(() => undefined);
    log("test.ping");
    const ping = await measureWork(
      o.runs,
      o.warmup,
      () => zesterJob(admin, store, "test.ping", n, jobTimeoutS),
      probe,
    );
    phase.ping = ping.samples;
    phase.pingWork = ping.work;
    log(`state.apply (server slow-consumer warnings so far: ${slowConsumers(server)})`);
    const apply = await measureWork(
      o.runs,
      o.warmup,
      () => zesterJob(admin, store, "state.apply", n, jobTimeoutS),
      probe,
    );
    phase.apply = apply.samples;
    phase.applyWork = apply.work;
  } catch (err) {
    // A size that breaks is a result too: keep the baseline and say what happened.
    phase.error = errText(err).split("\n")[0];
    process.stderr.write(
      `bench: fan-out ${n} failed: ${phase.error}; process output:\n${tails([server, master, ...hosts])}\n`,
    );
  }
  try {
    phase.mem = {
      server: await procMemory(server.pid),
      hosts: await hostsMemory(hosts),
      master: await procMemory(master.pid),
    };
    phase.slow = slowConsumers(server);
    return phase;
  } finally {
    await admin.close().catch(() => {});
    await Promise.all(hosts.map((h) => h.stop(60_000, "stdin")));
    // SIGTERM: the master stops cleanly, so a --cpu-prof profile gets written.
    await master.stop();
    await server.stop();
  }
}

function fmtCpu(w: JobWork | undefined, who: "server" | "master" | "fleet"): string {
  if (!w) return "-";
  const ms =
    who === "fleet"
      ? Object.entries(w.cpuMs)
          .filter(([k]) => k.startsWith("fleet"))
          .reduce((a, [, v]) => a + v, 0)
      : w.cpuMs[who];
  return ms === undefined || !Number.isFinite(ms) ? "-" : fmtMs(ms);
}

function fmtWrites(w: JobWork | undefined): string {
  if (!w) return "-";
  if (w.writes.length === 0) return "0";
  const total = w.writes.reduce((a, [, d]) => a + d, 0);
  const parts = w.writes.map(([s, d]) => `${s.replace(/^KV_/, "")} ${Number(d.toFixed(1))}`);
  return `${Number(total.toFixed(1))} (${parts.join(", ")})`;
}

function fmtConsumers(c: Record<string, number> | undefined, n: number): string {
  if (!c) return "-";
  const all = Object.entries(c).sort((a, b) => b[1] - a[1]);
  const total = all.reduce((a, [, v]) => a + v, 0);
  return `${total} (${(total / n).toFixed(1)} per peel: ${all.map(([k, v]) => `${k.replace(/^KV_/, "")} ${v}`).join(", ")})`;
}

function render(results: SizeResult[]): string {
  const rows: (string | number)[][] = [];
  const workRows: (string | number)[][] = [];
  for (const r of results) {
    const base = stats(r.bus.map((s) => s.allMs));
    const line = (label: string, samples: FanOutSample[], error?: string) => {
      if (samples.length === 0) {
        rows.push([
          r.n.toLocaleString("en"),
          label,
          "-",
          "-",
          `not measured: ${(error ?? "?").replace(/\|/g, "\\|")}`,
          "-",
          "-",
          "-",
          "-",
          "-",
          0,
        ]);
        return;
      }
      const all = stats(samples.map((s) => s.allMs));
      const done = samples.every((s) => s.doneMs !== undefined)
        ? fmtMs(stats(samples.map((s) => s.doneMs!)).median)
        : "-";
      const failed = samples.reduce((a, s) => a + s.failed, 0);
      const reply = samples.every((s) => s.replyMs !== undefined)
        ? fmtMs(stats(samples.map((s) => s.replyMs!)).median)
        : "-";
      rows.push([
        r.n.toLocaleString("en"),
        label,
        reply,
        fmtMs(stats(samples.map((s) => s.firstMs)).median),
        fmtMs(all.median),
        fmtMs(all.p99),
        (all.median / base.median).toFixed(1),
        fmtMs(stats(samples.map((s) => s.peelP99Ms)).median),
        done,
        failed,
        r.runs,
      ]);
    };
    const workLine = (label: string, w: JobWork | undefined) => {
      workRows.push([
        r.n.toLocaleString("en"),
        label,
        fmtCpu(w, "server"),
        fmtCpu(w, "master"),
        fmtCpu(w, "fleet"),
        w && Number.isFinite(w.inMsgs) ? Math.round(w.inMsgs).toLocaleString("en") : "-",
        w && Number.isFinite(w.inMsgs) ? (w.inMsgs / r.n).toFixed(1) : "-",
        fmtWrites(w),
      ]);
    };
    line("baseline: bare request/reply", r.bus);
    workLine("baseline: bare request/reply", r.busWork);
    for (const ph of r.phases) {
      const tag = ph.build.label ? ` (${ph.build.label})` : "";
      line(`\`test.ping\`${tag}`, ph.ping, ph.error);
      line(`\`state.apply\` (one \`test.nop\`)${tag}`, ph.apply, ph.error);
      workLine(`\`test.ping\`${tag}`, ph.pingWork);
      workLine(`\`state.apply\`${tag}`, ph.applyWork);
    }
  }
  const memRows = results.flatMap((r) =>
    r.phases.map((ph) => [
      r.n.toLocaleString("en") + (ph.build.label ? ` (${ph.build.label})` : ""),
      `${fmtMiB(r.busMem.server.rssKiB)} / ${fmtMiB(ph.mem.server.rssKiB)}`,
      `${fmtMiB(r.busMem.hosts.hwmKiB)} / ${fmtMiB(ph.mem.hosts.hwmKiB)}`,
      `${((ph.mem.hosts.hwmKiB - r.busMem.hosts.hwmKiB) / r.n).toFixed(0)} KiB`,
      `${fmtMiB(ph.mem.master.rssKiB)} (peak ${fmtMiB(ph.mem.master.hwmKiB)})`,
      `${fmtMs(r.busStartMs)} / ${fmtMs(ph.startMs)}`,
      fmtMs(ph.syncMs),
      `${r.slowBus} / ${ph.slow}`,
      fmtConsumers(ph.consumers, r.n),
    ]),
  );
  const hostsNote = results.some((r) => r.n > PEELS_PER_HOST)
    ? ` Fleets above ${PEELS_PER_HOST.toLocaleString("en")} peels are split over several fleet-host processes ` +
      `(${PEELS_PER_HOST.toLocaleString("en")} each); their memory is summed.`
    : "";
  return [
    table(
      [
        "peels",
        "job to `*`",
        "dispatch reply",
        "first return",
        "all returns: median",
        "p99 (over runs)",
        "× baseline",
        "per-peel return p99 (median over runs)",
        "job record finished",
        "failed or missing returns",
        "runs",
      ],
      rows,
    ),
    "",
    "Times run from the dispatch request to the moment the last return is seen through the " +
      "`job-returns` watch, as `zester '*' …` sees it; `job record finished` is when the master " +
      "closes the record. The baseline is the same N connections (same peel creds and TLS) " +
      "answering N addressed requests on their command subjects, on a fresh server, in this run.",
    "",
    table(
      [
        "peels",
        "per job",
        "nats-server CPU",
        "master CPU",
        "fleet CPU",
        "messages into the server",
        "per peel",
        "JetStream writes (by stream)",
      ],
      workRows,
    ),
    "",
    "What one job costs, averaged over the measured runs and independent of the machine's load: " +
      "CPU time (user + system, /proc/<pid>/stat) of nats-server, the master and the fleet host(s); " +
      "messages the server took in from its clients (`/varz` `in_msgs`, JetStream API calls and acks " +
      "included); and messages stored per stream (KV buckets are streams `KV_<bucket>`).",
    "",
    table(
      [
        "peels",
        "nats-server RSS (baseline / zester)",
        "fleet host peak RSS (bare conns / peels)",
        "extra per peel",
        "master RSS",
        "fleet start (bare / peels)",
        "state tree sync",
        "server slow-consumer warnings (bare / zester)",
        "JetStream consumers (by stream)",
      ],
      memRows,
    ),
    "",
    "Memory from /proc/<pid>/status after the jobs. `extra per peel` is what a Peel costs on top " +
      "of its bare TLS connection in the same process. One fleet host process carries every peel, " +
      `so its figures are not a real per-node footprint (see the footprint scenario).${hostsNote}`,
  ].join("\n");
}

/** ZESTER_BENCH_PEELS (comma list) picks exact sizes; otherwise the default sizes up to the cap. */
export function fleetSizesFromEnv(env: NodeJS.ProcessEnv = process.env): number[] {
  const max = maxPeelsFromEnv(env);
  const raw = env.ZESTER_BENCH_PEELS;
  if (raw !== undefined && raw.trim() !== "") {
    const picked = raw.split(",").map((s) => Number(s.trim()));
    if (picked.some((n) => !Number.isInteger(n) || n < 1)) {
      throw new Error(`ZESTER_BENCH_PEELS must be a comma list of positive integers, not ${raw}`);
    }
    return picked;
  }
  const sizes = SIZES.filter((n) => n <= max);
  return sizes.length > 0 ? sizes : [max];
}

export async function fanOut(opts: ScenarioOptions): Promise<ScenarioResult> {
  const sizes = fleetSizesFromEnv();
  const work = await mkdtemp(join(tmpdir(), "zester-bench-fanout-"));
  const children = new Children();
  try {
    const auth = await benchAuth(join(work, "auth"));
    const statesDir = join(work, "states");
    await mkdir(statesDir, { recursive: true });
    await writeFile(join(statesDir, "top.zy"), "base:\n  '*':\n    - bench\n");
    await writeFile(join(statesDir, "bench.zy"), "bench-nop:\n  test.nop: []\n");
    const results: SizeResult[] = [];
    const builds = buildsFromEnv();
    for (const n of sizes) results.push(await runSize(n, opts, builds, auth, work, children));
    const skipped = SIZES.filter((n) => n > Math.max(...sizes));
    const note =
      skipped.length > 0
        ? `\n\nNot run: ${skipped.map((n) => n.toLocaleString("en")).join(", ")} peels ` +
          `(raise ZESTER_BENCH_MAX_PEELS to include them).`
        : "";
    return {
      title: `Job fan-out to ${sizes.map((n) => n.toLocaleString("en")).join(" / ")} peels`,
      markdown: render(results) + note,
    };
  } finally {
    await children.stopAll();
    await rm(work, { recursive: true, force: true });
  }
}
