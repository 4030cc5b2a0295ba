/**
 * A simulated fleet in one process, driven by the fan-out benchmark over stdin/stdout.
 *
 *   node dist/bench/fleet-host.js --mode peels|bus --url tls://... --auth-dir DIR --creds-dir DIR
 *     --work DIR --count N [--first I]
 *
 * Peels are `<prefix>-<index>` for indexes I..I+N-1 (`--first`, default 0).
 * `peels`: N real `Peel`s, each with its own TLS connection and its own least-privilege creds
 * (`<creds-dir>/<id>.creds`, issued beforehand by the benchmark).
 * `bus`: the baseline, N bare connections with the same creds, each answering requests on its
 * peel's command subject; no JetStream, no signing, no Zester code on the path.
 *
 * Output is one JSON object per line on stdout (`{"event": ...}`); commands arrive one per line
 * on stdin: `states` (wait until every peel holds the same state revision) and `stop`. Closing
 * stdin also stops the host, so a benchmark that dies never leaves a fleet behind.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import type { NatsConnection } from "@nats-io/transport-node";
import { connect } from "../src/bus/connect.js";
import { peelInboxPrefix, subjects } from "../src/bus/names.js";
import type { Peel } from "../src/peel/peel.js";

export type HostMode = "peels" | "bus";

export interface HostArgs {
  mode: HostMode;
  url: string;
  authDir: string;
  credsDir: string;
  work: string;
  count: number;
  prefix: string;
  /** Index of this host's first peel (a big fleet is split over several hosts). */
  first: number;
  /** Peels (or connections) being started at the same time. */
  concurrency: number;
}

export function fleetPeelId(prefix: string, i: number): string {
  return `${prefix}-${String(i).padStart(5, "0")}`;
}

function parseArgs(argv: string[]): HostArgs {
  const a: Partial<HostArgs> = { prefix: "bench", concurrency: 32, first: 0 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const v = argv[++i];
    if (v === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--mode") {
      if (v !== "peels" && v !== "bus") throw new Error("--mode must be peels or bus");
      a.mode = v;
    } else if (flag === "--url") a.url = v;
    else if (flag === "--auth-dir") a.authDir = v;
    else if (flag === "--creds-dir") a.credsDir = v;
    else if (flag === "--work") a.work = v;
    else if (flag === "--count") a.count = Number(v);
    else if (flag === "--prefix") a.prefix = v;
    else if (flag === "--first") a.first = Number(v);
    else if (flag === "--concurrency") a.concurrency = Number(v);
    else throw new Error(`unknown option ${flag}`);
  }
  if (
    !a.mode ||
    !a.url ||
    !a.authDir ||
    !a.credsDir ||
    !a.work ||
    !Number.isInteger(a.count) ||
    a.count! < 1 ||
    !Number.isInteger(a.first) ||
    a.first! < 0
  ) {
    throw new Error(
      "usage: fleet-host --mode peels|bus --url URL --auth-dir DIR --creds-dir DIR --work DIR --count N",
    );
  }
  return a as HostArgs;
}

function emit(event: string, data: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
}

/** Runs `fn` over 0..n-1 with at most `limit` calls in flight. */
async function pool(n: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
}

interface Fleet {
  /** Resolves with the state revision every member holds (peels mode only). */
  states(): Promise<number | undefined>;
  stop(): Promise<void>;
}

/**
 * Connects, retrying an attempt that failed or never settled. Seen at 10,000 connections on a
 * loaded 2-core box: the server cut 40 TLS handshakes off at its handshake timeout and those
 * clients' connect() never settled, so the host waited for them forever.
 */
async function connectRetrying(opts: Parameters<typeof connect>[0], id: string): Promise<NatsConnection> {
  const ATTEMPT_MS = 90_000;
  for (let attempt = 1; ; attempt++) {
    let timer: NodeJS.Timeout | undefined;
    const pending = connect(opts);
    try {
      return await Promise.race([
        pending,
        new Promise<never>((_, rej) => {
          timer = setTimeout(() => rej(new Error(`no answer in ${ATTEMPT_MS} ms`)), ATTEMPT_MS);
        }),
      ]);
    } catch (err) {
      // A late success of the abandoned attempt must not leave a second connection open.
      void pending.then((nc) => nc.close()).catch(() => {});
      if (attempt >= 5) throw err;
      process.stderr.write(
        `fleet-host: ${id}: connect attempt ${attempt} failed (${(err as Error).message}); retrying\n`,
      );
      await new Promise((res) => setTimeout(res, 1_000));
    } finally {
      clearTimeout(timer);
    }
  }
}

async function startBus(a: HostArgs): Promise<Fleet> {
  const conns: NatsConnection[] = new Array(a.count);
  const caFile = join(a.authDir, "nats-ca.crt");
  const answer = new TextEncoder().encode(JSON.stringify({ v: 1, ok: true }));
  await pool(a.count, a.concurrency, async (i) => {
    const id = fleetPeelId(a.prefix, a.first + i);
    const nc = await connectRetrying(
      {
        servers: a.url,
        credsFile: join(a.credsDir, `${id}.creds`),
        caFile,
        inboxPrefix: peelInboxPrefix(id),
        name: `bench-bus ${id}`,
        timeoutMs: 60_000,
      },
      id,
    );
    nc.subscribe(subjects.cmd(id), { callback: (err, msg) => void (err || msg.respond(answer)) });
    await nc.flush();
    conns[i] = nc;
  });
  return {
    states: async () => undefined,
    stop: async () => {
      await Promise.allSettled(conns.map((nc) => nc?.close()));
    },
  };
}

async function startPeels(a: HostArgs): Promise<Fleet> {
  // Loaded here, not at the top: in `bus` mode the process must hold nothing but a NATS client.
  const { Peel } = await import("../src/peel/peel.js");
  const { loadTrustedMasters } = await import("../src/auth/auth-dir.js");
  const trusted = await loadTrustedMasters(a.authDir);
  const caFile = join(a.authDir, "nats-ca.crt");
  const factsDir = join(a.work, "empty-facts");
  await mkdir(factsDir, { recursive: true });
  const problems = { warn: 0, error: 0 };
  const shown = new Set<string>();
  // Peel logs are counted, and the first few distinct ones shown, so a broken run is visible
  // without 5,000 peels flooding the terminal.
  const note = (level: "warn" | "error", id: string, msg: string) => {
    problems[level]++;
    const key = msg.replace(/\b[0-9A-Za-z]{27}\b/g, "<jid>");
    if (shown.size < 5 && !shown.has(key)) {
      shown.add(key);
      process.stderr.write(`fleet-host: ${level} from peel ${id}: ${msg}\n`);
    }
  };
  const peels: Peel[] = new Array(a.count);
  await pool(a.count, a.concurrency, async (i) => {
    const id = fleetPeelId(a.prefix, a.first + i);
    const p = new Peel({
      id,
      servers: a.url,
      credsFile: join(a.credsDir, `${id}.creds`),
      caFile,
      cacheDir: join(a.work, "peels", id),
      customFactsDir: factsDir,
      trustedMasters: trusted,
      masterCurvePub: [],
      // Every simulated peel reads the same /proc files: re-collecting facts each minute would
      // only measure this machine thousands of times over. Heartbeats keep their real cadence.
      factsIntervalMs: 3_600_000,
      connectRetryMs: 1_000,
      // One process verifies, one after another, the signatures a real fleet checks in
      // parallel; the last peel of a big fleet would otherwise see its command as stale.
      maxSkewMs: 600_000,
      logger: {
        info: () => {},
        warn: (m) => note("warn", id, m),
        error: (m) => note("error", id, m),
      },
    });
    peels[i] = p;
    await p.start();
    await p.waitConnected(120_000);
  });
  return {
    async states() {
      for (;;) {
        const revs = await Promise.all(peels.map((p) => p.states.currentRev()));
        const first = revs[0];
        if (first !== undefined && revs.every((r) => r === first)) return first;
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async stop() {
      await pool(peels.length, 64, async (i) => {
        await peels[i]?.stop().catch(() => {});
      });
      if (problems.warn + problems.error > 0) {
        process.stderr.write(`fleet-host: ${problems.warn} warnings, ${problems.error} errors from peels\n`);
      }
    },
  };
}

async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv);
  const t0 = performance.now();
  const fleet = a.mode === "bus" ? await startBus(a) : await startPeels(a);
  emit("ready", { mode: a.mode, count: a.count, ms: performance.now() - t0 });

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= fleet.stop().then(() => emit("stopped"));
    return stopping;
  };
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    const cmd = line.trim();
    if (cmd === "states") {
      const t = performance.now();
      const rev = await fleet.states();
      emit("states", { rev, ms: performance.now() - t });
    } else if (cmd === "stop") {
      break;
    } else if (cmd !== "") {
      emit("error", { message: `unknown command ${JSON.stringify(cmd)}` });
    }
  }
  await stop();
  return 0;
}

// The benchmark imports fleetPeelId from here; only running the file starts a fleet.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    process.exitCode = await main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`fleet-host: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  }
}
