/**
 * Outboxes: what the peel could not hand to NATS (disconnected, or the send failed) waits here,
 * one file per entry named by its KSUID, until a connection takes it, oldest first. "Nothing lost"
 * is the rule, so a file is only deleted after its send succeeded, and a peel restart finds them
 * again. The return outbox keeps job returns for `job-returns`; beacons keep their events in one.
 *
 * Files: `<dir>/<id>.json`, 0600, written atomically, holding the encoded (already masked) entry
 * exactly as it will be sent. An unreadable file is moved aside as `<id>.json.bad` so one damaged
 * file never blocks the others.
 */
import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { decode, encode } from "../bus/codec.js";
import type { PeelReturn } from "../jobs/wire.js";
import { errText } from "../util/errors.js";
import { isENOENT, writeFileAtomic } from "../util/files.js";

export const DEFAULT_OUTBOX_LIMIT = 1_000;

/** Entry ids (job ids, event ids) become file names, KV keys and subject tokens: one plain token. */
const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const SUFFIX = ".json";

export interface OutboxLogger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export interface OutboxOptions {
  /** The owning peel: an entry written for another id is refused, not sent under this one. */
  peel: string;
  log: OutboxLogger;
  /** Entries kept at most; the oldest (smallest id) are dropped beyond it. */
  limit?: number;
}

export interface FlushResult {
  /** Entries stored and deleted. */
  sent: number;
  /** Entries moved aside as `.bad`. */
  bad: number;
  /** Entries still waiting (a send failed, or a file could not be read). */
  left: number;
  /** Why the flush stopped early, if it did. */
  error?: string;
}

/** What an outbox holds: how an entry is named and checked when read back. */
export interface OutboxKind<T> {
  /** Plural for messages: "returns", "events". */
  noun: string;
  idOf(entry: T): string;
  /** Decodes a file of entry `id`; throws with the reason when it is not a valid entry. */
  parse(id: string, data: Uint8Array, peel: string): T;
}

export class DiskOutbox<T extends object> {
  readonly dir: string;
  private readonly limit: number;
  /** Entries known to be waiting: lets the retry timer skip a readdir when there is nothing. */
  private waiting = false;
  /** Serialises adds, so two writes cannot both decide to drop the same oldest entries. */
  private addChain: Promise<unknown> = Promise.resolve();

  constructor(
    dir: string,
    private readonly opts: OutboxOptions,
    private readonly kind: OutboxKind<T>,
  ) {
    this.dir = dir;
    this.limit = Math.max(1, opts.limit ?? DEFAULT_OUTBOX_LIMIT);
  }

  /** True when entries may be waiting (set by init() and add(), cleared by a complete flush). */
  get pending(): boolean {
    return this.waiting;
  }

  /** Creates the directory, removes temp files a crash left behind, and notes waiting entries. */
  async init(): Promise<number> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.dir)) {
      if (name.startsWith(".") && name.endsWith(".tmp")) await rm(join(this.dir, name), { force: true });
    }
    const n = (await this.list()).length;
    this.waiting = n > 0;
    return n;
  }

  /** Entry ids, oldest first (KSUID string order is time order). */
  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (isENOENT(err)) return [];
      throw err;
    }
    return names
      .filter((n) => n.endsWith(SUFFIX) && !n.startsWith("."))
      .map((n) => n.slice(0, -SUFFIX.length))
      .sort();
  }

  pathOf(id: string): string {
    return join(this.dir, `${id}${SUFFIX}`);
  }

  /**
   * Keeps a return (already masked by the caller) until a flush sends it. Past the limit the
   * oldest entries are dropped with a warning: a peel offline for weeks must not fill its disk.
   */
  add(entry: T): Promise<void> {
    const run = this.addChain.then(async () => {
      const id = this.kind.idOf(entry);
      if (!ID_PATTERN.test(id)) throw new Error(`invalid entry id ${JSON.stringify(id)}`);
      await writeFileAtomic(this.pathOf(id), encode(entry), { mode: 0o600 });
      this.waiting = true;
      const all = await this.list();
      const over = all.length - this.limit;
      if (over <= 0) return;
      const dropped = all.slice(0, over);
      for (const id of dropped) await rm(this.pathOf(id), { force: true });
      this.opts.log.warn(
        `outbox is full (${this.limit} ${this.kind.noun}): dropped the oldest ${over} (${dropped.join(", ")})`,
      );
    });
    this.addChain = run.catch(() => {});
    return run;
  }

  /**
   * Sends waiting entries oldest first through `send` (which stores them), deleting each file
   * only after its send succeeded. Stops at the first failed send: the rest stay for the next
   * flush, in order. `stop` is asked between entries (the peel is stopping).
   */
  async flush(send: (entry: T) => Promise<void>, stop: () => boolean = () => false): Promise<FlushResult> {
    const result: FlushResult = { sent: 0, bad: 0, left: 0 };
    const ids = await this.list();
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (stop()) {
        result.left += ids.length - i;
        result.error = "peel stopping";
        break;
      }
      const path = this.pathOf(id);
      let data: Buffer;
      try {
        data = await readFile(path);
      } catch (err) {
        if (isENOENT(err)) continue; // dropped by add() or already sent: nothing to do
        // Not damage in the file itself (permissions, I/O): keep it and let the others through.
        this.opts.log.error(`outbox: cannot read ${path}: ${errText(err)}; keeping it`);
        result.left++;
        continue;
      }
      let entry: T;
      try {
        entry = this.kind.parse(id, data, this.opts.peel);
      } catch (err) {
        await this.moveAside(path, errText(err));
        result.bad++;
        continue;
      }
      try {
        await send(entry);
      } catch (err) {
        result.left += ids.length - i;
        result.error = errText(err);
        break;
      }
      try {
        await rm(path);
      } catch (err) {
        // Sent but still on disk: the next flush sends it again, which only overwrites the same key.
        if (!isENOENT(err)) this.opts.log.error(`outbox: cannot delete ${path}: ${errText(err)}`);
      }
      result.sent++;
    }
    if (result.left === 0) this.waiting = (await this.list().catch(() => [])).length > 0;
    return result;
  }

  private async moveAside(path: string, why: string): Promise<void> {
    try {
      await rename(path, `${path}.bad`);
      this.opts.log.error(`outbox: ${path} is unreadable (${why}); moved aside as ${path}.bad`);
    } catch (err) {
      if (isENOENT(err)) return;
      this.opts.log.error(
        `outbox: ${path} is unreadable (${why}) and cannot be moved aside: ${errText(err)}`,
      );
    }
  }
}

const RETURNS: OutboxKind<PeelReturn> = {
  noun: "returns",
  idOf: (ret) => ret.jid,
  parse(jid, data, peel) {
    const ret = decode<PeelReturn>(data);
    if (ret.jid !== jid) throw new Error(`holds job ${JSON.stringify(ret.jid)}, not ${jid}`);
    if (ret.peel !== peel) throw new Error(`is a return of peel ${JSON.stringify(ret.peel)}`);
    if (ret.origin !== "job" && ret.origin !== "schedule")
      throw new Error(`has an unknown origin ${JSON.stringify(ret.origin)}`);
    if (typeof ret.fun !== "string" || typeof ret.success !== "boolean")
      throw new Error("is not a return (fun or success missing)");
    return ret;
  },
};

/** Job returns waiting for `job-returns`, one file per job id. */
export class ReturnOutbox extends DiskOutbox<PeelReturn> {
  constructor(dir: string, opts: OutboxOptions) {
    super(dir, opts, RETURNS);
  }
}
/**
 * Pauses between flush attempts while the peel is connected but stores fail (JetStream still
 * electing leaders after a restart, a node lost): short at first, so a return is stored within
 * a second of the bus taking it again, doubling up to `maxMs`.
 */
export class FlushBackoff {
  private attempt = 0;

  constructor(
    private readonly firstMs: number,
    private readonly maxMs: number,
  ) {}

  next(): number {
    const ms = Math.min(this.maxMs, this.firstMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return ms;
  }

  reset(): void {
    this.attempt = 0;
  }
}

export const FIRST_FLUSH_RETRY_MS = 250;
/**
 * While connected, tries stay at most this far apart: one put is cheap, and a return stored
 * seconds late keeps a whole job open. The slow retry timer (outboxRetryMs) covers the rest.
 */
export const MAX_FLUSH_RETRY_MS = 2_000;
