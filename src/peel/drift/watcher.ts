/**
 * Drift repaired the moment it happens: states marked `watch_drift: true` are watched after the
 * run that applied them (files through inotify, services by polling their running state), and a
 * change to one of them re-applies just that state (and what reacts to it) from the peel's
 * cache, connected or not.
 *
 * What counts as drift is a difference from the fingerprint taken right after the last run
 * (content hash, mode, owner; running or not), not the mere fact that a watch fired: a run's own
 * writes, or an editor touching a file without changing it, repair nothing.
 */
import { createHash } from "node:crypto";
import { lstat, readFile } from "node:fs/promises";
import { isAbsolute } from "node:path";
import type { Program } from "../../state/compile.js";
import { errText } from "../../util/errors.js";
import { isENOENT, readTextOrUndefined, writeFileAtomic } from "../../util/files.js";
import { PathWatcher, type WatchSpec } from "../beacons/inotify.js";
import type { PeelLogger } from "../peel.js";

export type DriftKind = "file" | "service";

export interface DriftResource {
  /** State name (`file.managed:motd`). */
  state: string;
  kind: DriftKind;
  /** Path or service name. */
  resource: string;
}

/** The states one run target (sls refs, none = highstate) asked to keep. */
interface WatchSet {
  refs: string[];
  resources: DriftResource[];
}

export interface DriftRepair {
  refs: string[];
  states: string[];
  resources: DriftResource[];
  /** When the first drift of this repair was noticed (ms since the epoch). */
  detectedAt: number;
}

export interface DriftWatcherOptions {
  /** Where the watch sets are kept, so a restarted peel watches again before its next run. */
  file: string;
  log: PeelLogger;
  compile: (refs: string[]) => Promise<Program>;
  /** Runs the repair (queued like any state run); resolves when it finished. */
  repair: (r: DriftRepair) => Promise<void>;
  serviceRunning: (name: string) => Promise<boolean>;
  /** True while a job that changes the machine runs. */
  changingMachine: () => boolean;
  servicePollMs?: number;
}

export const DEFAULT_SERVICE_POLL_MS = 2_000;
/** Quiet time after a file event before the file is judged. */
const SETTLE_MS = 20;
const FILE_CHANGES = new Set(["IN_MODIFY", "IN_CREATE", "IN_DELETE"] as const);

async function fileFingerprint(path: string): Promise<string> {
  try {
    const st = await lstat(path);
    const meta = `${st.mode.toString(8)}:${st.uid}:${st.gid}`;
    if (!st.isFile()) return `${st.isDirectory() ? "dir" : "other"}:${meta}`;
    return `file:${meta}:${createHash("sha256")
      .update(await readFile(path))
      .digest("hex")}`;
  } catch (err) {
    if (isENOENT(err)) return "absent";
    throw err;
  }
}

const keyOf = (refs: readonly string[]) => (refs.length === 0 ? "<highstate>" : [...refs].sort().join(","));

export class DriftWatcher {
  private readonly sets = new Map<string, WatchSet>();
  /** Fingerprint per `<kind>:<resource>` taken after the last run that applied it. */
  private readonly baseline = new Map<string, string>();
  private watcher: PathWatcher | undefined;
  private serviceTimer: NodeJS.Timeout | undefined;
  private readonly pending = new Map<string, { set: WatchSet; res: DriftResource[]; at: number }>();
  private repairing: Promise<void> | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private readonly suspects = new Set<string>();
  private stopped = false;
  private polling = false;

  constructor(private readonly opts: DriftWatcherOptions) {}

  /** What is watched now (for tests and beacons.list-like views). */
  get watched(): DriftResource[] {
    return [...this.sets.values()].flatMap((s) => s.resources);
  }

  /** Loads the watch sets of earlier runs and starts watching them. */
  async init(): Promise<void> {
    const text = await readTextOrUndefined(this.opts.file);
    if (text !== undefined) {
      try {
        const data = JSON.parse(text) as { sets?: WatchSet[] };
        for (const s of data.sets ?? []) this.sets.set(keyOf(s.refs), s);
      } catch (err) {
        this.opts.log.warn(`drift: ignoring unreadable ${this.opts.file}: ${errText(err)}`);
      }
    }
    await this.rebaseline(this.watched);
    this.rewatch();
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.close();
    if (this.serviceTimer) clearInterval(this.serviceTimer);
    if (this.checkTimer) clearTimeout(this.checkTimer);
  }

  idle(): Promise<void> {
    return this.repairing ?? Promise.resolve();
  }

  /**
   * After a (non-test) state run of `refs` (not a repair): takes the run's watch_drift states as
   * the set of that target and fingerprints them.
   */
  async afterRun(refs: string[]): Promise<void> {
    if (this.stopped) return;
    let program: Program;
    try {
      program = await this.opts.compile(refs);
    } catch (err) {
      this.opts.log.warn(`drift: cannot read the watch_drift states of this run: ${errText(err)}`);
      return;
    }
    const resources: DriftResource[] = [];
    for (const s of program.states) {
      if (!s.watchDrift) continue;
      const name = s.params.name;
      if (typeof name !== "string") continue;
      if (s.fun.startsWith("file.") && isAbsolute(name))
        resources.push({ state: s.name, kind: "file", resource: name });
      else if (s.fun.startsWith("service."))
        resources.push({ state: s.name, kind: "service", resource: name });
      else
        this.opts.log.warn(
          `drift: ${s.name} asks for watch_drift, but only file.* and service.* states are watched`,
        );
    }
    const key = keyOf(refs);
    if (resources.length === 0 && !this.sets.has(key)) return;
    if (resources.length === 0) this.sets.delete(key);
    else this.sets.set(key, { refs, resources });
    await this.rebaseline(this.watched);
    this.rewatch();
    await this.save();
  }

  private async save(): Promise<void> {
    try {
      await writeFileAtomic(this.opts.file, `${JSON.stringify({ v: 1, sets: [...this.sets.values()] })}\n`, {
        mode: 0o600,
      });
    } catch (err) {
      this.opts.log.warn(`drift: cannot save ${this.opts.file}: ${errText(err)}`);
    }
  }

  private async fingerprint(r: DriftResource): Promise<string> {
    return r.kind === "file"
      ? fileFingerprint(r.resource)
      : String(await this.opts.serviceRunning(r.resource));
  }

  private async rebaseline(resources: DriftResource[]): Promise<void> {
    await Promise.all(
      resources.map(async (r) => {
        try {
          this.baseline.set(`${r.kind}:${r.resource}`, await this.fingerprint(r));
        } catch (err) {
          this.opts.log.warn(`drift: cannot read ${r.resource}: ${errText(err)}`);
        }
      }),
    );
  }

  private rewatch(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.serviceTimer) clearInterval(this.serviceTimer);
    this.serviceTimer = undefined;
    if (this.stopped) return;
    const files = [...new Set(this.watched.filter((r) => r.kind === "file").map((r) => r.resource))];
    if (files.length > 0) {
      const specs: WatchSpec[] = files.map((path) => ({
        path,
        recurse: false,
        changes: FILE_CHANGES,
        exclude: [],
      }));
      this.watcher = new PathWatcher(
        specs,
        (path) => this.suspect(`file:${path}`),
        (err) => this.opts.log.warn(`drift: ${errText(err)}`),
      );
    }
    if (this.watched.some((r) => r.kind === "service")) {
      this.serviceTimer = setInterval(
        () => void this.pollServices(),
        this.opts.servicePollMs ?? DEFAULT_SERVICE_POLL_MS,
      );
      this.serviceTimer.unref?.();
    }
  }

  private async pollServices(): Promise<void> {
    if (this.polling || this.opts.changingMachine()) return;
    this.polling = true;
    try {
      for (const r of this.watched) if (r.kind === "service") this.suspects.add(`service:${r.resource}`);
      await this.check();
    } finally {
      this.polling = false;
    }
  }

  /**
   * A watch fired: checked once the events stop for a moment, so a write in progress (truncate,
   * then the new bytes) is judged, and repaired, once it is complete.
   */
  private suspect(key: string): void {
    this.suspects.add(key);
    if (this.checkTimer) clearTimeout(this.checkTimer);
    this.checkTimer = setTimeout(() => {
      this.checkTimer = undefined;
      void this.check();
    }, SETTLE_MS);
  }

  private async check(): Promise<void> {
    if (this.stopped) return;
    // A run's own changes: its fingerprints are taken when it ends.
    if (this.opts.changingMachine()) {
      this.suspects.clear();
      return;
    }
    const keys = [...this.suspects];
    this.suspects.clear();
    const at = Date.now();
    for (const key of keys) {
      const hit = this.watched.filter((r) => `${r.kind}:${r.resource}` === key);
      if (hit.length === 0) continue;
      let now: string;
      try {
        now = await this.fingerprint(hit[0]!);
      } catch (err) {
        this.opts.log.warn(`drift: cannot read ${hit[0]!.resource}: ${errText(err)}`);
        continue;
      }
      if (now === this.baseline.get(key)) continue;
      for (const set of this.sets.values()) {
        const res = set.resources.filter((r) => `${r.kind}:${r.resource}` === key);
        if (res.length === 0) continue;
        const p = this.pending.get(keyOf(set.refs)) ?? { set, res: [], at };
        p.res.push(...res);
        this.pending.set(keyOf(set.refs), p);
      }
    }
    if (this.pending.size > 0) this.kick();
  }

  private kick(): void {
    if (this.repairing || this.stopped) return;
    this.repairing = (async () => {
      while (this.pending.size > 0 && !this.stopped) {
        const [key, p] = this.pending.entries().next().value as [
          string,
          { set: WatchSet; res: DriftResource[]; at: number },
        ];
        this.pending.delete(key);
        const resources = [...new Map(p.res.map((r) => [`${r.state} ${r.resource}`, r])).values()];
        const states = [...new Set(resources.map((r) => r.state))].sort();
        this.opts.log.info(
          `drift: ${resources.map((r) => r.resource).join(", ")} changed; re-applying ${states.join(", ")}`,
        );
        try {
          await this.opts.repair({ refs: p.set.refs, states, resources, detectedAt: p.at });
        } catch (err) {
          this.opts.log.error(`drift: repair failed: ${errText(err)}`);
        }
        await this.rebaseline(resources);
      }
    })().finally(() => {
      this.repairing = undefined;
      if (this.pending.size > 0) this.kick();
    });
  }
}
