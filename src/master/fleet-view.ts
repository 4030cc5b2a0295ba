/**
 * The master's live picture of the fleet: a TargetIndex fed by a watch on `facts`, and when each
 * peel last wrote its heartbeat, from a watch on `peel-heartbeat`. Heartbeat keys expire by the
 * bucket's max_age without a delete marker on NATS 2.9, so "online" is judged by the age of the
 * last beat, never by the key disappearing.
 */
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import { isValidPeelId, PEEL_HEARTBEAT_TTL_MS } from "../bus/names.js";
import { TargetIndex } from "../target/index.js";
import { errText } from "../util/errors.js";

export interface FleetViewOptions {
  /** A beat older than this means offline (default: the heartbeat bucket TTL). */
  onlineWithinMs?: number;
  log?: (msg: string) => void;
  /** `N@name` in targets: name → target expression (the master config's `nodegroups`). */
  nodegroups?: Readonly<Record<string, string>>;
}

/** Called after a peel's facts entered or left the index (`facts` undefined: it left). */
export type FactsListener = (peel: string, facts: Record<string, unknown> | undefined) => void;

export class FleetView {
  readonly index: TargetIndex;
  private readonly lastBeat = new Map<string, number>();
  private readonly watchers: QueuedIterator<KvWatchEntry>[] = [];
  private readonly loops: Promise<void>[] = [];
  private readonly onlineWithinMs: number;
  private readonly log: (msg: string) => void;
  private readonly listeners = new Set<FactsListener>();
  private readonly beatListeners = new Set<(peel: string, at: number | undefined, rev: number) => void>();

  constructor(opts: FleetViewOptions = {}) {
    this.index = new TargetIndex(opts.nodegroups ? { nodegroups: opts.nodegroups } : {});
    this.onlineWithinMs = opts.onlineWithinMs ?? PEEL_HEARTBEAT_TTL_MS;
    this.log = opts.log ?? (() => {});
  }

  /** Starts both watches and resolves once their current contents are loaded. */
  async start(facts: KV, heartbeats: KV): Promise<void> {
    await Promise.all([
      this.follow("facts", facts, (e) => this.onFact(e)),
      this.follow("peel-heartbeat", heartbeats, (e) => this.onBeat(e)),
    ]);
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.stop();
    await Promise.allSettled(this.loops);
  }

  /** Follows fact changes (settings resolution and sealing react to them); returns an unsubscribe. */
  onFacts(listener: FactsListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Follows heartbeat writes (`at` undefined: the key was deleted); returns an unsubscribe. */
  onBeats(listener: (peel: string, at: number | undefined, rev: number) => void): () => void {
    this.beatListeners.add(listener);
    return () => this.beatListeners.delete(listener);
  }

  /** Peels whose last heartbeat is recent enough, with its time. */
  onlinePeels(now = Date.now()): [string, number][] {
    return [...this.lastBeat].filter(([, t]) => now - t <= this.onlineWithinMs);
  }

  /** Ids of every peel with facts, sorted. */
  peels(): string[] {
    return this.index.resolve("*");
  }

  isOnline(peel: string, now = Date.now()): boolean {
    const t = this.lastBeat.get(peel);
    return t !== undefined && now - t <= this.onlineWithinMs;
  }

  lastSeen(peel: string): number | undefined {
    return this.lastBeat.get(peel);
  }

  /** Sorted ids of peels matching `target`; throws TargetSyntaxError on a bad expression. */
  resolve(target: string): string[] {
    return this.index.resolve(target);
  }

  /**
   * Watches a whole bucket. Resolves after the last pre-existing value was handled (the entry
   * with nothing pending after it), or at once when the bucket is empty.
   */
  private async follow(name: string, kv: KV, handle: (e: KvWatchEntry) => void): Promise<void> {
    const empty = (await kv.status()).values === 0;
    const iter = await kv.watch();
    this.watchers.push(iter);
    let markReady!: () => void;
    const ready = new Promise<void>((r) => {
      markReady = r;
    });
    if (empty) markReady();
    this.loops.push(
      (async () => {
        for await (const e of iter) {
          try {
            handle(e);
          } catch (err) {
            this.log(`ignoring ${name} entry ${e.key}: ${errText(err)}`);
          }
          if (e.delta === 0) markReady();
        }
        markReady();
      })(),
    );
    await ready;
  }

  private onFact(e: KvWatchEntry): void {
    if (!isValidPeelId(e.key)) return;
    if (e.operation !== "PUT") {
      if (this.index.remove(e.key)) this.notify(e.key, undefined);
      return;
    }
    const facts = e.json<unknown>();
    if (facts === null || typeof facts !== "object" || Array.isArray(facts)) {
      this.log(`facts of ${e.key} are not an object; ignoring them`);
      return;
    }
    // Peels write facts through the wire codec, which stamps the protocol version `v`: not a fact.
    const { v: _version, ...rest } = facts as Record<string, unknown>;
    this.index.upsert(e.key, rest);
    this.notify(e.key, rest);
  }

  private notify(peel: string, facts: Record<string, unknown> | undefined): void {
    for (const l of this.listeners) {
      try {
        l(peel, facts);
      } catch (err) {
        this.log(`facts listener failed for ${peel}: ${errText(err)}`);
      }
    }
  }

  private onBeat(e: KvWatchEntry): void {
    if (!isValidPeelId(e.key)) return;
    if (e.operation !== "PUT") {
      this.lastBeat.delete(e.key);
      for (const l of this.beatListeners) l(e.key, undefined, e.revision);
      return;
    }
    this.lastBeat.set(e.key, e.created.getTime());
    for (const l of this.beatListeners) l(e.key, e.created.getTime(), e.revision);
  }
}
