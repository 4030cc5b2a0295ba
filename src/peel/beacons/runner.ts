/**
 * Runs the configured beacons of one peel: polls each on its interval (or lets it watch), turns
 * what it reports into events, pauses those that ask for it while the machine is being changed,
 * and follows new settings: a changed beacon is restarted, a removed one stopped.
 */
import { errText } from "../../util/errors.js";
import type { PeelLogger } from "../peel.js";
import { type BeaconSpec, beaconsConfig, checkKeys } from "./config.js";
import { BEACON_ALIASES, BEACON_MODULES, loadBeacon } from "./registry.js";
import type { BeaconContext, BeaconData, BeaconInstance } from "./types.js";

/** What `beacons.list` shows of one beacon. */
export interface BeaconStatus {
  name: string;
  module: string;
  /** Null for beacons that watch instead of polling. */
  interval_s: number | null;
  disable_during_state_run: boolean;
  events: number;
  last_event: { ts: string; data: BeaconData } | null;
  /** The last failure (bad options, a poll that threw), cleared by the next good poll. */
  error: string | null;
}

export interface BeaconRunnerOptions {
  ctx: BeaconContext;
  log: PeelLogger;
  /** Sends one event of beacon `name` (buffered on disk while the bus is away). */
  emit: (name: string, data: BeaconData) => void;
  /** True while a state run (or any job that changes the machine) is running. */
  changingMachine: () => boolean;
}

interface Running {
  spec: BeaconSpec;
  json: string;
  status: BeaconStatus;
  instance: BeaconInstance | undefined;
  timer: NodeJS.Timeout | undefined;
  stopWatch: (() => void) | undefined;
  polling: boolean;
  stopped: boolean;
}

export class BeaconRunner {
  private readonly running = new Map<string, Running>();
  private readonly reported = new Set<string>();
  private stopped = false;

  constructor(private readonly opts: BeaconRunnerOptions) {}

  /** Applies the `beacons:` key of new settings. */
  configure(settings: Record<string, unknown>): void {
    if (this.stopped) return;
    const cfg = beaconsConfig(settings, BEACON_MODULES, BEACON_ALIASES);
    for (const e of cfg.errors) this.reportOnce(e);
    const next = new Map(cfg.beacons.map((b) => [b.name, b]));
    for (const [name, r] of this.running) {
      const s = next.get(name);
      if (!s || JSON.stringify(s) !== r.json) this.halt(name);
    }
    for (const [name, spec] of next) if (!this.running.has(name)) void this.begin(spec);
  }

  list(): BeaconStatus[] {
    return [...this.running.values()]
      .map((r) => ({ ...r.status }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  stop(): void {
    this.stopped = true;
    for (const name of [...this.running.keys()]) this.halt(name);
  }

  private reportOnce(msg: string): void {
    if (this.reported.has(msg)) return;
    this.reported.add(msg);
    this.opts.log.error(`beacons: ${msg}`);
  }

  private halt(name: string): void {
    const r = this.running.get(name);
    if (!r) return;
    r.stopped = true;
    if (r.timer) clearInterval(r.timer);
    r.stopWatch?.();
    this.running.delete(name);
  }

  private async begin(spec: BeaconSpec): Promise<void> {
    const r: Running = {
      spec,
      json: JSON.stringify(spec),
      status: {
        name: spec.name,
        module: spec.module,
        interval_s: null,
        disable_during_state_run: spec.disableDuringStateRun,
        events: 0,
        last_event: null,
        error: null,
      },
      instance: undefined,
      timer: undefined,
      stopWatch: undefined,
      polling: false,
      stopped: false,
    };
    this.running.set(spec.name, r);
    try {
      const mod = await loadBeacon(spec.module);
      checkKeys(spec, mod.keys);
      r.instance = mod.create(spec.options, this.opts.ctx);
    } catch (err) {
      r.status.error = `beacons.${spec.name}: ${errText(err).replace(`beacons.${spec.name}: `, "")}`;
      this.reportOnce(r.status.error);
      return;
    }
    if (r.stopped) return;
    const inst = r.instance;
    if (inst.watch) {
      r.stopWatch = inst.watch(
        (data) => this.fire(r, data),
        (err) => {
          r.status.error = errText(err);
          this.opts.log.warn(`beacon ${spec.name}: ${errText(err)}`);
        },
      );
    }
    if (inst.poll) {
      r.status.interval_s = spec.intervalMs / 1000;
      r.timer = setInterval(() => void this.poll(r), spec.intervalMs);
      void this.poll(r);
    }
  }

  private paused(r: Running): boolean {
    return r.spec.disableDuringStateRun && this.opts.changingMachine();
  }

  private async poll(r: Running): Promise<void> {
    if (r.polling || r.stopped || !r.instance?.poll || this.paused(r)) return;
    r.polling = true;
    try {
      const out = await r.instance.poll();
      r.status.error = null;
      for (const d of out) this.fire(r, d);
    } catch (err) {
      const msg = errText(err);
      if (r.status.error !== msg) this.opts.log.warn(`beacon ${r.spec.name}: ${msg}`);
      r.status.error = msg;
    } finally {
      r.polling = false;
    }
  }

  private fire(r: Running, data: BeaconData): void {
    // A watcher's change seen while a run changes the machine is the run's own doing.
    if (r.stopped || this.paused(r)) return;
    r.status.events++;
    r.status.last_event = { ts: new Date().toISOString(), data };
    this.opts.emit(r.spec.name, data);
  }
}
