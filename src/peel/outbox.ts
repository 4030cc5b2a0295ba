/**
 * The return outbox: returns the peel could not store in `job-returns` (disconnected, or the put
 * failed) wait here, one file per job, until a connection takes them. "Nothing lost" is the
 * rule, so a file is only deleted after its put succeeded, and a peel restart finds them again.
 *
 * Files: `<dir>/<jid>.json`, 0600, written atomically, holding the encoded (already masked)
 * PeelReturn exactly as it will be stored. An unreadable file is moved aside as `<jid>.json.bad`
 * so one damaged file never blocks the others.
 */
import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { decode, encode } from "../bus/codec.js";
import type { PeelReturn } from "../jobs/wire.js";
import { errText } from "../util/errors.js";
import { isENOENT, writeFileAtomic } from "../util/files.js";

export const DEFAULT_OUTBOX_LIMIT = 1_000;

/** Job ids become file names, KV keys and subject tokens: one plain token only. */
const JID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
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
  /** Entries kept at most; the oldest (smallest jid) are dropped beyond it. */
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

export class ReturnOutbox {
  readonly dir: string;
  private readonly limit: number;
  /** Entries known to be waiting: lets the retry timer skip a readdir when there is nothing. */
  private waiting = false;
  /** Serialises adds, so two writes cannot both decide to drop the same oldest entries. */
  private addChain: Promise<unknown> = Promise.resolve();

  constructor(
    dir: string,
    private readonly opts: OutboxOptions,
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

  /** Entry jids, oldest first (KSUID string order is time order). */
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

  pathOf(jid: string): string {
    return join(this.dir, `${jid}${SUFFIX}`);
  }

  /**
   * Keeps a return (already masked by the caller) until a flush sends it. Past the limit the
   * oldest entries are dropped with a warning: a peel offline for weeks must not fill its disk.
   */
  add(ret: PeelReturn): Promise<void> {
    const run = this.addChain.then(async () => {
      if (!JID_PATTERN.test(ret.jid)) throw new Error(`invalid job id ${JSON.stringify(ret.jid)}`);
      await writeFileAtomic(this.pathOf(ret.jid), encode(ret), { mode: 0o600 });
      this.waiting = true;
      const all = await this.list();
      const over = all.length - this.limit;
      if (over <= 0) return;
      const dropped = all.slice(0, over);
      for (const jid of dropped) await rm(this.pathOf(jid), { force: true });
      this.opts.log.warn(
        `outbox is full (${this.limit} returns): dropped the oldest ${over} (${dropped.join(", ")})`,
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
  async flush(
    send: (ret: PeelReturn) => Promise<void>,
    stop: () => boolean = () => false,
  ): Promise<FlushResult> {
    const result: FlushResult = { sent: 0, bad: 0, left: 0 };
    const jids = await this.list();
    for (let i = 0; i < jids.length; i++) {
      const jid = jids[i]!;
      if (stop()) {
        result.left += jids.length - i;
        result.error = "peel stopping";
        break;
      }
      const path = this.pathOf(jid);
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
      let ret: PeelReturn;
      try {
        ret = this.parse(jid, data);
      } catch (err) {
        await this.moveAside(path, errText(err));
        result.bad++;
        continue;
      }
      try {
        await send(ret);
      } catch (err) {
        result.left += jids.length - i;
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

  private parse(jid: string, data: Uint8Array): PeelReturn {
    const ret = decode<PeelReturn>(data);
    if (ret.jid !== jid) throw new Error(`holds job ${JSON.stringify(ret.jid)}, not ${jid}`);
    if (ret.peel !== this.opts.peel) throw new Error(`is a return of peel ${JSON.stringify(ret.peel)}`);
    if (ret.origin !== "job" && ret.origin !== "schedule")
      throw new Error(`has an unknown origin ${JSON.stringify(ret.origin)}`);
    if (typeof ret.fun !== "string" || typeof ret.success !== "boolean")
      throw new Error("is not a return (fun or success missing)");
    return ret;
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
