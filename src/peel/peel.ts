/**
 * The peel: Zester's agent on a node. Publishes facts and a heartbeat, keeps a verified copy of
 * the state tree, and runs the commands a trusted master signed for it. Many peels may live in
 * one process (fleet simulations, tests), so everything is per instance and nothing exits the
 * process.
 *
 * Events (for tests and embedding): "connected", "disconnected", "refused" {jid?, reason},
 * "ack" Ack, "return" PeelReturn, "facts" {rev}, "heartbeat" PeelHeartbeat, "states" SyncResult,
 * "states-rejected" {rev, reason}, "canceled" {jid}, "outbox" {jid} (a return kept for later),
 * "outbox-flushed" {count, bad, left} (kept returns stored after a (re)connection), "scheduled"
 * PeelReturn (an enforcement run finished), "basket" {function} (a basket value written), "beacon"
 * ZesterEvent (a beacon event made; sent, or buffered on disk while disconnected).
 *
 * Secrets: every PeelReturn and log line passes through the settings masker before it leaves
 * the peel, so an opened secret never reaches KV, a subscriber or a log as plaintext.
 */
import { EventEmitter } from "node:events";
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import type { KeyPair } from "@nats-io/nkeys";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { loadTrustedMasters } from "../auth/auth-dir.js";
import { CANCEL_FUNCTION, DEFAULT_MAX_SKEW_MS, verifyCommand } from "../auth/signing.js";
import { openKv } from "../bus/bootstrap.js";
import { decode, encode } from "../bus/codec.js";
import { connect, DEFAULT_AUTH_DIR } from "../bus/connect.js";
import { isPermissionDenied } from "../bus/errors.js";
import { assertPeelId, PEEL_HEARTBEAT_INTERVAL_MS, peelInboxPrefix, subjects } from "../bus/names.js";
import { relayedReason } from "../bus/validate.js";
import { makeEvent, type ZesterEvent } from "../events/index.js";
import { CustomFactCache, collectFacts, type Facts } from "../facts/index.js";
import { newKsuid } from "../jobs/ksuid.js";
import { PEEL_QUEUE_DENIED, queueDeniedMessage, readPeelQueue } from "../jobs/peel-queue.js";
import type { Ack, Command, PeelHeartbeat, PeelLastRun, PeelReturn, StateRevision } from "../jobs/wire.js";
import { ensurePeelCurveKey, loadMasterCurvePub, MASTER_CURVE_FILES } from "../settings/keys.js";
import { pendingCount } from "../state/result.js";
import { errText } from "../util/errors.js";
import { statOrUndefined } from "../util/files.js";
import { PeelBasket } from "./basket/peel-basket.js";
import { BeaconRunner } from "./beacons/runner.js";
import { EventSender } from "./beacons/sender.js";
import { cacheDirMessage, prepareCacheDir } from "./cache-dir.js";
import { type DriftRepair, DriftWatcher } from "./drift/watcher.js";
import { stableFactsKey } from "./facts-diff.js";
import {
  type FunctionOutcome,
  isReadOnlyFunction,
  type PeelCall,
  type PeelFunctionContext,
  runPeelFunction,
  slsRefs,
  wantsTest,
} from "./functions.js";
import { JidStore } from "./jid-store.js";
import { LiveSettings } from "./live-settings.js";
import {
  DEFAULT_OUTBOX_LIMIT,
  FIRST_FLUSH_RETRY_MS,
  FlushBackoff,
  MAX_FLUSH_RETRY_MS,
  ReturnOutbox,
} from "./outbox.js";
import { JobQueue } from "./queue.js";
import { type EnforceSchedule, EnforceScheduler } from "./scheduler.js";
import { PeelSettings } from "./settings.js";
import { StateTreeCache, type SyncResult } from "./state-cache.js";

export interface PeelLogger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export interface PeelConfig {
  id: string;
  /** `tls://host:port` URL(s). */
  servers: string | string[];
  credsFile: string;
  caFile?: string;
  /** Where nats-ca.crt and trusted-masters.pub are looked up (default /etc/zester/auth). */
  authDir?: string;
  /** Default /var/lib/zester/peel/<id>. */
  cacheDir?: string;
  /** Public nkeys of masters whose commands are accepted; default: `<authDir>/trusted-masters.pub`. */
  trustedMasters?: ReadonlySet<string>;
  factsIntervalMs?: number;
  heartbeatMs?: number;
  /** Mutating jobs that may wait behind the running one; more are answered "busy". */
  queueLimit?: number;
  logger?: PeelLogger;
  /** Custom facts directory (default $ZESTER_FACTS_DIR, then /etc/zester/facts). */
  customFactsDir?: string;
  /** Pause between connection attempts while the server cannot be reached at start. */
  connectRetryMs?: number;
  /** Allowed distance between a command's timestamp and this peel's clock. */
  maxSkewMs?: number;
  /**
   * Trusted master curve public key(s) for sealed secrets; default: `<authDir>/master-curve.pub`
   * when that file exists. Without one, any sealed secret fails to open (and says why).
   */
  masterCurvePub?: string | readonly string[];
  /** A settings fetch slower than this falls back to the snapshot (default 5 s). */
  settingsFetchTimeoutMs?: number;
  /** Returns kept in the outbox while they cannot be stored; the oldest are dropped beyond it. */
  outboxLimit?: number;
  /** Pause between outbox flush attempts while returns wait and the peel is connected. */
  outboxRetryMs?: number;
  /** Applies the cached tree on a timer, connected or not; off when undefined. */
  enforce?: EnforceSchedule;
  /** Beacon events kept on disk while NATS is away; the oldest are dropped beyond it (default 1,000). */
  eventBufferLimit?: number;
}

/** Kept for callers of the first peel API: the settings fields are now part of PeelReturn. */
export type PeelReturnWithSettings = PeelReturn;

export const DEFAULT_FACTS_INTERVAL_MS = 60_000;
/** A drain cannot finish while the client is reconnecting (e.g. after a revocation): then close. */
const STOP_DRAIN_MS = 3_000;

async function closeWithin(nc: NatsConnection, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((res) => {
    timer = setTimeout(() => res("late"), ms);
  });
  const outcome = await Promise.race([
    nc.drain().then(
      () => "drained" as const,
      () => "failed" as const,
    ),
    late,
  ]);
  clearTimeout(timer);
  if (outcome !== "drained") await nc.close().catch(() => {});
}
export const DEFAULT_QUEUE_LIMIT = 32;
export const DEFAULT_PEEL_CACHE_ROOT = "/var/lib/zester/peel";
export const DEFAULT_SETTINGS_FETCH_TIMEOUT_MS = 5_000;
export const DEFAULT_OUTBOX_RETRY_MS = 30_000;

/** Default logger: one line per message on stderr, tagged with the peel id. */
export function stderrLogger(id: string): PeelLogger {
  const line = (level: string, msg: string) =>
    process.stderr.write(`${new Date().toISOString()} ${level} peel ${id}: ${msg}\n`);
  return {
    info: (m) => line("INFO", m),
    warn: (m) => line("WARN", m),
    error: (m) => line("ERROR", m),
  };
}

interface Buckets {
  facts: KV;
  heartbeat: KV;
  returns: KV;
  states: KV;
  settingsFiles: KV;
  secrets: KV;
  basket: KV;
  /** Commands a master kept while this peel was offline (`--queue`); only our own key is readable. */
  queue: KV;
}

/** Job ids end up in subjects and KV keys: one token, nothing exotic. */
const JID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * What a Peel emits, with each event's arguments: what tests, benchmarks and embedding code
 * listen for. The compiler checks every emit and every listener against it.
 */
export interface PeelEvents {
  connected: [];
  disconnected: [];
  reconnected: [];
  /** Facts were put to KV (at this revision). */
  facts: [{ rev: number }];
  heartbeat: [PeelHeartbeat];
  /** The state tree cache synced to a published revision. */
  states: [SyncResult];
  "states-rejected": [{ rev: unknown; reason: string }];
  /** A command or cancel failed the admit gate (or could not be recorded). */
  refused: [{ jid: string | undefined; reason: string }];
  /** Jobs kept for this peel while it was offline: started, or skipped as already received. */
  queue: [{ ran: string[]; skipped: string[] }];
  ack: [Ack];
  /** A job or scheduled run finished (the return as stored and published). */
  return: [PeelReturn];
  /** An enforcement run of the scheduler finished. */
  scheduled: [PeelReturn];
  outbox: [{ jid: string }];
  "outbox-flushed": [{ count: number; bad: number; left: number }];
  canceled: [{ jid: string }];
  drift: [DriftRepair & { ret: PeelReturn }];
  basket: [{ function: string }];
  beacon: [ZesterEvent];
}

export class Peel extends EventEmitter<PeelEvents> {
  readonly id: string;
  readonly cacheDir: string;
  readonly states: StateTreeCache;
  private readonly log: PeelLogger;
  private curve: KeyPair | undefined;
  private settingsStore: PeelSettings | undefined;
  /** False between a disconnect and the reconnect: settings go straight to the snapshot then. */
  private busUp = false;
  private readonly queue: JobQueue;
  private readonly jids: JidStore;
  private readonly factCache = new CustomFactCache();
  private trusted: ReadonlySet<string> = new Set();
  private nc: NatsConnection | undefined;
  private kv: Buckets | undefined;
  /**
   * Its creds do not allow reading its `peel-queue` key (issued before `--queue` existed):
   * logged once, and published as the `peel_queue: denied` fact so a master does not keep
   * commands for it that it can never read.
   */
  private queueDenied = false;
  private subs: Subscription[] = [];
  private stopWatch: (() => void) | undefined;
  private timers: NodeJS.Timeout[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private factsTimer: NodeJS.Timeout | undefined;
  private started = false;
  private version = "unknown";
  private facts: Facts | undefined;
  private publishedFactsKey: string | undefined;
  private factsChain: Promise<unknown> = Promise.resolve();
  private syncWanted: StateRevision | undefined;
  private syncing: Promise<void> | undefined;
  private lastSyncError: string | undefined;
  /** Returns still being stored/published, awaited by stop() before the connection drains. */
  private readonly finishing = new Set<Promise<unknown>>();
  /** Returns that could not be stored, kept on disk until a connection takes them. */
  private readonly outbox: ReturnOutbox;
  private outboxFlush: Promise<void> | undefined;
  private outboxAgain = false;
  private outboxRetry: NodeJS.Timeout | undefined;
  private readonly outboxBackoff: FlushBackoff;
  private scheduler: EnforceScheduler | undefined;
  /** The last finished state run, carried by every heartbeat (memory only, see PeelLastRun). */
  private lastRun: PeelLastRun | undefined;
  /** Settings-driven parts (basket, beacons) follow new settings revisions without a state run. */
  private live: LiveSettings | undefined;
  private basketPart: PeelBasket | undefined;
  private beacons: BeaconRunner | undefined;
  /** Beacon (and drift) events, through an on-disk buffer while the bus is away. */
  private events: EventSender | undefined;
  private drift: DriftWatcher | undefined;
  /** Mutating jobs running now, and when the last one ended: beacons may pause around them. */
  private changing = 0;
  private changedAt = 0;

  constructor(readonly cfg: PeelConfig) {
    super();
    this.id = assertPeelId(cfg.id);
    this.cacheDir = cfg.cacheDir ?? join(DEFAULT_PEEL_CACHE_ROOT, this.id);
    const base = cfg.logger ?? stderrLogger(this.id);
    const mask = (m: string) => this.settingsStore?.maskText(m) ?? m;
    this.log = {
      info: (m) => base.info(mask(m)),
      warn: (m) => base.warn(mask(m)),
      error: (m) => base.error(mask(m)),
    };
    this.queue = new JobQueue(cfg.queueLimit ?? DEFAULT_QUEUE_LIMIT);
    this.jids = new JidStore(join(this.cacheDir, "jids.json"));
    this.states = new StateTreeCache(join(this.cacheDir, "states"));
    this.outboxBackoff = new FlushBackoff(
      FIRST_FLUSH_RETRY_MS,
      Math.min(MAX_FLUSH_RETRY_MS, cfg.outboxRetryMs ?? DEFAULT_OUTBOX_RETRY_MS),
    );
    this.outbox = new ReturnOutbox(join(this.cacheDir, "outbox"), {
      peel: this.id,
      log: this.log,
      limit: cfg.outboxLimit ?? DEFAULT_OUTBOX_LIMIT,
    });
  }

  /** This peel's curve public key (published as the `curve_pub` fact); set by start(). */
  get curvePub(): string | undefined {
    return this.curve?.getPublicKey();
  }

  /** The peel's settings (resolution, snapshot, masking); set by start(). */
  get settings(): PeelSettings {
    if (!this.settingsStore) throw new Error(`peel ${this.id} is not started`);
    return this.settingsStore;
  }

  get connected(): boolean {
    return this.nc !== undefined && this.kv !== undefined && !this.nc.isClosed();
  }

  /**
   * Prepares local state, then connects. An unreachable server does not fail start(): the peel
   * keeps trying in the background and works from its cache meanwhile. Configuration errors
   * (no trusted master keys, unreadable cache) do fail it.
   */
  async start(): Promise<void> {
    if (this.started) throw new Error(`peel ${this.id} is already started`);
    this.started = true;
    await prepareCacheDir(this.cacheDir, ["empty"]);
    this.trusted =
      this.cfg.trustedMasters ?? (await loadTrustedMasters(this.cfg.authDir ?? DEFAULT_AUTH_DIR));
    await this.jids.load();
    const kept = await this.outbox.init();
    if (kept > 0) this.log.info(`outbox: ${kept} return(s) from before the restart wait for a connection`);
    this.curve = await ensurePeelCurveKey(this.cacheDir);
    this.settingsStore = new PeelSettings({
      peelId: this.id,
      cacheDir: this.cacheDir,
      curve: this.curve,
      masterCurvePub: await this.masterCurveKeys(),
      buckets: () =>
        this.kv && this.busUp ? { files: this.kv.settingsFiles, secrets: this.kv.secrets } : undefined,
      facts: () => this.currentFacts(),
      fetchTimeoutMs: this.cfg.settingsFetchTimeoutMs ?? DEFAULT_SETTINGS_FETCH_TIMEOUT_MS,
    });
    await this.settingsStore.init();
    await this.startLiveParts();
    this.version = await peelVersion();
    await this.collect();

    const factsEvery = this.cfg.factsIntervalMs ?? DEFAULT_FACTS_INTERVAL_MS;
    const beatEvery = this.cfg.heartbeatMs ?? PEEL_HEARTBEAT_INTERVAL_MS;
    this.scheduleFacts(factsEvery);
    this.timers.push(setInterval(() => void this.beat().catch(() => {}), beatEvery));
    // A flush stops at the first failed put (JetStream not ready yet, a timeout): try again later.
    this.timers.push(
      setInterval(() => {
        if (this.outbox.pending) void this.flushOutbox();
      }, this.cfg.outboxRetryMs ?? DEFAULT_OUTBOX_RETRY_MS),
    );
    if (this.cfg.enforce) {
      const e = this.cfg.enforce;
      this.scheduler = new EnforceScheduler(
        e,
        () => this.applyLocal({ ...(e.sls ? { sls: e.sls } : {}), test: e.test === true }),
        this.log,
        (ret) => this.emit("scheduled", ret),
      );
      this.scheduler.start();
    }
    await this.tryConnect();
  }

  private async masterCurveKeys(): Promise<string[]> {
    const c = this.cfg.masterCurvePub;
    if (c !== undefined) return typeof c === "string" ? [c] : [...c];
    const dir = this.cfg.authDir ?? DEFAULT_AUTH_DIR;
    if (!(await statOrUndefined(join(dir, MASTER_CURVE_FILES.pub)))) {
      this.log.warn(
        `no trusted master curve key (${join(dir, MASTER_CURVE_FILES.pub)} does not exist): sealed secrets cannot be opened`,
      );
      return [];
    }
    return [await loadMasterCurvePub(dir)];
  }

  /** Resolves once connected (at once if already), or rejects after timeoutMs. */
  waitConnected(timeoutMs = 30_000): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off("connected", on);
        reject(new Error(`peel ${this.id} did not connect within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = () => {
        clearTimeout(timer);
        resolve();
      };
      this.once("connected", on);
    });
  }

  /** Stops timers and the revision watch, ends jobs (waiting ones get a canceled return), drains. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.scheduler?.halt();
    this.live?.stop();
    this.beacons?.stop();
    this.drift?.stop();
    await this.basketPart?.stop();
    await this.events?.idle();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.factsTimer) clearTimeout(this.factsTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.outboxRetry) clearTimeout(this.outboxRetry);
    this.stopWatch?.();
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    await this.queue.close("peel stopping");
    // Returns of the jobs just ended are stored or in the outbox once `finishing` settles; a flush
    // in progress stops between entries and leaves the rest on disk for the next start.
    await Promise.allSettled([...this.finishing]);
    await this.scheduler?.idle();
    await this.outboxFlush?.catch(() => {});
    await this.syncing?.catch(() => {});
    await this.factsChain.catch(() => {});
    await this.jids.idle();
    // Gone, not silent: masters see the peel offline now instead of after the heartbeat TTL.
    if (this.busUp) await this.kv?.heartbeat.delete(this.id).catch(() => {});
    const nc = this.nc;
    this.kv = undefined;
    this.nc = undefined;
    if (nc && !nc.isClosed()) await closeWithin(nc, STOP_DRAIN_MS);
  }

  // ---- connection ------------------------------------------------------------------------------

  private async tryConnect(): Promise<void> {
    if (this.stopping) return;
    try {
      const nc = await connect({
        servers: this.cfg.servers,
        credsFile: this.cfg.credsFile,
        ...(this.cfg.caFile !== undefined ? { caFile: this.cfg.caFile } : {}),
        ...(this.cfg.authDir !== undefined ? { authDir: this.cfg.authDir } : {}),
        inboxPrefix: peelInboxPrefix(this.id),
        name: `zester-peel ${this.id}`,
      });
      if (this.stopping) {
        await nc.close();
        return;
      }
      await this.onConnected(nc);
    } catch (err) {
      if (this.stopping) return;
      const delay = this.cfg.connectRetryMs ?? 5_000;
      this.log.warn(
        `cannot connect to ${String(this.cfg.servers)}: ${errText(err)}; retrying in ${delay} ms`,
      );
      this.retryTimer = setTimeout(() => void this.tryConnect(), delay);
    }
  }

  private async onConnected(nc: NatsConnection): Promise<void> {
    this.nc = nc;
    this.subs.push(
      nc.subscribe(subjects.cmd(this.id), {
        callback: (err, msg) => {
          if (err) return;
          // A rejection here would end the process: one bad message must not stop the peel.
          this.onCommand(msg).catch((e: unknown) =>
            this.log.error(`command on ${msg.subject}: ${errText(e)}`),
          );
        },
      }),
      nc.subscribe(subjects.jobAnyCancel(this.id), {
        callback: (err, msg) => {
          if (err) return;
          try {
            this.onCancel(msg);
          } catch (e) {
            this.log.error(`cancel on ${msg.subject}: ${errText(e)}`);
          }
        },
      }),
    );
    const [facts, heartbeat, returns, states, settingsFiles, secrets, basket, queue] = await Promise.all([
      openKv(nc, "facts"),
      openKv(nc, "peel-heartbeat"),
      openKv(nc, "job-returns"),
      openKv(nc, "state-files"),
      openKv(nc, "settings-files"),
      openKv(nc, "secrets"),
      openKv(nc, "basket"),
      openKv(nc, "peel-queue"),
    ]);
    this.kv = { facts, heartbeat, returns, states, settingsFiles, secrets, basket, queue };
    this.busUp = true;
    await nc.flush();
    void this.watchStatus(nc);
    await this.watchRevision(states);
    await this.live
      ?.watch(settingsFiles)
      .catch((err: unknown) => this.log.warn(`settings watch: ${errText(err)}`));
    this.basketPart?.onConnected();
    void this.events?.flush();
    this.log.info(`connected to ${nc.getServer()}`);
    this.emit("connected");
    if (this.outbox.pending) void this.flushOutbox();
    void this.runQueued();
    await Promise.allSettled([this.beat(), this.refreshFacts({ force: true })]);
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") {
        this.busUp = false;
        this.log.warn("disconnected from NATS; reconnecting");
        this.emit("disconnected");
      } else if (s.type === "reconnect") {
        this.busUp = true;
        this.log.info("reconnected to NATS");
        this.emit("reconnected");
        void this.beat().catch(() => {});
        void this.refreshFacts().catch(() => {});
        void this.syncStates().catch(() => {});
        this.basketPart?.onConnected();
        void this.events?.flush();
        if (this.outbox.pending) void this.flushOutbox();
        void this.runQueued();
      } else if (s.type === "error") {
        this.log.error(`NATS: ${String((s as { error?: unknown }).error ?? s.type)}`);
      }
    }
  }

  // ---- facts and heartbeat ---------------------------------------------------------------------

  private async collect(): Promise<Facts> {
    const facts = await collectFacts({
      id: this.id,
      cache: this.factCache,
      ...(this.cfg.customFactsDir !== undefined ? { customDir: this.cfg.customFactsDir } : {}),
    });
    // The master seals secrets to this key; only this peel can write its own facts key.
    if (this.curve) facts.curve_pub = this.curve.getPublicKey();
    if (this.queueDenied) facts.peel_queue = PEEL_QUEUE_DENIED;
    this.facts = facts;
    return facts;
  }

  /**
   * Collects facts every `everyMs`, or as often as the shortest custom command-fact interval asks
   * (at least once a second), re-reading that interval after each collection.
   */
  private scheduleFacts(everyMs: number): void {
    const custom = this.factCache.shortestIntervalMs;
    const ms = Math.max(1000, Math.min(everyMs, custom ?? everyMs));
    this.factsTimer = setTimeout(() => {
      void this.refreshFacts()
        .catch(() => {})
        .finally(() => {
          if (!this.stopping) this.scheduleFacts(everyMs);
        });
    }, ms);
  }

  /** The latest collected facts (collected now if there are none yet). */
  async currentFacts(): Promise<Facts> {
    return this.facts ?? (await this.collect());
  }

  /**
   * Collects facts and puts them to KV when they differ from the last put (volatile values
   * ignored) or when `force`. Returns whether a put happened.
   */
  refreshFacts(opts: { force?: boolean } = {}): Promise<boolean> {
    const run = this.factsChain.then(async () => {
      const facts = await this.collect();
      const key = stableFactsKey(facts);
      if (!opts.force && key === this.publishedFactsKey) return false;
      const kv = this.kv;
      if (!kv) return false;
      try {
        const rev = await kv.facts.put(this.id, encode(facts));
        this.publishedFactsKey = key;
        this.emit("facts", { rev });
        return true;
      } catch (err) {
        this.log.warn(`cannot publish facts: ${errText(err)}`);
        return false;
      }
    });
    this.factsChain = run.catch(() => {});
    return run;
  }

  /** Puts the heartbeat once (no-op while disconnected). */
  async beat(): Promise<void> {
    const kv = this.kv;
    if (!kv) return;
    const hb: PeelHeartbeat = {
      peel: this.id,
      ts: new Date().toISOString(),
      version: this.version,
      busy: this.queue.busy,
    };
    const rev = await this.states.currentRev();
    if (rev !== undefined) hb.states_rev = rev;
    // Read after the await, right before the put: puts leave in order on one connection, so the
    // stored heartbeat never carries an older run than one an earlier put already carried.
    if (this.lastRun) hb.last_run = this.lastRun;
    // A beat that would land after stop() deleted the key would make a stopped peel look online.
    if (this.stopping) return;
    try {
      await kv.heartbeat.put(this.id, encode(hb));
      this.emit("heartbeat", hb);
    } catch (err) {
      this.log.warn(`cannot write heartbeat: ${errText(err)}`);
    }
  }

  // ---- state tree ------------------------------------------------------------------------------

  private async watchRevision(kv: KV): Promise<void> {
    const w = await kv.watch({ key: "revision" });
    this.stopWatch = () => w.stop();
    void (async () => {
      for await (const e of w) {
        if (e.operation !== "PUT") continue;
        try {
          this.requestSync(decode<StateRevision>(e.value));
        } catch (err) {
          this.log.warn(`ignoring an unreadable state revision: ${errText(err)}`);
        }
      }
    })().catch((err: unknown) => {
      if (!this.stopping) this.log.error(`state revision watch ended: ${errText(err)}`);
    });
  }

  /** Reads the published revision now and syncs to it. Resolves when the cache is settled. */
  async syncStates(): Promise<void> {
    const kv = this.kv;
    if (!kv) return;
    const e = await kv.states.get("revision");
    if (e && e.operation === "PUT") this.requestSync(decode<StateRevision>(e.value));
    await this.syncing;
  }

  /** Coalesces revisions: while one sync runs, only the newest requested one runs next. */
  private requestSync(rev: StateRevision): void {
    this.syncWanted = rev;
    this.syncing ??= (async () => {
      try {
        while (this.syncWanted && !this.stopping) {
          const want = this.syncWanted;
          this.syncWanted = undefined;
          await this.syncOnce(want);
        }
      } finally {
        this.syncing = undefined;
      }
    })();
  }

  /**
   * Makes sure the cache holds the revision a job was signed with (or a newer one): the revision
   * watch may not have delivered it yet when the command arrives right after a publish.
   */
  private async reachRevision(wanted: number): Promise<void> {
    if ((await this.states.currentRev()) === wanted) return;
    if (this.kv && this.busUp) await this.syncStates();
    const now = await this.states.currentRev();
    if (now !== undefined && now >= wanted) return;
    const why = !this.busUp ? "not connected to NATS" : (this.lastSyncError ?? "the sync did not reach it");
    throw new Error(
      `this job needs state tree revision ${wanted}, this peel has ${now ?? "none"} (${why}); nothing was applied`,
    );
  }

  private async syncOnce(rev: StateRevision): Promise<void> {
    const kv = this.kv;
    if (!kv) return;
    const source = async (key: string) => {
      const e = await kv.states.get(key);
      return e && e.operation === "PUT" ? e.value : undefined;
    };
    try {
      const r: SyncResult = await this.states.sync(source, rev);
      this.lastSyncError = undefined;
      if (r.changed) {
        this.log.info(`state tree now at revision ${r.rev} (${r.fetched} fetched, ${r.reused} reused)`);
        void this.beat().catch(() => {});
      }
      this.emit("states", r);
    } catch (err) {
      this.lastSyncError = `revision ${String(rev.rev)} rejected: ${errText(err)}`;
      this.log.error(`rejected state revision ${String(rev.rev)}: ${errText(err)}; keeping the current tree`);
      this.emit("states-rejected", { rev: rev.rev, reason: errText(err) });
    }
  }

  // ---- commands --------------------------------------------------------------------------------

  private refuse(subject: string, jid: unknown, reason: string): void {
    const j = typeof jid === "string" ? ` ${jid}` : "";
    this.log.warn(`refused command${j} on ${subject}: ${reason}`);
    this.emit("refused", { jid: typeof jid === "string" ? jid : undefined, reason });
  }

  /**
   * The one gate for a message that asks this peel to act (a job, a cancel): delivered on our
   * own subject (not relayed), readable, signed by a trusted master for this peel, fresh.
   * Anything else is refused (log line + `refused` event) and yields undefined.
   */
  private admit(
    msg: Msg,
    gate: {
      subject: string | ((s: string) => boolean);
      kind: "command" | "cancel";
      /** The job id from the subject, for a cancel: refusals name it. */
      jid?: string;
    },
  ): Command | undefined {
    const relayed = relayedReason(msg, gate.subject);
    if (relayed) {
      this.refuse(msg.subject, undefined, relayed);
      return undefined;
    }
    let cmd: Partial<Command>;
    try {
      cmd = decode<Partial<Command>>(msg.data);
    } catch (err) {
      const what = gate.kind === "cancel" ? "unreadable cancel" : "unreadable payload";
      this.refuse(msg.subject, gate.jid, `${what}: ${errText(err)}`);
      return undefined;
    }
    const verdict = verifyCommand(cmd, {
      trusted: this.trusted,
      peel: this.id,
      maxSkewMs: this.cfg.maxSkewMs ?? DEFAULT_MAX_SKEW_MS,
    });
    if (!verdict.ok) {
      if (gate.kind === "cancel") this.refuse(msg.subject, gate.jid, `cancel: ${verdict.reason}`);
      else this.refuse(msg.subject, cmd.jid, verdict.reason);
      return undefined;
    }
    // verifyCommand parsed it with commandSchema: every field has its type.
    return cmd as Command;
  }

  private async onCommand(msg: Msg): Promise<void> {
    const c = this.admit(msg, { subject: subjects.cmd(this.id), kind: "command" });
    if (!c) return;
    await this.accept(c, msg.subject);
  }

  /**
   * Commands a master kept for this peel while it was offline (`--queue`), read at every
   * (re)connect. Each is verified like a live one (signature, address, its queue window) and
   * runs once: one this peel already received (live, or at an earlier connect) is skipped.
   */
  private async runQueued(): Promise<void> {
    const kv = this.kv?.queue;
    if (!kv) return;
    let cmds: Command[];
    try {
      cmds = await readPeelQueue(kv, this.id);
    } catch (err) {
      if (!isPermissionDenied(err)) {
        this.log.warn(`cannot read the commands queued for this peel: ${errText(err)}`);
        return;
      }
      if (!this.queueDenied) {
        this.queueDenied = true;
        this.log.error(queueDeniedMessage(this.id, this.cfg.credsFile));
        void this.refreshFacts({ force: true }).catch(() => {});
      }
      return;
    }
    const where = `queue ${this.id}`;
    const ran: string[] = [];
    const skipped: string[] = [];
    for (const c of cmds) {
      if (typeof c?.jid === "string" && this.jids.has(c.jid)) {
        skipped.push(c.jid);
        continue;
      }
      const verdict = verifyCommand(c, {
        trusted: this.trusted,
        peel: this.id,
        maxSkewMs: this.cfg.maxSkewMs ?? DEFAULT_MAX_SKEW_MS,
      });
      if (!verdict.ok) {
        this.refuse(where, typeof c?.jid === "string" ? c.jid : undefined, verdict.reason);
        continue;
      }
      if (c.queue_until === undefined) {
        this.refuse(where, c.jid, "a command in the queue without a queue window");
        continue;
      }
      this.log.info(`job ${c.jid}: kept for this peel while it was offline`);
      ran.push(c.jid);
      // accept() claims the job id before its first await, so a second pass skips it.
      void this.accept(c, where).catch((err: unknown) =>
        this.log.error(`queued job ${c.jid}: ${errText(err)}`),
      );
    }
    // Started (ran) or already received before (skipped: never run twice).
    this.emit("queue", { ran, skipped });
  }

  /** Runs a verified command once: its job id is claimed (persisted for changing jobs) first. */
  private async accept(c: Command, subject: string): Promise<void> {
    if (!JID_PATTERN.test(c.jid)) {
      this.refuse(subject, undefined, `invalid job id ${JSON.stringify(c.jid)}`);
      return;
    }
    const { fresh, persisted } = this.jids.add(c.jid);
    if (!fresh) {
      this.refuse(subject, c.jid, "replayed command (this job id was already received)");
      return;
    }
    const readOnly = await isReadOnlyFunction(c.fun).catch(() => false);
    if (readOnly) {
      // A read-only call replayed after a crash could only answer again; waiting for the disk
      // (an fsync) before every test.ping is what would show. The id is still written.
      persisted.catch((err) => this.log.error(`cannot record job id ${c.jid}: ${errText(err)}`));
    } else {
      try {
        await persisted;
      } catch (err) {
        // Running a job whose id did not reach the disk would let a replay after restart run it again.
        this.refuse(subject, c.jid, `cannot record the job id: ${errText(err)}`);
        // The command is verified: its master learns why at once instead of waiting out the timeout.
        this.ack(c.jid, 0, "job");
        await this.finish(c.jid, c.fun, "job", new Date().toISOString(), {
          success: false,
          error: `not run: ${cacheDirMessage(this.cacheDir, err)}`,
        });
        return;
      }
    }
    const call: PeelCall = {
      fun: c.fun,
      args: Array.isArray(c.args) ? c.args : [],
      kwargs: c.kwargs && typeof c.kwargs === "object" && !Array.isArray(c.kwargs) ? c.kwargs : {},
      test: c.test === true,
    };
    this.log.info(`job ${c.jid}: ${c.fun}`);
    await this.dispatch(c.jid, call, "job", {
      readOnly,
      ...(typeof c.states_rev === "number" ? { statesRev: c.states_rev } : {}),
      ...(typeof c.event_depth === "number" ? { eventDepth: c.event_depth } : {}),
    });
  }

  /**
   * Read-only calls start at once; the others queue. The ack is published before the task can
   * publish its return (tasks always await before finishing), so the master sees ack first.
   */
  private async dispatch(
    jid: string,
    call: PeelCall,
    origin: "job" | "schedule",
    known: { readOnly?: boolean; statesRev?: number; eventDepth?: number } = {},
  ): Promise<PeelReturn> {
    const startedAt = new Date().toISOString();
    const readOnly = known.readOnly ?? (await isReadOnlyFunction(call.fun).catch(() => true));
    return new Promise<PeelReturn>((resolve) => {
      const finish = async (o: FunctionOutcome, started = startedAt, ran = false) => {
        const p = this.finish(jid, call.fun, origin, started, o, ran ? call : undefined);
        this.finishing.add(p);
        try {
          resolve(await p);
        } finally {
          this.finishing.delete(p);
        }
      };
      const task = async (signal: AbortSignal) => {
        const started = new Date().toISOString();
        if (!readOnly) this.changing++;
        let outcome: FunctionOutcome;
        try {
          outcome = await runPeelFunction(
            call,
            this.functionContext(signal, known.statesRev, jid, known.eventDepth),
          );
        } finally {
          if (!readOnly) {
            this.changing--;
            this.changedAt = Date.now();
          }
        }
        await finish(outcome, started, true);
      };
      if (readOnly) {
        this.ack(jid, 0, origin);
        this.queue.runConcurrent(jid, task);
        return;
      }
      const r = this.queue.submit(jid, task, (reason) => void finish({ success: false, error: reason }));
      if ("busy" in r) {
        this.ack(jid, r.busy, origin);
        void finish({ success: false, error: `busy: ${r.busy} jobs queued` });
      } else {
        this.ack(jid, r.position, origin);
      }
    });
  }

  private ack(jid: string, queued: number, origin: "job" | "schedule"): void {
    if (origin !== "job" || !this.nc) return;
    const ack: Ack = { jid, queued };
    this.nc.publish(subjects.jobAck(jid, this.id), encode(ack));
    this.emit("ack", ack);
  }

  private async finish(
    jid: string,
    fun: string,
    origin: "job" | "schedule",
    startedAt: string,
    o: FunctionOutcome,
    /** The call, when it ran (not refused busy or dropped while waiting). */
    ran?: PeelCall,
  ): Promise<PeelReturn> {
    const raw: PeelReturnWithSettings = {
      jid,
      peel: this.id,
      fun,
      success: o.success,
      origin,
      started_at: startedAt,
      finished_at: new Date().toISOString(),
    };
    if (o.return !== undefined) raw.return = o.return;
    if (o.results !== undefined) raw.results = o.results;
    if (o.summary !== undefined) raw.summary = o.summary;
    if (o.error !== undefined) raw.error = o.error;
    if (o.settings_source !== undefined) raw.settings_source = o.settings_source;
    if (o.settings_warning !== undefined) raw.settings_warning = o.settings_warning;
    if (o.revert !== undefined) raw.revert = o.revert;
    if (o.settings_source === "snapshot")
      this.log.warn(`job ${jid}: ${o.settings_warning ?? "settings from snapshot"}`);
    // Before anything stores, publishes or emits it: results, diffs, comments, show_sls output.
    const ret = this.settingsStore ? this.settingsStore.masked(raw) : raw;
    const kv = this.kv;
    const nc = this.nc;
    // While disconnected a put would only wait for its timeout: the outbox keeps the return.
    if (kv && nc && this.busUp) {
      // KV first, and published only once stored: the master takes the stored copy as the job's
      // return of record (it writes none of its own), so whoever sees the final record finds it.
      // A put that fails goes to the outbox, whose flush stores, then publishes.
      const data = encode(ret);
      let stored = false;
      try {
        await kv.returns.put(`${jid}.${this.id}`, data);
        stored = true;
      } catch (err) {
        this.log.error(`cannot store the return of job ${jid}: ${errText(err)}`);
        await this.keepReturn(ret);
        this.retryOutboxSoon();
      }
      if (stored && origin === "job") nc.publish(subjects.jobReturn(jid, this.id), data);
    } else {
      await this.keepReturn(ret);
    }
    if (ran) this.noteStateRun(ret, ran);
    if (ran && STATE_RUNS.has(ran.fun) && !isTestCall(ran) && ran.only === undefined)
      void this.drift?.afterRun(slsRefs(ran)).catch(() => {});
    this.log.info(`job ${jid}: ${fun} ${ret.success ? "succeeded" : `failed: ${firstLine(ret.error)}`}`);
    this.emit("return", ret);
    return ret;
  }

  /**
   * Remembers a finished state run (see PeelLastRun for what counts) for the heartbeats. While
   * disconnected the heartbeat after the reconnect carries it.
   */
  private noteStateRun(ret: PeelReturn, call: PeelCall): void {
    if (!STATE_RUNS.has(call.fun)) return;
    const run: PeelLastRun = {
      jid: ret.jid,
      origin: ret.origin ?? "job",
      fun: call.fun,
      test: isTestCall(call),
      finished_at: ret.finished_at,
      success: ret.success,
      changed: ret.summary?.changed ?? 0,
      failed: ret.summary?.failed ?? 0,
      total: ret.summary?.total ?? ret.results?.length ?? 0,
      pending: pendingCount(ret.results),
    };
    if (ret.error !== undefined) run.error = firstLine(ret.error).slice(0, LAST_RUN_ERROR_MAX);
    this.lastRun = run;
    // A job's own return already tells the operator, and the next heartbeat (≤ 10 s) carries the
    // run; an enforcement run has no other messenger, so it is announced at once.
    if (run.origin === "schedule" && this.busUp) void this.beat().catch(() => {});
  }

  /** Puts a (masked) return in the outbox; a failure here is the one case a return is lost. */
  private async keepReturn(ret: PeelReturn): Promise<void> {
    try {
      await this.outbox.add(ret);
      this.log.warn(`job ${ret.jid}: return kept in the outbox until NATS takes it`);
      this.emit("outbox", { jid: ret.jid });
    } catch (err) {
      this.log.error(`job ${ret.jid}: the return is lost, the outbox cannot keep it: ${errText(err)}`);
    }
  }

  /**
   * Stores kept returns in jid (time) order: KV first, then, for jobs, the return subject so a
   * master still following the job hears it. Flushes never overlap; a request during one runs
   * another pass after it (a reconnect while the previous attempt was failing).
   */
  private flushOutbox(): Promise<void> {
    if (this.outboxFlush) {
      this.outboxAgain = true;
      return this.outboxFlush;
    }
    const run = (async () => {
      do {
        this.outboxAgain = false;
        if (this.stopping || !this.connected || !this.busUp) return;
        const r = await this.outbox.flush(
          async (ret) => {
            const kv = this.kv;
            const nc = this.nc;
            if (!kv || !nc || !this.busUp) throw new Error("not connected to NATS");
            await kv.returns.put(`${ret.jid}.${this.id}`, encode(ret));
            if (ret.origin === "job") nc.publish(subjects.jobReturn(ret.jid, this.id), encode(ret));
          },
          () => this.stopping,
        );
        if (r.sent > 0 || r.bad > 0) {
          this.log.info(
            `outbox: stored ${r.sent} kept return(s)${r.bad > 0 ? `, ${r.bad} unreadable moved aside` : ""}` +
              (r.left > 0 ? `; ${r.left} still waiting` : ""),
          );
          this.emit("outbox-flushed", { count: r.sent, bad: r.bad, left: r.left });
        }
        if (r.error === undefined) this.outboxBackoff.reset();
        else if (!this.stopping) {
          const ms = this.retryOutboxSoon();
          this.log.warn(`outbox: ${r.left} return(s) still waiting (${r.error}); retrying in ${ms} ms`);
        }
      } while (this.outboxAgain && !this.stopping);
    })()
      .catch((err: unknown) => this.log.error(`outbox flush failed: ${errText(err)}`))
      .finally(() => {
        this.outboxFlush = undefined;
      });
    this.outboxFlush = run;
    return run;
  }

  /** Arms one flush retry on the backoff; returns its delay. */
  private retryOutboxSoon(): number {
    const ms = this.outboxBackoff.next();
    if (this.outboxRetry || this.stopping) return ms;
    this.outboxRetry = setTimeout(() => {
      this.outboxRetry = undefined;
      if (this.outbox.pending) void this.flushOutbox();
    }, ms);
    return ms;
  }

  private onCancel(msg: Msg): void {
    // zester.job.<jid>.cancel.<peel>: a signed cancel for that very job, or nothing happens.
    const jid = msg.subject.split(".")[2] ?? "";
    const cmd = this.admit(msg, {
      subject: (s) => {
        const p = s.split(".");
        return p.length === 5 && `${p[0]}.${p[1]}.*.${p[3]}.${p[4]}` === subjects.jobAnyCancel(this.id);
      },
      kind: "cancel",
      jid,
    });
    if (!cmd) return;
    if (cmd.fun !== CANCEL_FUNCTION || cmd.jid !== jid) {
      this.refuse(msg.subject, jid, "cancel does not match its subject");
      return;
    }
    if (this.queue.cancel(jid, "canceled")) {
      this.log.info(`job ${jid}: cancel requested`);
      this.emit("canceled", { jid });
    } else {
      this.log.info(`job ${jid}: cancel for a job that is not running here`);
    }
  }

  private functionContext(
    signal: AbortSignal,
    statesRev?: number,
    jid?: string,
    eventDepth?: number,
  ): PeelFunctionContext {
    return {
      peelId: this.id,
      ...(jid !== undefined ? { jid } : {}),
      ...(eventDepth ? { eventDepth } : {}),
      revertDir: join(this.cacheDir, "revert"),
      statesDir: async () => {
        if (statesRev !== undefined) await this.reachRevision(statesRev);
        return this.states.currentDir();
      },
      emptyStatesDir: join(this.cacheDir, "empty"),
      facts: () => this.currentFacts(),
      refreshFacts: async () => {
        this.factCache.expire();
        await this.refreshFacts({ force: true });
      },
      settings: () => this.settings.resolve(),
      lastSettings: () => this.settings.lastKnown(),
      compileCacheDir: join(this.cacheDir, "compile"),
      bus: () => this.nc,
      signal,
      ...(this.basketPart ? { basket: this.basketPart.reader } : {}),
      ...(this.beacons ? { beacons: () => this.beacons?.list() ?? [] } : {}),
    };
  }

  /** The compiled program of a run target from the cached tree and the last settings (watch_drift). */
  private async compileCached(refs: string[]) {
    const dir = await this.states.currentDir();
    if (dir === undefined) throw new Error("no state tree cached");
    const { compileTarget } = await import("../state/engine.js");
    return compileTarget(refs.length === 0 ? { kind: "highstate" } : { kind: "sls", refs }, {
      statesDir: dir,
      settings: await this.settings.lastKnown(),
      facts: () => this.currentFacts(),
      peelId: this.id,
      cacheDir: join(this.cacheDir, "compile"),
    });
  }

  /**
   * Re-applies drifted states from the cache, queued like any state run and stored like a
   * scheduled one; then a `drift/repaired` event tells what drifted and what the repair did.
   */
  private async repairDrift(r: DriftRepair): Promise<void> {
    const ret = await this.dispatch(
      newKsuid(),
      { fun: "state.apply", args: r.refs, kwargs: {}, test: false, only: r.states },
      "schedule",
    );
    this.emit("drift", { ...r, ret });
    const ev = makeEvent({
      origin: this.id,
      tag: "drift/repaired",
      data: {
        jid: ret.jid,
        success: ret.success,
        states: r.states,
        resources: r.resources.map((x) => ({ kind: x.kind, resource: x.resource })),
        changed: ret.summary?.changed ?? 0,
        failed: ret.summary?.failed ?? 0,
        detected_at: new Date(r.detectedAt).toISOString(),
        repaired_in_ms: Date.now() - r.detectedAt,
        ...(ret.error !== undefined ? { error: ret.error } : {}),
      },
    });
    void this.events?.send(ev);
  }

  /** Basket and beacons: configured from the snapshot now, from each new settings revision later. */
  private async startLiveParts(): Promise<void> {
    const live = new LiveSettings({
      resolve: () => this.settings.resolveInBackground(),
      lastKnown: () => this.settings.lastKnown(),
      log: this.log,
    });
    const basket = new PeelBasket({
      peel: this.id,
      log: this.log,
      buckets: () => (this.kv && this.busUp ? { basket: this.kv.basket, facts: this.kv.facts } : undefined),
      context: async () => {
        const facts = await this.currentFacts();
        return {
          test: false,
          id: "basket",
          facts,
          settings: await this.settings.lastKnown(),
          render: async (t) => t,
        };
      },
      onWrite: (fn) => this.emit("basket", { function: fn }),
    });
    const events = new EventSender({
      peel: this.id,
      dir: join(this.cacheDir, "events"),
      log: this.log,
      connection: () => (this.nc && this.busUp ? this.nc : undefined),
      ...(this.cfg.eventBufferLimit !== undefined ? { limit: this.cfg.eventBufferLimit } : {}),
    });
    const kept = await events.init();
    if (kept > 0)
      this.log.info(`event buffer: ${kept} event(s) from before the restart wait for a connection`);
    const beacons = new BeaconRunner({
      ctx: { peel: this.id, facts: () => this.currentFacts() },
      log: this.log,
      // A change a job makes is seen by watchers a moment after the job ends: that is the job's too.
      changingMachine: () => this.changing > 0 || Date.now() - this.changedAt < MACHINE_SETTLE_MS,
      emit: (name, data) => {
        const ev = makeEvent({ origin: this.id, tag: `beacon/${this.id}/${name}`, data });
        this.emit("beacon", ev);
        void events.send(ev);
      },
    });
    this.drift = new DriftWatcher({
      file: join(this.cacheDir, "drift.json"),
      log: this.log,
      changingMachine: () => this.changing > 0,
      compile: (refs) => this.compileCached(refs),
      serviceRunning: async (name) =>
        (await import("../modules/service.js"))
          .serviceBackend({ facts: await this.currentFacts() })
          .then((b) => b.running(name)),
      repair: (r) => this.repairDrift(r),
    });
    await this.drift.init();
    live.onChange((s) => basket.configure(s));
    live.onChange((s) => beacons.configure(s));
    this.live = live;
    this.basketPart = basket;
    this.events = events;
    this.beacons = beacons;
    await live.init();
  }

  /**
   * Applies states from the local cache, with or without a connection (the scheduler's entry
   * point). Goes through the same queue as jobs; the return is stored, through the outbox when
   * the peel is disconnected.
   */
  applyLocal(opts: { sls?: string[]; test?: boolean } = {}): Promise<PeelReturn> {
    const call: PeelCall = {
      fun: opts.sls && opts.sls.length > 0 ? "state.apply" : "state.highstate",
      args: opts.sls ?? [],
      kwargs: {},
      test: opts.test === true,
    };
    return this.dispatch(newKsuid(), call, "schedule");
  }
}

/** State runs of the tree, the ones a heartbeat reports (see PeelLastRun). */
const STATE_RUNS: ReadonlySet<string> = new Set([
  "state.apply",
  "state.highstate",
  "state.sls",
  "state.test",
]);
const LAST_RUN_ERROR_MAX = 200;
/** How long after a mutating job its own file and service changes may still arrive. */
const MACHINE_SETTLE_MS = 1_000;

function isTestCall(call: PeelCall): boolean {
  return call.fun === "state.test" || wantsTest(call);
}

function firstLine(s: string | undefined): string {
  return (s ?? "").split("\n")[0] ?? "";
}

async function peelVersion(): Promise<string> {
  const { resolveExec } = await import("../modules/index.js");
  const r = await resolveExec("test.version");
  if (!r.ok) return "unknown";
  return String(
    await r.fn.run({}, { test: false, id: "version", facts: {}, settings: {}, render: async (t) => t }),
  );
}
