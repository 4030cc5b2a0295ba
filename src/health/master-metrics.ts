/**
 * A master's metrics and readiness, observed from the outside: the jobs this master owns (their
 * record in `jobs` names it), their returns, the fleet view, the published tree revisions, its
 * reactor's reactions and drops and its own NATS connection. Counters start at zero when the master starts; sum them over masters for
 * fleet totals.
 */
import type { KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import { openKv } from "../bus/bootstrap.js";
import { decode } from "../bus/codec.js";
import { parseRevision, REVISION_KEY } from "../bus/file-tree.js";
import type { JobRecord, PeelReturn } from "../jobs/wire.js";
import type { Master } from "../master/master.js";
import { Metrics } from "./metrics.js";
import type { Readiness } from "./server.js";

export interface MasterHealth {
  metrics: Metrics;
  ready(): Readiness;
  stop(): void;
}

/** Jobs remembered to match returns and count each job once; older ones are forgotten first. */
const TRACKED_JOBS = 10_000;

export async function masterHealth(master: Master): Promise<MasterHealth> {
  const nc = master.connection;
  const m = new Metrics();
  const created = m.counter("zester_master_jobs_created_total", "Jobs this master dispatched");
  const finished = m.counter("zester_master_jobs_total", "Jobs this master finished, by final status");
  const durations = m.histogram(
    "zester_master_job_duration_seconds",
    "Dispatch to finish of this master's jobs",
  );
  const returns = m.counter(
    "zester_master_returns_total",
    "Peel returns stored for this master's jobs, by result",
  );
  const peelOutcomes = m.counter(
    "zester_master_job_peels_total",
    "Targeted peels of finished jobs by their status (unreachable, timeout, success, ...)",
  );
  const reconnects = m.counter(
    "zester_master_bus_reconnects_total",
    "Reconnections to NATS after a lost connection",
  );
  m.gaugeFn("zester_master_peels", "Known peels (with facts), by online state", () => {
    let online = 0;
    const all = master.fleet.peels();
    for (const p of all) if (master.fleet.isOnline(p)) online++;
    return [
      [{ state: "online" }, online],
      [{ state: "offline" }, all.length - online],
    ];
  });
  m.gaugeFn("zester_master_jobs_running", "Jobs this master is following", () => master.trackedJobs.length);
  m.gaugeFn("zester_master_state_publisher", "1 while this master holds the state-publisher lease", () =>
    master.isStatePublisher ? 1 : 0,
  );
  // The reactor keeps its own counts (src/reactor/reactor.ts stats()); they are read at scrape
  // time so the reactor knows nothing of metrics. A master without a reactor reports none.
  const reactor = master.reactor;
  if (reactor) {
    m.counterFn(
      "zester_master_reactor_events_total",
      "Events the reactor on this master handled",
      () => reactor.stats().handled,
    );
    m.counterFn("zester_master_reactions_total", "Reactions run on this master, by outcome", () =>
      Object.entries(reactor.stats().outcomes).map(([outcome, n]) => [{ outcome }, n] as const),
    );
    m.counterFn(
      "zester_master_reactor_drops_total",
      "Events or reactions the reactor dropped, by reason (depth, rate, throttle, breaker, age, ...)",
      () => Object.entries(reactor.stats().drops).map(([reason, n]) => [{ reason }, n] as const),
    );
    m.counterFn(
      "zester_master_reactor_jobs_total",
      "Jobs the reactor on this master dispatched",
      () => reactor.stats().jobs,
    );
    m.gaugeFn(
      "zester_master_reactor_open_breakers",
      "Reactor rules held by an open breaker",
      () => reactor.stats().open_breakers.length,
    );
  }
  const [jobs, jobReturns, stateFiles, settingsFiles] = await Promise.all([
    openKv(nc, "jobs"),
    openKv(nc, "job-returns"),
    openKv(nc, "state-files"),
    openKv(nc, "settings-files"),
  ]);
  const revision = async (kv: typeof stateFiles): Promise<number> => {
    const e = await kv.get(REVISION_KEY);
    return e && e.operation === "PUT" ? parseRevision(e.value).rev : 0;
  };
  m.gaugeFn("zester_master_published_revision", "Revision of each published tree (0: none yet)", async () => [
    [{ tree: "states" }, await revision(stateFiles)],
    [{ tree: "settings" }, await revision(settingsFiles)],
  ]);

  // A return can be written twice (the peel's put, then the master's copy): count each peel once.
  const mine = new Map<string, { done: boolean; returned: Set<string> }>();
  const remember = (jid: string) => {
    let j = mine.get(jid);
    if (!j) {
      j = { done: false, returned: new Set() };
      mine.set(jid, j);
      if (mine.size > TRACKED_JOBS) mine.delete(mine.keys().next().value!);
    }
    return j;
  };
  const watches: QueuedIterator<KvWatchEntry>[] = [
    await jobs.watch({ key: "*", include: "updates" }),
    await jobReturns.watch({ key: "*.*", include: "updates" }),
  ];
  const follow = (w: QueuedIterator<KvWatchEntry>, fn: (e: KvWatchEntry) => void) =>
    void (async () => {
      for await (const e of w) {
        if (e.operation !== "PUT") continue;
        try {
          fn(e);
        } catch {
          // An entry that is not a record this master wrote is not a metric.
        }
      }
    })().catch(() => {});
  follow(watches[0]!, (e) => {
    const rec = decode<JobRecord>(e.value);
    if (rec.master !== master.id || typeof rec.status !== "string") return;
    if (!mine.has(rec.jid)) created.inc();
    const job = remember(rec.jid);
    if (rec.status === "running" || job.done) return;
    job.done = true;
    finished.inc({ status: rec.status });
    for (const st of Object.values(rec.peels ?? {})) peelOutcomes.inc({ status: String(st) });
    const took = (Date.parse(rec.finished_at ?? "") - Date.parse(rec.created_at)) / 1000;
    if (Number.isFinite(took) && took >= 0) durations.observe(took);
  });
  follow(watches[1]!, (e) => {
    const dot = e.key.indexOf(".");
    const job = mine.get(e.key.slice(0, dot));
    if (!job || job.returned.has(e.key.slice(dot + 1))) return;
    job.returned.add(e.key.slice(dot + 1));
    const ret = decode<PeelReturn>(e.value);
    returns.inc({ result: ret.success ? "success" : "failed" });
  });

  let busUp = true;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") busUp = false;
      else if (s.type === "reconnect") {
        busUp = true;
        reconnects.inc();
      }
    }
  })().catch(() => {});

  return {
    metrics: m,
    ready: () => {
      if (nc.isClosed()) return { ready: false, reason: "NATS connection closed" };
      if (!busUp) return { ready: false, reason: "reconnecting to NATS" };
      return { ready: true };
    },
    stop: () => {
      for (const w of watches) w.stop();
    },
  };
}
