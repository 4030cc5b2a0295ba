/**
 * The master-side reactor. Every master binds to one shared durable pull consumer on the `events`
 * stream, so each event is handled by one master, and acks an event only once its reaction is
 * done; an event a master took and did not finish (killed mid-reaction) is redelivered to another.
 * Side effects are idempotent by construction: a reaction's job id (and chained event id) comes
 * from (event id, rule, reaction file, block), so a redelivery finds its job already recorded.
 * Events wait in the stream while no master runs and are handled when one starts, unless older
 * than `maxAgeMs`. The reactor's own records (`_master/reactor/...`) never trigger rules.
 */
import { AckPolicy, DeliverPolicy, type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type KV, KvWatchInclude } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { subjects } from "../bus/names.js";
import {
  EventRejected,
  type HeaderView,
  MASTER_ORIGIN,
  makeEvent,
  matchKey,
  parseEvent,
  type ZesterEvent,
} from "../events/event.js";
import { emitMasterEvent } from "../events/master-events.js";
import { publishEvent } from "../events/publish.js";
import { EVENTS_STREAM } from "../events/watch.js";
import type { DispatchReply, DispatchRequest } from "../jobs/wire.js";
import { errText } from "../util/errors.js";
import { parseReaction, type ReactionAction } from "./actions.js";
import { problemText, ReactorFileError } from "./errors.js";
import { reactionId } from "./ids.js";
import { type DropReason, Protection, type ProtectionOptions } from "./protection.js";
import { renderReaction } from "./render.js";
import { matchingRules, type Rule } from "./rules.js";
import { SharedLimits } from "./shared-limits.js";
import { loadReactorTree, type ReactorTree } from "./tree.js";

export const REACTOR_CONSUMER = "zester-reactor";
/** Tags of the reactor's own records; events under `_master/reactor/` never fire rules. */
export const reactorTags = {
  reaction: "reactor/reaction",
  dropped: "reactor/dropped",
  breakerOpen: "reactor/breaker/open",
} as const;
const OWN_RECORDS = "reactor/";

export interface ReactorOptions extends ProtectionOptions {
  /** Events older than this when a master gets them are skipped (default 15 min; 0 = never). */
  maxAgeMs?: number;
  /** How long a master may hold an event before it goes to another (default 30 s). */
  ackWaitMs?: number;
  /** Events handled at once per master (default 32). */
  concurrency?: number;
}

export interface ReactorDeps {
  nc: NatsConnection;
  masterId: string;
  reactorFiles: KV;
  /** The `reactor-limits` bucket; without it the limits count on this master only. */
  reactorLimits?: KV;
  log(msg: string): void;
  dispatch(
    req: DispatchRequest,
    opts: { jid: string; maxTargets?: number; eventDepth?: number },
  ): Promise<DispatchReply & { existing?: boolean }>;
  /** Approves or rejects an enrollment; resolves with what was done, throws on failure. */
  enroll(op: "approve" | "reject", peel: string, reason: string): Promise<string>;
}

/** One action's outcome in a reaction record. */
export interface ActionOutcome {
  block: string;
  action: string;
  ok: boolean;
  jid?: string;
  /** True when the job already existed (a redelivery or a second master). */
  existing?: boolean;
  peels?: string[];
  event_id?: string;
  error?: string;
  /** What a reactor test would do (no side effect taken). */
  plan?: Record<string, unknown>;
}

export interface ReactionRecord {
  event_id: string;
  match_key: string;
  rule: string;
  reaction: string;
  outcome: "ok" | "failed" | "invalid";
  actions: ActionOutcome[];
  error?: string;
  master: string;
}

export interface ReactorStats {
  master: string;
  rules_rev: number;
  rules: number;
  handled: number;
  reactions: number;
  jobs: number;
  duplicates: number;
  /** Reactions run, by their record's outcome (they sum to `reactions`). */
  outcomes: Record<ReactionRecord["outcome"], number>;
  drops: Record<DropReason, number>;
  open_breakers: string[];
}

/** What `reactor test` answers: every reaction the event would run, rendered and validated. */
export interface ReactorTestResult {
  match_key: string;
  rules_rev: number;
  reactions: ReactionRecord[];
}

function describe(a: ReactionAction): Record<string, unknown> {
  switch (a.kind) {
    case "dispatch":
      return {
        target: a.target,
        function: a.fun,
        args: a.args,
        kwargs: a.kwargs,
        test: a.test,
        ...(a.timeoutS !== undefined ? { timeout: a.timeoutS } : {}),
        ...(a.maxTargets !== undefined ? { max_targets: a.maxTargets } : {}),
      };
    case "event.send":
      return { tag: a.tag, data: a.data };
    case "enroll.approve":
    case "enroll.reject":
      return { id: a.id, require_peel: a.requirePeel };
    case "log":
      return { message: a.message };
  }
}

export class Reactor {
  private tree: ReactorTree = { rev: 0, files: {}, rules: [] };
  readonly protection: Protection;
  private readonly opts: ReactorOptions;
  private stopped = false;
  private consuming: Promise<void> | undefined;
  private stopConsumer: (() => Promise<void>) | undefined;
  private unwatch: (() => void) | undefined;
  private readonly inflight = new Set<Promise<void>>();
  private readonly dropNotes = new Map<string, { at: number; count: number }>();
  private counts = { handled: 0, reactions: 0, jobs: 0, duplicates: 0 };
  private readonly outcomes: Record<ReactionRecord["outcome"], number> = { ok: 0, failed: 0, invalid: 0 };

  constructor(
    private readonly deps: ReactorDeps,
    opts: ReactorOptions = {},
  ) {
    this.opts = opts;
    this.protection = new Protection(
      opts,
      Date.now,
      deps.reactorLimits ? new SharedLimits(deps.reactorLimits) : undefined,
      deps.log,
    );
  }

  get rules(): ReactorTree {
    return this.tree;
  }

  stats(): ReactorStats {
    return {
      master: this.deps.masterId,
      rules_rev: this.tree.rev,
      rules: this.tree.rules.length,
      ...this.counts,
      outcomes: { ...this.outcomes },
      drops: { ...this.protection.drops },
      open_breakers: this.protection.openBreakers(),
    };
  }

  /** Loads the live rules, follows new revisions, then starts taking events. */
  async start(): Promise<void> {
    await this.reload();
    const w = await this.deps.reactorFiles.watch({ key: "revision", include: KvWatchInclude.UpdatesOnly });
    this.unwatch = () => w.stop();
    void (async () => {
      for await (const _e of w) {
        if (this.stopped) break;
        await this.reload();
      }
    })().catch((err) => this.deps.log(`reactor: watching reactor-files failed: ${errText(err)}`));
    await this.ensureConsumer();
    this.consuming = this.consume();
  }

  /** Re-reads the live tree (also called right after this master published one). */
  async reload(): Promise<void> {
    try {
      const t = await loadReactorTree(this.deps.reactorFiles);
      if (!t || t.rev === this.tree.rev) return;
      this.tree = t;
      this.deps.log(`reactor: rules revision ${t.rev} (${t.rules.length} rules)`);
    } catch (err) {
      const msg = err instanceof ReactorFileError ? err.message : errText(err);
      this.deps.log(`reactor: keeping rules revision ${this.tree.rev}: the live tree does not load: ${msg}`);
    }
  }

  private async ensureConsumer(): Promise<void> {
    const jsm = await jetstreamManager(this.deps.nc);
    try {
      await jsm.consumers.info(EVENTS_STREAM, REACTOR_CONSUMER);
    } catch {
      try {
        await jsm.consumers.add(EVENTS_STREAM, {
          durable_name: REACTOR_CONSUMER,
          description: "the reactor, shared by every master",
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          filter_subject: subjects.eventAll,
          ack_wait: (this.opts.ackWaitMs ?? 30_000) * 1_000_000,
          max_ack_pending: 10_000,
        });
      } catch (err) {
        // Another master created it between the two calls.
        await jsm.consumers.info(EVENTS_STREAM, REACTOR_CONSUMER).catch(() => {
          throw err;
        });
      }
    }
  }

  private async consume(): Promise<void> {
    const limit = this.opts.concurrency ?? 32;
    while (!this.stopped) {
      try {
        const consumer = await jetstream(this.deps.nc).consumers.get(EVENTS_STREAM, REACTOR_CONSUMER);
        const messages = await consumer.consume({ max_messages: limit * 2 });
        this.stopConsumer = async () => {
          await messages.close().catch(() => {});
        };
        for await (const m of messages) {
          if (this.stopped) break;
          while (this.inflight.size >= limit) await Promise.race(this.inflight);
          const p: Promise<void> = this.onMessage(m).finally(() => this.inflight.delete(p));
          this.inflight.add(p);
        }
      } catch (err) {
        if (this.stopped) break;
        this.deps.log(`reactor: consuming events failed (${errText(err)}); retrying`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unwatch?.();
    await this.stopConsumer?.();
    await Promise.allSettled([...this.inflight]);
    await this.consuming?.catch(() => {});
  }

  private async onMessage(m: JsMsg): Promise<void> {
    try {
      await this.handle(m.subject, m.data, m.headers);
      m.ack();
    } catch (err) {
      // Not acked: the event comes back (to this master or another) after ack_wait.
      this.deps.log(`reactor: event #${m.seq} on ${m.subject} failed, will be redelivered: ${errText(err)}`);
      m.nak(2_000);
    }
  }

  /** Handles one event from the stream; throws only for failures worth a redelivery. */
  async handle(subject: string, data: Uint8Array, headers?: HeaderView): Promise<void> {
    let ev: ZesterEvent;
    try {
      ev = parseEvent(subject, data, headers);
    } catch (err) {
      if (!(err instanceof EventRejected)) throw err;
      this.note(err.spoof ? "spoof" : "invalid", subject, `${subject}: ${err.message}`);
      return;
    }
    if (ev.origin === MASTER_ORIGIN && ev.tag.startsWith(OWN_RECORDS)) return;
    const key = matchKey(ev);
    const rules = matchingRules(this.tree.rules, key);
    if (rules.length === 0) return;
    this.counts.handled++;
    const maxAge = this.opts.maxAgeMs ?? 15 * 60_000;
    const age = Date.now() - Date.parse(ev.ts);
    if (maxAge > 0 && age > maxAge) {
      this.note(
        "age",
        key,
        `${key} (${ev.id}) is ${Math.round(age / 1000)} s old, older than the reactor's max age`,
      );
      return;
    }
    if (ev.depth > this.protection.maxDepth) {
      this.protection.drop("depth");
      this.note(
        "depth",
        key,
        `${key} (${ev.id}) has depth ${ev.depth}, over the maximum ${this.protection.maxDepth}`,
        false,
      );
      return;
    }
    if (!(await this.protection.admitSourceShared(ev.origin))) {
      this.note("rate", ev.origin, `events from ${ev.origin} arrive faster than the rate limit`, false);
      return;
    }
    for (const rule of rules) {
      const ruleKey = rule.glob;
      if (!(await this.protection.admitThrottleShared(ruleKey, ev.origin, rule.throttleMs, ev.id))) {
        this.note(
          "throttle",
          `${ruleKey}\0${ev.origin}`,
          `rule ${ruleKey} is throttled for ${ev.origin}`,
          false,
        );
        continue;
      }
      const admitted = await this.protection.admitRuleShared(ruleKey);
      if (admitted === "opened") {
        this.deps.log(`reactor: breaker opened for rule ${ruleKey}: it fired too often`);
        emitMasterEvent(this.deps.nc, reactorTags.breakerOpen, { rule: ruleKey, master: this.deps.masterId });
        continue;
      }
      if (!admitted) {
        this.note("breaker", ruleKey, `rule ${ruleKey} is held by its open breaker`, false);
        continue;
      }
      for (const path of rule.reactions) {
        const rec = await this.react(ev, rule, path, true);
        this.counts.reactions++;
        this.outcomes[rec.outcome]++;
        emitMasterEvent(this.deps.nc, reactorTags.reaction, rec, {
          id: reactionId(ev.id, "record", rule.glob, path),
        });
        if (rec.outcome !== "ok") {
          this.deps.log(
            `reactor: ${key} → ${path}: ${rec.outcome}: ${rec.error ?? rec.actions.find((a) => !a.ok)?.error ?? ""}`,
          );
        }
      }
    }
  }

  /** Renders, validates and (when `act`) runs one reaction file for one event. */
  async react(ev: ZesterEvent, rule: Rule, path: string, act: boolean): Promise<ReactionRecord> {
    const base = {
      event_id: ev.id,
      match_key: matchKey(ev),
      rule: rule.glob,
      reaction: path,
      master: this.deps.masterId,
    };
    let actions: ReactionAction[];
    try {
      actions = parseReaction(await renderReaction(this.tree.files, path, ev), path, ev);
    } catch (err) {
      const error = err instanceof ReactorFileError ? err.problems.map(problemText).join("; ") : errText(err);
      return { ...base, outcome: "invalid", actions: [], error };
    }
    const outcomes: ActionOutcome[] = [];
    for (const a of actions) {
      const id = reactionId(ev.id, rule.glob, path, a.block);
      const name = a.kind === "dispatch" ? a.action : a.kind;
      if (!act) {
        outcomes.push({
          block: a.block,
          action: name,
          ok: true,
          plan: describe(a),
          ...(a.kind === "dispatch" ? { jid: id } : {}),
        });
        continue;
      }
      try {
        outcomes.push({ block: a.block, action: name, ...(await this.run(a, id, ev)) });
      } catch (err) {
        outcomes.push({ block: a.block, action: name, ok: false, error: errText(err) });
      }
    }
    return { ...base, outcome: outcomes.every((o) => o.ok) ? "ok" : "failed", actions: outcomes };
  }

  private async run(
    a: ReactionAction,
    id: string,
    ev: ZesterEvent,
  ): Promise<Omit<ActionOutcome, "block" | "action">> {
    switch (a.kind) {
      case "dispatch": {
        const r = await this.deps.dispatch(
          {
            target: a.target,
            fun: a.fun,
            args: a.args,
            kwargs: a.kwargs,
            test: a.test,
            user: `reactor:${matchKey(ev)}`,
            ...(a.timeoutS !== undefined ? { timeout_s: a.timeoutS } : {}),
          },
          // The job is one level deeper than its cause, like a chained event: an event.send it
          // runs on a peel carries that depth (Command.event_depth).
          {
            jid: id,
            eventDepth: ev.depth + 1,
            ...(a.maxTargets !== undefined ? { maxTargets: a.maxTargets } : {}),
          },
        );
        if (r.error !== undefined) return { ok: false, error: r.error };
        if (r.existing) this.counts.duplicates++;
        else this.counts.jobs++;
        return {
          ok: true,
          jid: r.jid!,
          ...(r.existing ? { existing: true } : {}),
          ...(r.peels ? { peels: r.peels } : {}),
        };
      }
      case "event.send": {
        // Chained: one level deeper than its cause, with an id that a redelivery repeats.
        const p = await publishEvent(this.deps.nc, {
          origin: MASTER_ORIGIN,
          tag: a.tag,
          data: a.data,
          depth: ev.depth + 1,
          id,
        });
        return { ok: true, event_id: p.event.id, ...(p.duplicate ? { existing: true } : {}) };
      }
      case "enroll.approve":
      case "enroll.reject": {
        const done = await this.deps.enroll(
          a.kind === "enroll.approve" ? "approve" : "reject",
          a.id,
          `reactor: ${matchKey(ev)}`,
        );
        return { ok: true, plan: { id: a.id, result: done } };
      }
      case "log":
        this.deps.log(`reactor: ${matchKey(ev)}: ${a.message}`);
        return { ok: true };
    }
  }

  /** `reactor test`: what an event with this match key and data would do, without doing it. */
  async test(key: string, data: Record<string, unknown>): Promise<ReactorTestResult> {
    const slash = key.indexOf("/");
    if (slash <= 0)
      throw new Error(`match key ${JSON.stringify(key)} is <origin>/<tag>, e.g. web-01/myco/deploy/finished`);
    const ev = makeEvent({ origin: key.slice(0, slash), tag: key.slice(slash + 1), data });
    const reactions: ReactionRecord[] = [];
    for (const rule of matchingRules(this.tree.rules, matchKey(ev))) {
      for (const path of rule.reactions) reactions.push(await this.react(ev, rule, path, false));
    }
    return { match_key: matchKey(ev), rules_rev: this.tree.rev, reactions };
  }

  /**
   * Counts a drop (unless counted already) and, at most every 10 s per reason and key, logs it
   * and records it as a `_master/reactor/dropped` event with how many were dropped since.
   */
  private note(reason: DropReason, key: string, message: string, count = true): void {
    if (count) this.protection.drop(reason);
    const k = `${reason}\0${key}`;
    const now = Date.now();
    const n = this.dropNotes.get(k) ?? { at: 0, count: 0 };
    n.count++;
    this.dropNotes.set(k, n);
    if (now - n.at < 10_000) return;
    this.deps.log(
      `reactor: dropped (${reason}): ${message}${n.count > 1 ? ` (${n.count} since the last note)` : ""}`,
    );
    emitMasterEvent(this.deps.nc, reactorTags.dropped, {
      reason,
      message,
      count: n.count,
      master: this.deps.masterId,
    });
    n.at = now;
    n.count = 0;
  }
}
