/**
 * Sends a peel's beacon (and drift) events, in the order they were made. While the bus is away,
 * or a send fails, events wait in a bounded on-disk buffer (the outbox machinery, oldest dropped
 * beyond the limit) and go out first, in order, when a connection takes them again. Sends are
 * serialised, so a live event never overtakes a buffered one.
 *
 * Buffer files are named by a millisecond time + sequence key, not by the event id: KSUIDs only
 * order by the second, and two events of one second must not swap.
 */

import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { decode, encode } from "../../bus/codec.js";
import { eventSubject, type ZesterEvent } from "../../events/index.js";
import { errText } from "../../util/errors.js";
import { DiskOutbox, type OutboxKind } from "../outbox.js";
import type { PeelLogger } from "../peel.js";

export const DEFAULT_EVENT_BUFFER_LIMIT = 1_000;

interface Buffered {
  key: string;
  event: ZesterEvent;
}

const EVENTS: OutboxKind<Buffered> = {
  noun: "events",
  idOf: (b) => b.key,
  parse(key, data, peel) {
    const b = decode<Buffered>(data);
    if (b.key !== key) throw new Error(`holds entry ${JSON.stringify(b.key)}, not ${key}`);
    const ev = b.event;
    if (
      !ev ||
      typeof ev !== "object" ||
      ev.origin !== peel ||
      typeof ev.tag !== "string" ||
      typeof ev.id !== "string"
    )
      throw new Error(`is not an event of peel ${peel}`);
    return { key, event: ev };
  },
};

export interface EventSenderOptions {
  peel: string;
  dir: string;
  log: PeelLogger;
  limit?: number;
  /** The connection while the bus is up, else undefined. */
  connection: () => NatsConnection | undefined;
  timeoutMs?: number;
}

export class EventSender {
  private readonly box: DiskOutbox<Buffered>;
  private chain: Promise<void> = Promise.resolve();
  private seq = 0;

  constructor(private readonly opts: EventSenderOptions) {
    this.box = new DiskOutbox(
      opts.dir,
      { peel: opts.peel, log: opts.log, limit: opts.limit ?? DEFAULT_EVENT_BUFFER_LIMIT },
      EVENTS,
    );
  }

  /** Events still waiting from before a restart. */
  init(): Promise<number> {
    return this.box.init();
  }

  get buffered(): boolean {
    return this.box.pending;
  }

  /** Queues one event; resolves once it was sent or buffered. */
  send(event: ZesterEvent): Promise<void> {
    const run = this.chain.then(async () => {
      const nc = this.opts.connection();
      if (nc && this.box.pending) await this.flushNow(nc);
      if (nc && !this.box.pending) {
        try {
          await this.publish(nc, event);
          return;
        } catch (err) {
          this.opts.log.warn(`event ${event.tag}: ${errText(err)}; kept in the event buffer`);
        }
      }
      await this.keep(event);
    });
    this.chain = run.catch((err: unknown) => this.opts.log.error(`event ${event.tag} lost: ${errText(err)}`));
    return this.chain;
  }

  /** After a (re)connection: sends what waits, oldest first. */
  flush(): Promise<void> {
    this.chain = this.chain.then(async () => {
      const nc = this.opts.connection();
      if (nc && this.box.pending) await this.flushNow(nc);
    });
    return this.chain;
  }

  idle(): Promise<void> {
    return this.chain;
  }

  private async keep(event: ZesterEvent): Promise<void> {
    const key = `${Date.now().toString().padStart(15, "0")}-${(this.seq++ % 1_000_000).toString().padStart(6, "0")}`;
    await this.box.add({ key, event });
  }

  private async flushNow(nc: NatsConnection): Promise<void> {
    const r = await this.box.flush((b) => this.publish(nc, b.event));
    if (r.sent > 0)
      this.opts.log.info(
        `event buffer: sent ${r.sent} kept event(s)${r.left > 0 ? `, ${r.left} still waiting` : ""}`,
      );
    if (r.error !== undefined)
      this.opts.log.warn(`event buffer: ${r.left} event(s) still waiting (${r.error})`);
  }

  /** Stored in the events stream; the event id is the stream's dedup id, so a resend is stored once. */
  private async publish(nc: NatsConnection, ev: ZesterEvent): Promise<void> {
    await jetstream(nc).publish(eventSubject(ev.origin, ev.tag), encode(ev), {
      msgID: ev.id,
      timeout: this.opts.timeoutMs ?? 5_000,
    });
  }
}
