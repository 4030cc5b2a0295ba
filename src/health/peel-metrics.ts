/**
 * A peel's metrics, fed by the events the Peel already emits (it knows nothing about them), and
 * its readiness: connected to NATS.
 */
import type { PeelReturn } from "../jobs/wire.js";
import type { Peel } from "../peel/peel.js";
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
  // EventEmitter listeners take any arguments; only "return" has one.
  const handlers: [string, (ret: PeelReturn) => void][] = [
    ["return", onReturn],
    ["reconnected", () => reconnects.inc()],
    ["disconnected", () => disconnects.inc()],
    ["refused", () => refused.inc()],
    ["outbox", () => outboxed.inc()],
    ["facts", () => factsPublished.inc()],
    ["states", () => statesSynced.inc()],
  ];
  for (const [event, fn] of handlers) peel.on(event, fn);
  return {
    metrics: m,
    ready: () => (peel.connected ? { ready: true } : { ready: false, reason: "not connected to NATS" }),
    detach: () => {
      for (const [event, fn] of handlers) peel.off(event, fn);
    },
  };
}
