/**
 * A peel's metrics, fed by the events the Peel already emits (it knows nothing about them), and
 * its readiness: connected to NATS.
 */
import type { PeelReturn } from "../jobs/wire.js";
import type { Peel, PeelEvents } from "../peel/peel.js";
import { Metrics } from "./metrics.js";
import type { Readiness } from "./server.js";

export interface PeelHealth {
  metrics: Metrics;
  ready(): Readiness;
  /** Stops listening to the peel's events. */
  detach(): void;
}

export function peelHealth(peel: Peel): PeelHealth {
  const m = new Metrics();
  const runs = m.counter(
    "zester_peel_runs_total",
    "Calls finished by this peel, by origin (job, schedule) and result",
  );
  const durations = m.histogram(
    "zester_peel_state_run_duration_seconds",
    "Duration of state runs (the run's own summary), by origin",
  );
  const reconnects = m.counter(
    "zester_peel_bus_reconnects_total",
    "Reconnections to NATS after a lost connection",
  );
  const disconnects = m.counter("zester_peel_bus_disconnects_total", "Connections to NATS lost");
  const refused = m.counter(
    "zester_peel_commands_refused_total",
    "Commands refused (bad signature, stale, replayed)",
  );
  const outboxed = m.counter(
    "zester_peel_returns_outboxed_total",
    "Returns kept in the outbox while NATS was away",
  );
  const factsPublished = m.counter(
    "zester_peel_facts_published_total",
    "Fact sets written to the facts bucket",
  );
  const statesSynced = m.counter(
    "zester_peel_states_synced_total",
    "State tree revisions taken into the cache",
  );
  m.gaugeFn("zester_peel_connected", "1 while connected to NATS", () => (peel.connected ? 1 : 0));

  const onReturn = (ret: PeelReturn): void => {
    const origin = ret.origin ?? "job";
    runs.inc({ origin, result: ret.success ? "success" : "failed" });
    if (ret.summary) durations.observe(ret.summary.duration_ms / 1000, { origin });
  };
  const detachers: (() => void)[] = [];
  const on = <K extends keyof PeelEvents>(event: K, fn: (...args: PeelEvents[K]) => void): void => {
    // @types/node types a listener with a conditional TypeScript cannot resolve for a generic K.
    const listener = fn as Parameters<typeof peel.on<K>>[1];
    peel.on(event, listener);
    detachers.push(() => peel.off(event, listener));
  };
  on("return", onReturn);
  on("reconnected", () => reconnects.inc());
  on("disconnected", () => disconnects.inc());
  on("refused", () => refused.inc());
  on("outbox", () => outboxed.inc());
  on("facts", () => factsPublished.inc());
  on("states", () => statesSynced.inc());
  return {
    metrics: m,
    ready: () => (peel.connected ? { ready: true } : { ready: false, reason: "not connected to NATS" }),
    detach: () => {
      for (const off of detachers.splice(0)) off();
    },
  };
}
