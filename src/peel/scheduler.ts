/**
 * The peel's enforcement schedule: applies the cached state tree on a timer, connected to NATS
 * or not, so drift is corrected through a control-plane outage. Returns are stored like a job's
 * (origin "schedule", a fresh KSUID), through the outbox while disconnected.
 */
import type { PeelReturn } from "../jobs/wire.js";
import { pendingCount } from "../state/result.js";
import { errText } from "../util/errors.js";
import type { PeelLogger } from "./peel.js";

export interface EnforceSchedule {
  /** Time between runs. */
  everyMs: number;
  /**
   * Each run starts up to this much later, at random, so a fleet started together does not
   * apply (and load its package mirrors) in lockstep. Default: a tenth of `everyMs`, at most 5 min.
   */
  splayMs?: number;
  /** Sls refs to apply; default the highstate (top.zy). */
  sls?: string[];
  /** Report drift without changing anything. */
  test?: boolean;
}

export function defaultSplayMs(everyMs: number): number {
  return Math.min(everyMs / 10, 5 * 60_000);
}

/** What one run did, for the log line. */
export function describeRun(ret: PeelReturn, test: boolean): string {
  const s = ret.summary;
  const what = test ? "drift check" : "enforcement run";
  if (!s)
    return `${what} ${ret.success ? "succeeded" : "failed"}${ret.error ? `: ${firstLine(ret.error)}` : ""}`;
  // A test run changes nothing: what it would change is reported as pending (Salt's None).
  const pending = pendingCount(ret.results);
  const changed = test ? `${pending} would change` : `${s.changed} changed`;
  return `${what}: ${s.total} states, ${changed}, ${s.failed} failed`;
}

function firstLine(s: string): string {
  return s.split("\n")[0] ?? "";
}

export class EnforceScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private halted = false;

  constructor(
    private readonly schedule: EnforceSchedule,
    private readonly run: () => Promise<PeelReturn>,
    private readonly log: PeelLogger,
    private readonly onRun: (ret: PeelReturn) => void = () => {},
    private readonly random: () => number = Math.random,
  ) {
    if (!(schedule.everyMs > 0)) throw new Error("enforcement interval must be positive");
  }

  start(): void {
    this.halted = false;
    this.arm();
  }

  /** No further runs; a run in progress goes on (the peel's queue aborts it when stopping). */
  halt(): void {
    this.halted = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Settles when the run in progress (if any) has finished. */
  idle(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  private arm(): void {
    if (this.halted) return;
    const splay = this.schedule.splayMs ?? defaultSplayMs(this.schedule.everyMs);
    this.timer = setTimeout(() => this.tick(), this.schedule.everyMs + this.random() * splay);
  }

  private tick(): void {
    if (this.halted) return;
    if (this.running) {
      // A run longer than the interval: starting another would only queue behind it.
      this.log.warn("scheduled state run skipped: the previous one is still running");
    } else {
      const test = this.schedule.test === true;
      this.running = this.run()
        .then((ret) => {
          const line = describeRun(ret, test);
          if (ret.success) this.log.info(line);
          else this.log.warn(line);
          this.onRun(ret);
        })
        .catch((err: unknown) => this.log.error(`scheduled state run failed: ${errText(err)}`))
        .finally(() => {
          this.running = undefined;
        });
    }
    this.arm();
  }
}
