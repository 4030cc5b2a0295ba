/**
 * reactor: events through the reactor on a real nats-server with two in-process masters and one
 * real peel. Three figures:
 *
 * 1. Latency from an operator event to its reaction job being recorded (the master's
 *    `_master/job/<jid>/new`), p50 / p99 over sequential events. Baseline: the same event's
 *    trip from publish to a plain subscriber on the bus.
 * 2. Sustained events per second through the reactor with two masters sharing the consumer,
 *    each event dispatching one job. Baseline: the same number of events that match no rule
 *    (the reactor takes, parses and acks them and does nothing else).
 * 3. 1,000 events sent while both masters are restarted one after the other: the number of
 *    reaction jobs and of reaction records must be exactly 1,000.
 *
 * The per-source rate limit and the breaker are raised for this run: they exist to stop storms,
 * and this is one on purpose.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { AUTH_FILES } from "../../src/auth/auth-dir.js";
import { connect } from "../../src/bus/connect.js";
import { parseEvent } from "../../src/events/event.js";
import { publishEvent } from "../../src/events/publish.js";
import { JobStore } from "../../src/jobs/store.js";
import { Master } from "../../src/master/master.js";
import { Peel } from "../../src/peel/peel.js";
import type { ReactionRecord } from "../../src/reactor/reactor.js";
import { fmtMs, type ScenarioOptions, type ScenarioResult, stats, table } from "../lib.js";
import { benchAuth, Children, startServer } from "./fan-out.js";

const STORM = { ratePerSecond: 1e9, rateBurst: 1e9, breakerMaxFires: 1e9 };

export async function reactorBench(opts: ScenarioOptions): Promise<ScenarioResult> {
  const work = await mkdtemp(join(tmpdir(), "zester-bench-reactor-"));
  const children = new Children();
  const masters: Master[] = [];
  let peel: Peel | undefined;
  const conns: NatsConnection[] = [];
  try {
    const auth = await benchAuth(join(work, "auth"));
    await startServer(children, auth);
    const reactorDir = join(work, "reactor");
    await mkdir(reactorDir, { recursive: true });
    await writeFile(join(reactorDir, "top.zy"), "- '_admin/bench/react/*': [ping]\n");
    await writeFile(
      join(reactorDir, "ping.zy"),
      "ping:\n  dispatch.module: {target: web-01, function: test.ping}\n",
    );
    const startMaster = async (id: string) => {
      const m = new Master({
        id,
        servers: auth.url,
        credsFile: join(auth.dir, AUTH_FILES.masterCreds),
        caFile: auth.caFile,
        authDir: auth.dir,
        statesDir: join(work, "no-states"),
        settingsDir: join(work, "no-settings"),
        reactorDir,
        reactor: STORM,
        log: () => {},
      });
      await m.start();
      return m;
    };
    masters.push(await startMaster("bench-a"));
    const { issuePeelCredsFile } = await import("../../src/auth/auth-dir.js");
    peel = new Peel({
      id: "web-01",
      servers: auth.url,
      credsFile: await issuePeelCredsFile(auth.dir, "web-01"),
      caFile: auth.caFile,
      cacheDir: join(work, "web-01"),
      customFactsDir: join(work, "no-facts"),
      trustedMasters: new Set([masters[0]!.publicKey]),
      logger: { info: () => {}, warn: () => {}, error: () => {} },
    });
    await peel.start();
    await peel.waitConnected();
    await until(
      "the master to see web-01",
      20_000,
      async () => masters[0]!.fleet.resolve("web-01").length === 1,
    );
    const admin = await connect({
      servers: auth.url,
      credsFile: join(auth.dir, AUTH_FILES.adminCreds),
      caFile: auth.caFile,
    });
    conns.push(admin);

    // 1. latency: event → reaction job recorded, one event at a time.
    const samples = Math.max(20, opts.runs * 10);
    const jobNew = new Map<string, () => void>();
    const sub = admin.subscribe("zester.event._master.job.*.new", {
      callback: (_e, m) => {
        const ev = parseEvent(m.subject, m.data);
        jobNew.get(String(ev.data.user))?.();
      },
    });
    const echo = new Map<string, () => void>();
    const echoSub = admin.subscribe("zester.event._admin.send.bench.echo.>", {
      callback: (_e, m) => echo.get(m.subject)?.(),
    });
    await admin.flush();
    const react: number[] = [];
    const bus: number[] = [];
    for (let i = 0; i < samples + opts.warmup; i++) {
      const tag = `bench/react/${i}`;
      const done = new Promise<void>((r) => jobNew.set(`reactor:_admin/${tag}`, r));
      const t0 = performance.now();
      await publishEvent(admin, { origin: "_admin", tag });
      await done;
      const reactMs = performance.now() - t0;
      const subject = `zester.event._admin.send.bench.echo.${i}`;
      const seen = new Promise<void>((r) => echo.set(subject, r));
      const t1 = performance.now();
      await publishEvent(admin, { origin: "_admin", tag: `bench/echo/${i}` });
      await seen;
      const busMs = performance.now() - t1;
      if (i >= opts.warmup) {
        react.push(reactMs);
        bus.push(busMs);
      }
    }
    sub.unsubscribe();
    echoSub.unsubscribe();
    const rs = stats(react);
    const bs = stats(bus);

    // 2. throughput with two masters.
    masters.push(await startMaster("bench-b"));
    await until(
      "bench-b to see web-01",
      20_000,
      async () => masters[1]!.fleet.resolve("web-01").length === 1,
    );
    const N = 1000;
    const store = await JobStore.open(admin);
    const drained = async () => {
      const { jetstreamManager } = await import("@nats-io/jetstream");
      const ci = await (await jetstreamManager(admin)).consumers.info("events", "zester-reactor");
      return ci.num_pending === 0 && ci.num_ack_pending === 0;
    };
    const burst = async (prefix: string) => {
      const t0 = performance.now();
      for (let i = 0; i < N; i += 100) {
        await Promise.all(
          Array.from({ length: Math.min(100, N - i) }, (_, k) =>
            publishEvent(admin, { origin: "_admin", tag: `${prefix}/${i + k}` }),
          ),
        );
      }
      await until("the reactor to drain", 300_000, drained);
      return performance.now() - t0;
    };
    const baseMs = await burst("bench/none");
    const jobsBefore = sumJobs(masters);
    const reactMsTotal = await burst("bench/react/tp");
    const jobsMade = sumJobs(masters) - jobsBefore;

    // 3. 1,000 events across two master restarts.
    const ids: string[] = [];
    const sender = (async () => {
      for (let i = 0; i < N; i++) {
        ids.push((await publishEvent(admin, { origin: "_admin", tag: `bench/react/restart/${i}` })).event.id);
        if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
      }
    })();
    for (const idx of [0, 1]) {
      await until("a third of the events", 120_000, async () => ids.length >= ((idx + 1) * N) / 3);
      const old = masters[idx]!;
      await old.stop();
      masters[idx] = await startMaster(old.id);
    }
    await sender;
    await until("the reactor to drain", 300_000, drained);
    const { reactionId } = await import("../../src/reactor/ids.js");
    const jids = ids.map((id) => reactionId(id, "_admin/bench/react/*", "ping.zy", "ping"));
    let jobs = 0;
    for (let i = 0; i < jids.length; i += 100) {
      jobs += (await Promise.all(jids.slice(i, i + 100).map((j) => store.get(j)))).filter(Boolean).length;
    }
    const records = await countRecords(admin, new Set(ids));

    const rows = [
      [
        "event → reaction job recorded",
        fmtMs(rs.median),
        fmtMs(rs.p99),
        fmtMs(bs.median),
        fmtMs(bs.p99),
        `${(rs.median / bs.median).toFixed(1)}×`,
      ],
    ];
    const tp = [
      [
        `${N} events, 2 masters`,
        `${Math.round((N / reactMsTotal) * 1000)}/s (${jobsMade} jobs)`,
        `${Math.round((N / baseMs) * 1000)}/s`,
        `${(reactMsTotal / baseMs).toFixed(1)}×`,
      ],
    ];
    const restart = [
      [
        `${N} events, both masters restarted while they arrive`,
        String(jobs),
        String(records.total),
        String(records.distinct),
      ],
    ];
    return {
      title: "reactor: event → dispatch latency, throughput with two masters, restarts",
      markdown: [
        table(["path", "p50", "p99", "bus p50 (baseline)", "bus p99", "× p50"], rows),
        "",
        `${samples} sequential operator events; baseline: the same kind of event from publish to a plain subscriber.`,
        "",
        table(["workload", "reacting (1 job each)", "no rule matches (baseline)", "×"], tp),
        "",
        table(["workload", "reaction jobs", "reaction records", "distinct events reacted to"], restart),
        "",
        "All three columns of the last table must read 1000: one job and one record per event, none lost, none twice.",
      ].join("\n"),
    };
  } finally {
    for (const m of masters) await m.stop().catch(() => {});
    await peel?.stop().catch(() => {});
    for (const c of conns) await c.close().catch(() => {});
    await children.stopAll();
    await rm(work, { recursive: true, force: true });
  }
}

function sumJobs(masters: Master[]): number {
  return masters.reduce((n, m) => n + (m.reactor?.stats().jobs ?? 0), 0);
}

async function countRecords(
  nc: NatsConnection,
  ids: Set<string>,
): Promise<{ total: number; distinct: number }> {
  const { watchEvents } = await import("../../src/events/watch.js");
  let total = 0;
  const seen = new Set<string>();
  await watchEvents(nc, {
    since: { kind: "all" },
    subject: "zester.event._master.reactor.reaction",
    catchUpOnly: true,
    onEvent: (w) => {
      const r = w.event.data as unknown as ReactionRecord;
      if (ids.has(r.event_id)) {
        total++;
        seen.add(r.event_id);
      }
      return undefined;
    },
  });
  return { total, distinct: seen.size };
}

async function until(what: string, ms: number, fn: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`bench reactor: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
