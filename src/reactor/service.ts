/**
 * The reactor as one master runs it: publishes the reactor dir to `reactor-files` while it holds
 * the `reactor-publisher` lease (a dir with errors never replaces the live rules: the log and a
 * `_master/reactor/rejected` event say why), runs the Reactor on the shared consumer, and answers
 * `zester.reactor.test` and `zester.admin.reactor.stats`.
 */
import type { KV } from "@nats-io/kv";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { decode, encode } from "../bus/codec.js";
import { subjects } from "../bus/names.js";
import { relayedReason } from "../bus/validate.js";
import { enrollAdmin } from "../enroll/admin.js";
import { emitMasterEvent, masterTags } from "../events/master-events.js";
import type { DispatchReply, DispatchRequest } from "../jobs/wire.js";
import { MASTER_QUEUE } from "../master/dispatcher.js";
import { Lease, LeasedPublisher } from "../master/lease.js";
import { errText } from "../util/errors.js";
import { problemText } from "./errors.js";
import { Reactor, type ReactorOptions, type ReactorStats, type ReactorTestResult } from "./reactor.js";
import { DEFAULT_REACTOR_DIR, ReactorPublisher, type ReactorPublishResult } from "./tree.js";

export const REACTOR_PUBLISHER_LEASE = "reactor-publisher";
export const REACTOR_STATS_SUBJECT = subjects.admin("reactor.stats");
export const REACTOR_PUBLISH_SUBJECT = subjects.admin("reactor.publish");

export interface ReactorTestRequest {
  match_key: string;
  data?: Record<string, unknown>;
}

export type ReactorTestReply = ReactorTestResult & {
  master: string;
  error?: string;
  /** The reactor dir has errors and was not published: the test ran the live (last good) rules. */
  dir_errors?: string[];
};

export interface ReactorServiceDeps {
  nc: NatsConnection;
  masterId: string;
  reactorFiles: KV;
  /** The `reactor-limits` bucket (shared throttle, rate limit and breaker). */
  reactorLimits?: KV;
  leases: KV;
  dir?: string;
  options?: ReactorOptions;
  log(msg: string): void;
  stopped(): boolean;
  dispatch(
    req: DispatchRequest,
    opts: { jid: string; maxTargets?: number; eventDepth?: number },
  ): Promise<DispatchReply & { existing?: boolean }>;
}

export class ReactorService {
  readonly reactor: Reactor;
  private readonly publisher: LeasedPublisher<ReactorPublishResult>;
  private readonly subs: Subscription[] = [];
  private lastRejected = "";

  constructor(private readonly deps: ReactorServiceDeps) {
    const dir = deps.dir ?? DEFAULT_REACTOR_DIR;
    const files = new ReactorPublisher(deps.reactorFiles, dir, deps.masterId);
    this.publisher = new LeasedPublisher(
      "reactor",
      new Lease(deps.leases, REACTOR_PUBLISHER_LEASE, deps.masterId),
      () => files.publish().then((r) => this.published(r, dir)),
      deps.log,
      deps.stopped,
    );
    this.reactor = new Reactor(
      {
        nc: deps.nc,
        masterId: deps.masterId,
        reactorFiles: deps.reactorFiles,
        ...(deps.reactorLimits ? { reactorLimits: deps.reactorLimits } : {}),
        log: deps.log,
        dispatch: deps.dispatch,
        enroll: async (op, peel, reason) => {
          const r = await enrollAdmin(deps.nc, op, { id: peel, reason, by: `reactor@${deps.masterId}` });
          if (!r.ok) throw new Error(r.error ?? `enroll ${op} ${peel} failed`);
          return `${op === "approve" ? "approved" : "rejected"} ${(r.peels ?? [peel]).join(", ")}`;
        },
      },
      deps.options,
    );
  }

  get isPublisher(): boolean {
    return this.publisher.held;
  }

  async start(): Promise<void> {
    await this.publish().catch((err) => this.deps.log(`publishing the reactor dir failed: ${errText(err)}`));
    await this.reactor.start();
    this.serve(subjects.reactorTest, (m) => this.answerTest(m), MASTER_QUEUE);
    this.serve(REACTOR_STATS_SUBJECT, (m) => {
      m.respond(encode(this.reactor.stats()));
    });
    this.serve(REACTOR_PUBLISH_SUBJECT, async (m) => {
      const r = await this.publish();
      if (r) m.respond(encode({ master: this.deps.masterId, ...r }));
    });
  }

  publish(): Promise<ReactorPublishResult | undefined> {
    return this.publisher.publish();
  }

  renew(): Promise<void> {
    return this.publisher.renew();
  }

  stats(): ReactorStats {
    return this.reactor.stats();
  }

  async stop(): Promise<void> {
    for (const s of this.subs.splice(0)) s.unsubscribe();
    await this.reactor.stop();
    await this.publisher.stop();
  }

  private async published(r: ReactorPublishResult, dir: string): Promise<ReactorPublishResult> {
    if (r.problems) {
      const text = r.problems.map(problemText).join("\n");
      if (text !== this.lastRejected) {
        this.lastRejected = text;
        this.deps.log(
          `reactor dir ${dir} has errors; keeping rules revision ${r.rev}:\n  ${text.replaceAll("\n", "\n  ")}`,
        );
        emitMasterEvent(this.deps.nc, masterTags.reactorRejected, {
          dir,
          kept_rev: r.rev,
          errors: r.problems.map(problemText),
          master: this.deps.masterId,
        });
      }
      return r;
    }
    this.lastRejected = "";
    if (r.published) {
      this.deps.log(`published reactor revision ${r.rev} (${r.files} files)`);
      emitMasterEvent(this.deps.nc, masterTags.treePublished("reactor"), {
        rev: r.rev,
        files: r.files,
        master: this.deps.masterId,
      });
      await this.reactor.reload();
    }
    return r;
  }

  /**
   * Publishes the dir (here, or through the lease holder) so a test sees the rules as edited;
   * returns the dir's problems when it was refused.
   */
  private async fresh(): Promise<string[] | undefined> {
    let r: ReactorPublishResult | undefined;
    try {
      r = await this.publish();
      if (!r) {
        const m = await this.deps.nc.request(REACTOR_PUBLISH_SUBJECT, encode({}), { timeout: 5_000 });
        r = decode<ReactorPublishResult>(m.data);
      }
    } catch (err) {
      this.deps.log(
        `reactor test: could not publish the reactor dir first (${errText(err)}); testing the live rules`,
      );
    }
    await this.reactor.reload();
    return r?.problems?.map(problemText);
  }

  private async answerTest(m: Msg): Promise<void> {
    let reply: ReactorTestReply;
    try {
      const req = decode<ReactorTestRequest>(m.data);
      if (typeof req.match_key !== "string") throw new Error("match_key is required");
      const data = req.data ?? {};
      if (data === null || typeof data !== "object" || Array.isArray(data))
        throw new Error("data must be a mapping");
      const dirErrors = await this.fresh();
      reply = {
        ...(await this.reactor.test(req.match_key, data)),
        master: this.deps.masterId,
        ...(dirErrors ? { dir_errors: dirErrors } : {}),
      };
    } catch (err) {
      reply = {
        match_key: "",
        rules_rev: this.reactor.rules.rev,
        reactions: [],
        master: this.deps.masterId,
        error: errText(err),
      };
    }
    m.respond(encode(reply));
  }

  private serve(subject: string, handler: (m: Msg) => void | Promise<void>, queue?: string): void {
    this.subs.push(
      this.deps.nc.subscribe(subject, {
        ...(queue !== undefined ? { queue } : {}),
        callback: (err, msg) => {
          if (err) return;
          // Bytes a peel stored and had the server deliver here are nobody's request.
          const relayed = relayedReason(msg, subject);
          if (relayed) {
            this.deps.log(`${subject}: ignored: ${relayed}`);
            return;
          }
          Promise.resolve()
            .then(() => handler(msg))
            .catch((e: unknown) => {
              this.deps.log(`${subject}: ${errText(e)}`);
              if (msg.reply) msg.respond(encode({ error: errText(e) }));
            });
        },
      }),
    );
  }
}
