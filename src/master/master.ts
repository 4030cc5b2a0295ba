/**
 * The control plane as a library: `new Master(cfg).start()`. Several masters may run against one
 * server (or in one process): request services are shared through a queue group, state
 * publishing is guarded by an advisory lease, and nothing here is module-level state.
 */
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import type { KeyPair } from "@nats-io/nkeys";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { publicNkeyOf } from "../auth/ed25519.js";
import { keyPairFromCreds } from "../auth/signing.js";
import { bootstrap, openKv } from "../bus/bootstrap.js";
import { decodeAs, encode } from "../bus/codec.js";
import { connect, DEFAULT_AUTH_DIR } from "../bus/connect.js";
import { PEEL_HEARTBEAT_TTL_MS, subjects } from "../bus/names.js";
import { describeReplicas, type ReplicasSetting } from "../bus/replicas.js";
import { nonNegInt, object, relayedReason, str } from "../bus/validate.js";
import type { EnrollmentService } from "../enroll/service.js";
import { emitMasterEvent, masterTags } from "../events/master-events.js";
import { PresenceAnnouncer } from "../events/presence.js";
import { JobStore } from "../jobs/store.js";
import type { ReactorOptions } from "../reactor/reactor.js";
import type { ReactorService } from "../reactor/service.js";
import { loadMasterCurve, MASTER_CURVE_FILES } from "../settings/keys.js";
import { DEFAULT_SETTINGS_DIR } from "../settings/source.js";
import { Coalescer } from "../util/coalesce.js";
import { errText } from "../util/errors.js";
import { isENOENT } from "../util/files.js";
import { Dispatcher, KILL_SUBJECT, MASTER_QUEUE } from "./dispatcher.js";
import { FleetView } from "./fleet-view.js";
import { followReconnects, LateReturnCorrector } from "./late-returns.js";
import { LEASE_RENEW_MS, Lease, LeasedPublisher, watchLeaseReleases } from "./lease.js";
import { MASTER_BEAT_MS, MASTER_DEAD_AFTER_MS, ORPHAN_SWEEP_MS } from "./liveness.js";
import {
  SETTINGS_PUBLISH_SUBJECT,
  SETTINGS_PUBLISHER_LEASE,
  SettingsPublisher,
  type SettingsPublishSummary,
  SettingsView,
} from "./settings.js";
import { StatePublisher, type StatePublishResult } from "./state-publisher.js";

export const DEFAULT_STATES_DIR = "/srv/zester/states";
export const STATES_PUBLISH_SUBJECT = subjects.admin("states.publish");
export const STATE_PUBLISHER_LEASE = "state-publisher";
/** Bound on publishing before a job; the CLI waits 15 s for the dispatch reply. */
const FRESH_TREES_MS = 8_000;
const MASTER_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
/** The lease holder's answer to a publish request (answerPublish), checked before use. */
const PUBLISH_REPLY = object({}, { rev: nonNegInt, error: str });

export interface MasterConfig {
  /** Unique per running master; default `<hostname>-<pid>` (dots become `_`: it is a KV key). */
  id?: string;
  servers: string | string[];
  credsFile: string;
  caFile?: string;
  authDir?: string;
  statesDir?: string;
  /** The operator's settings tree (default /srv/zester/settings). */
  settingsDir?: string;
  /** A peel with no heartbeat that has not acked within this is unreachable (default 10 s). */
  unreachableAfterMs?: number;
  /** Job timeout when a request names none (default 60 s). */
  defaultTimeoutS?: number;
  /** How often the states dir is re-published (default 30 s). */
  publishIntervalMs?: number;
  /** How often the settings dir is re-published (default: publishIntervalMs). */
  settingsPublishIntervalMs?: number;
  /** How often the lease is renewed and retried (default a third of the lease TTL). */
  leaseRenewMs?: number;
  log?: (msg: string) => void;
  /**
   * Seconds a job's command is kept for peels that are offline when it is sent, for jobs that
   * name no `queue_ttl_s` (default 0: not kept, as Salt).
   */
  queueTtlS?: number;
  /** `N@name` in targets: name → target expression (Salt's nodegroups). */
  nodegroups?: Readonly<Record<string, string>>;
  /** The reactor dir published to `reactor-files` (default /srv/zester/reactor). */
  reactorDir?: string;
  /** Reactor limits (src/reactor/protection.ts, reactor.ts); `false` runs no reactor on this master. */
  reactor?: ReactorOptions | false;
  /**
   * Announce each return as the event `_master/job/<jid>/ret/<peel>` (default off: a JetStream
   * write and a reactor delivery per peel per job; `job/<jid>/done` carries every peel's status).
   */
  jobReturnEvents?: boolean;
  /** Copies of every bucket and stream (src/bus/replicas.ts); default `auto`. */
  replicas?: ReplicasSetting;
  /**
   * HTTPS enrollment listener (src/enroll); absent = no enrollment on this master. Needs the
   * account and operator signing seeds in the auth dir.
   */
  enroll?: {
    host?: string;
    port?: number;
    certFile?: string;
    keyFile?: string;
    /** See EnrollmentServiceOptions (docs/enrollment.md, "Limits and clean-up"). */
    maxPending?: number;
    requestsPerMinute?: number;
  };
}

/** `master-heartbeat` KV `<master-id>`. */
export interface MasterHeartbeat {
  master: string;
  /** The public nkey this master signs commands with. */
  nkey: string;
  ts: string;
}

export function defaultMasterId(): string {
  return `${hostname().replace(/[^A-Za-z0-9_-]/g, "_")}-${process.pid}`;
}

/**
 * What a started master holds. It exists from the end of start()'s build phase on, so methods
 * take their parts from here instead of guarding a dozen fields typed `| undefined`.
 */
interface Running {
  nc: NatsConnection;
  signer: KeyPair;
  heartbeats: KV;
  fleet: FleetView;
  settingsView: SettingsView;
  dispatcher: Dispatcher;
  states: LeasedPublisher<StatePublishResult>;
  settingsPublisher: SettingsPublisher;
  settings: LeasedPublisher<SettingsPublishSummary>;
  enrollment: EnrollmentService | undefined;
  reactor: ReactorService | undefined;
  leases: KV;
  store: JobStore;
}

export class Master {
  readonly id: string;
  private readonly cfg: MasterConfig;
  private readonly log: (msg: string) => void;
  private running: Running | undefined;
  /** What stop() undoes, last acquired first; start() pushes each part as it comes up. */
  private readonly teardown: Array<() => unknown> = [];
  private stopped = false;

  constructor(cfg: MasterConfig) {
    this.cfg = cfg;
    this.id = cfg.id ?? defaultMasterId();
    if (!MASTER_ID.test(this.id)) {
      throw new Error(`invalid master id ${JSON.stringify(this.id)}: use A-Z a-z 0-9 _ - (it is a KV key)`);
    }
    this.log = cfg.log ?? ((m) => process.stderr.write(`zester-master ${this.id}: ${m}\n`));
  }

  private get started(): Running {
    if (!this.running) throw new Error("master is not started");
    return this.running;
  }

  get connection(): NatsConnection {
    return this.started.nc;
  }

  get fleet(): FleetView {
    return this.started.fleet;
  }

  /** Public nkey commands are signed with: peels must list it among their trusted masters. */
  get publicKey(): string {
    return publicNkeyOf(this.started.signer);
  }

  /** Port of the HTTPS enrollment listener, when this master runs one. */
  get enrollPort(): number | undefined {
    return this.running?.enrollment?.port;
  }

  /** True while this master holds the state-publisher lease. */
  get isStatePublisher(): boolean {
    return this.running?.states.held ?? false;
  }

  /** True while this master holds the settings-publisher lease. */
  get isSettingsPublisher(): boolean {
    return this.running?.settings.held ?? false;
  }

  /** Resolves once the TargetIndex reflects the settings published so far (tests, tools). */
  async settingsSettled(): Promise<void> {
    await this.running?.settingsView.idle();
  }

  /** The reactor on this master (undefined when it runs none). */
  get reactor(): ReactorService | undefined {
    return this.running?.reactor;
  }

  /** Jids of jobs this master is following right now. */
  get trackedJobs(): string[] {
    return this.running?.dispatcher.activeJobs ?? [];
  }

  /**
   * Two phases: build every part (nothing can call back into this master yet), then serve
   * (subscriptions, timers, first publishes). A failure in either stops what came up.
   */
  async start(): Promise<void> {
    try {
      this.running = await this.build();
      await this.serveAll(this.running);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private onStop(undo: () => unknown): void {
    this.teardown.push(undo);
  }

  private every(ms: number, tick: () => void): void {
    const t = setInterval(tick, ms);
    this.onStop(() => clearInterval(t));
  }

  /** Connects, opens the buckets and constructs the parts; subscribes to nothing. */
  private async build(): Promise<Running> {
    const cfg = this.cfg;
    const signer = keyPairFromCreds(await readFile(cfg.credsFile, "utf8"));
    const nc = await connect({
      servers: cfg.servers,
      credsFile: cfg.credsFile,
      ...(cfg.caFile !== undefined ? { caFile: cfg.caFile } : {}),
      ...(cfg.authDir !== undefined ? { authDir: cfg.authDir } : {}),
      name: `zester-master ${this.id}`,
    });
    this.onStop(() => (nc.isClosed() ? undefined : nc.drain()));
    for (const line of describeReplicas(await bootstrap(nc, { replicas: cfg.replicas ?? "auto" })))
      this.log(line);
    const [facts, peelBeats, heartbeats, leases, stateFiles, settingsFiles, secrets, store] =
      await Promise.all([
        openKv(nc, "facts"),
        openKv(nc, "peel-heartbeat"),
        openKv(nc, "master-heartbeat"),
        openKv(nc, "leases"),
        openKv(nc, "state-files"),
        openKv(nc, "settings-files"),
        openKv(nc, "secrets"),
        JobStore.open(nc),
      ]);
    this.onStop(() => heartbeats.delete(this.id));
    await this.beat(heartbeats, signer);
    this.every(MASTER_BEAT_MS, () => void this.beat(heartbeats, signer));

    const fleet = new FleetView({
      log: this.log,
      ...(cfg.nodegroups ? { nodegroups: cfg.nodegroups } : {}),
    });
    this.onStop(() => fleet.stop());
    await fleet.start(facts, peelBeats);
    const settingsView = new SettingsView(settingsFiles, fleet, this.log);
    this.onStop(() => settingsView.stop());
    await settingsView.start();

    const statePublisher = new StatePublisher(
      stateFiles,
      cfg.statesDir ?? DEFAULT_STATES_DIR,
      this.id,
      this.log,
      cfg.nodegroups,
    );
    const states = new LeasedPublisher(
      "state",
      new Lease(leases, STATE_PUBLISHER_LEASE, this.id),
      () => statePublisher.publish().then((r) => this.announce(nc, "states", r)),
      this.log,
      () => this.stopped,
    );
    this.onStop(() => states.stop());

    const authDir = cfg.authDir ?? DEFAULT_AUTH_DIR;
    const curvePath = join(authDir, MASTER_CURVE_FILES.seed);
    const masterCurve = await loadMasterCurve(authDir).catch((err: unknown) => {
      // Missing is a supported set-up (no secrets yet); a damaged seed is not.
      if (isENOENT(err)) return undefined;
      throw err;
    });
    if (!masterCurve) {
      this.log(
        `no master curve key at ${curvePath}: secrets will not be sealed for peels ` +
          "(settings are still published, without their encrypted values)",
      );
    }
    const settingsPublisher = new SettingsPublisher({
      files: settingsFiles,
      secrets,
      dir: cfg.settingsDir ?? DEFAULT_SETTINGS_DIR,
      masterId: this.id,
      masterCurve,
      masterCurvePath: curvePath,
      fleet,
      log: this.log,
    });
    const settings = new LeasedPublisher(
      "settings",
      new Lease(leases, SETTINGS_PUBLISHER_LEASE, this.id),
      () => settingsPublisher.publish().then((r) => this.announce(nc, "settings", r)),
      this.log,
      () => this.stopped,
    );
    this.onStop(() => settings.stop());

    const dispatcher = new Dispatcher({
      nc,
      store,
      fleet,
      signer,
      masterId: this.id,
      unreachableAfterMs: cfg.unreachableAfterMs ?? 10_000,
      defaultTimeoutS: cfg.defaultTimeoutS ?? 60,
      returnEvents: cfg.jobReturnEvents === true,
      defaultQueueTtlS: cfg.queueTtlS ?? 0,
      queue: await openKv(nc, "peel-queue"),
      isMasterAlive: (id, withinMs) => this.isMasterAlive(heartbeats, id, withinMs),
      freshTrees: () => this.freshTrees(),
      log: this.log,
    });
    this.onStop(() => dispatcher.stop());

    let enrollment: EnrollmentService | undefined;
    if (cfg.enroll) {
      const { EnrollmentService } = await import("../enroll/service.js");
      enrollment = new EnrollmentService({
        nc,
        authDir,
        servers: cfg.servers,
        ...(cfg.caFile !== undefined ? { caFile: cfg.caFile } : {}),
        ...cfg.enroll,
        logger: { info: this.log, warn: this.log, error: this.log },
      });
    }
    let reactor: ReactorService | undefined;
    if (cfg.reactor !== false) {
      const { ReactorService } = await import("../reactor/service.js");
      reactor = new ReactorService({
        nc,
        masterId: this.id,
        reactorFiles: await openKv(nc, "reactor-files"),
        reactorLimits: await openKv(nc, "reactor-limits"),
        leases,
        ...(cfg.reactorDir !== undefined ? { dir: cfg.reactorDir } : {}),
        ...(cfg.reactor !== undefined ? { options: cfg.reactor } : {}),
        log: this.log,
        stopped: () => this.stopped,
        dispatch: (req, opts) => dispatcher.dispatch(req, opts),
      });
    }
    return {
      nc,
      signer,
      heartbeats,
      fleet,
      settingsView,
      dispatcher,
      states,
      settingsPublisher,
      settings,
      enrollment,
      reactor,
      leases,
      store,
    };
  }

  /** Subscriptions, timers, listeners and the first publishes: from here on others reach us. */
  private async serveAll(r: Running): Promise<void> {
    const cfg = this.cfg;
    const { nc, dispatcher: d } = r;
    this.startPresence(nc, r.fleet);
    void followReconnects(nc, () => d.catchUp());
    this.serve(nc, subjects.targetResolve, (m) => d.handleResolve(m), MASTER_QUEUE);
    this.serve(nc, subjects.dispatch, (m) => d.handleDispatch(m), MASTER_QUEUE);
    this.serve(nc, KILL_SUBJECT, (m) => d.handleKill(m));
    const lateReturns = new LateReturnCorrector({
      nc,
      store: r.store,
      queue: MASTER_QUEUE,
      follows: (jid) => d.follows(jid),
      log: this.log,
    });
    this.onStop(() => lateReturns.stop());
    lateReturns.start();
    this.serve(nc, STATES_PUBLISH_SUBJECT, (m) => this.answerPublish(m, () => this.publishStates()));
    this.serve(nc, SETTINGS_PUBLISH_SUBJECT, (m) => this.answerPublish(m, () => this.publishSettings()));
    await this.sweepOrphanJobs();
    this.every(ORPHAN_SWEEP_MS, () => void this.sweepOrphanJobs());
    const enrollment = r.enrollment;
    if (enrollment && cfg.enroll) {
      this.onStop(() => enrollment.stop());
      await enrollment.start();
      this.log(`enrollment listening on https://${cfg.enroll.host ?? "0.0.0.0"}:${enrollment.port}`);
    }
    await this.publishStates().catch((err) => this.log(`publishing states failed: ${errText(err)}`));
    const reactor = r.reactor;
    if (reactor) {
      this.onStop(() => reactor.stop());
      await reactor.start();
      this.every(
        cfg.publishIntervalMs ?? 30_000,
        () =>
          void reactor
            .publish()
            .catch((err) => this.log(`publishing the reactor dir failed: ${errText(err)}`)),
      );
    }
    this.onStop(r.fleet.onFacts((id, f) => this.onPeelFacts(id, f)));
    // A master that stops cleanly deletes its leases: take them now, not at the next retry.
    this.onStop(await watchLeaseReleases(r.leases, () => void this.renewLeases()));
    const publishSettings = () =>
      this.publishSettings().catch((err) => this.log(`publishing settings failed: ${errText(err)}`));
    await publishSettings();
    this.every(
      cfg.settingsPublishIntervalMs ?? cfg.publishIntervalMs ?? 30_000,
      () => void publishSettings(),
    );
    this.every(cfg.leaseRenewMs ?? LEASE_RENEW_MS, () => void this.renewLeases());
    this.every(
      cfg.publishIntervalMs ?? 30_000,
      () => void this.publishStates().catch((err) => this.log(`publishing states failed: ${errText(err)}`)),
    );
  }

  /**
   * Publishes the states dir if this master holds (or can take) the publisher lease. Returns
   * undefined when another master holds it. Calls are serialised.
   */
  publishStates(): Promise<StatePublishResult | undefined> {
    return this.running?.states.publish() ?? Promise.resolve(undefined);
  }

  /**
   * Publishes the settings dir and seals peels' secrets if this master holds (or can take) the
   * settings-publisher lease; undefined when another master holds it. Calls are serialised.
   */
  publishSettings(): Promise<SettingsPublishSummary | undefined> {
    return this.running?.settings.publish() ?? Promise.resolve(undefined);
  }

  /** The lease holder re-seals a peel whose facts changed (new curve key, new top.zy match). */
  private onPeelFacts(id: string, facts: Record<string, unknown> | undefined): void {
    const r = this.running;
    if (!r?.settings.held) return;
    const publisher = r.settingsPublisher;
    r.settings.enqueue(() => (facts ? publisher.sealPeel(id, facts) : publisher.forgetPeel(id)));
  }

  /** Finishes jobs whose master is gone and whose deadline has long passed; returns their jids. */
  async sweepOrphanJobs(graceMs?: number): Promise<string[]> {
    const d = this.running?.dispatcher;
    if (!d || this.stopped) return [];
    try {
      return await d.sweepOrphans(graceMs);
    } catch (err) {
      this.log(`sweeping orphaned jobs failed: ${errText(err)}`);
      return [];
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Last acquired first: timers and subscriptions, then the parts, the connection last.
    for (const undo of this.teardown.splice(0).reverse()) {
      try {
        await undo();
      } catch (err) {
        this.log(`stopping: ${errText(err)}`);
      }
    }
  }

  private serve(
    nc: NatsConnection,
    subject: string,
    handler: (m: Msg) => void | Promise<void>,
    queue?: string,
  ): void {
    const sub: Subscription = nc.subscribe(subject, {
      ...(queue !== undefined ? { queue } : {}),
      callback: (err, msg) => {
        if (err) {
          this.log(`subscription ${subject}: ${err.message}`);
          return;
        }
        const relayed = relayedReason(msg, subject);
        if (relayed) return this.log(`${subject}: ignored: ${relayed}`);
        Promise.resolve()
          .then(() => handler(msg))
          .catch((e: unknown) => {
            this.log(`${subject}: ${errText(e)}`);
            if (msg.reply) msg.respond(encode({ error: `master ${this.id}: ${errText(e)}` }));
          });
      },
    });
    this.onStop(() => sub.unsubscribe());
  }

  /**
   * Publishes (or has the lease holder publish) both trees, so a job dispatched right after an
   * edit runs the edit, as an operator coming from Salt's on-demand file server expects. Never
   * fails the job: past FRESH_TREES_MS, or on error, the job goes out with what is live, and
   * the log says why. Resolves with the live state revision to pin (undefined: none).
   */
  async freshTrees(): Promise<number | undefined> {
    const settings = this.freshSettings.run();
    const states = await this.freshStates.run();
    await settings;
    return states !== undefined && states > 0 ? states : undefined;
  }

  // A burst of state jobs shares one scan of each tree instead of queueing one scan per job.
  private readonly freshStates = new Coalescer(() =>
    this.freshTree("states", () => this.publishStates(), STATES_PUBLISH_SUBJECT),
  );
  private readonly freshSettings = new Coalescer(() =>
    this.freshTree("settings", () => this.publishSettings(), SETTINGS_PUBLISH_SUBJECT),
  );

  private async freshTree(
    what: string,
    publishHere: () => Promise<{ rev: number } | undefined>,
    subject: string,
  ): Promise<number | undefined> {
    const nc = this.running?.nc;
    const attempt = async (): Promise<number | undefined> => {
      const mine = await publishHere();
      if (mine) return mine.rev;
      if (!nc) return undefined;
      // Another master holds the lease: every master hears this, only the holder answers.
      const reply = decodeAs(
        PUBLISH_REPLY,
        (await nc.request(subject, encode({}), { timeout: FRESH_TREES_MS })).data,
      );
      if (reply.error !== undefined) throw new Error(reply.error);
      return reply.rev;
    };
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        attempt(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${FRESH_TREES_MS} ms`)),
            FRESH_TREES_MS,
          );
        }),
      ]);
    } catch (err) {
      this.log(
        `warning: could not publish the ${what} tree before a job (${errText(err)}); the job uses the live one`,
      );
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Every master hears a publish request; only the lease holder publishes and answers. */
  private async answerPublish(msg: Msg, publish: () => Promise<object | undefined>): Promise<void> {
    const result = await publish();
    if (result === undefined) return;
    msg.respond(encode({ master: this.id, ...result }));
  }

  /** `_master/peel/<id>/online|offline` from the heartbeats (src/events/presence.ts). */
  private startPresence(nc: NatsConnection, fleet: FleetView): void {
    const presence = new PresenceAnnouncer(nc, this.id, PEEL_HEARTBEAT_TTL_MS);
    this.onStop(() => presence.stop());
    this.onStop(fleet.onBeats((peel, at, rev) => presence.beat(peel, at, rev)));
    presence.start(fleet.onlinePeels());
  }

  /** `_master/states/published` and `_master/settings/published` for a new revision. */
  private announce<R extends { published?: boolean; rev: number }>(
    nc: NatsConnection,
    tree: "states" | "settings",
    r: R,
  ): R {
    if (r.published) {
      emitMasterEvent(nc, masterTags.treePublished(tree), { rev: r.rev, master: this.id });
    }
    return r;
  }

  private async renewLeases(): Promise<void> {
    const r = this.running;
    if (this.stopped || !r) return;
    await r.settings.renew();
    await r.states.renew();
    await r.reactor?.renew();
  }

  private async beat(heartbeats: KV, signer: KeyPair): Promise<void> {
    const hb: MasterHeartbeat = {
      master: this.id,
      nkey: publicNkeyOf(signer),
      ts: new Date().toISOString(),
    };
    await heartbeats.put(this.id, encode(hb)).catch((err: unknown) => this.log(`heartbeat: ${errText(err)}`));
  }

  private async isMasterAlive(heartbeats: KV, id: string, withinMs = MASTER_DEAD_AFTER_MS): Promise<boolean> {
    if (id === this.id) return !this.stopped;
    const e = await heartbeats.get(id).catch(() => null);
    if (!e) return false;
    return e.operation === "PUT" && Date.now() - e.created.getTime() <= withinMs;
  }
}
