/**
 * Job ids this peel has accepted, persisted so a command replayed after a restart is still
 * refused. Signatures prove who sent a command, not that it is new: anyone who saw it on the
 * wire could publish it again within the allowed clock skew.
 */
import { readFile } from "node:fs/promises";
import { errText } from "../util/errors.js";
import { isENOENT, writeFileAtomic } from "../util/files.js";

/** Far longer than the accepted clock skew: older commands are refused as stale anyway. */
export const DEFAULT_JID_RETENTION_MS = 24 * 3600 * 1000;

export class JidStore {
  /** jid → when it was first seen (ms since the epoch). */
  private readonly seen = new Map<string, number>();
  private writing: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly retentionMs = DEFAULT_JID_RETENTION_MS,
  ) {}

  /** Loads the file; a missing file is an empty store, a corrupt one is an error. */
  async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (err) {
      if (isENOENT(err)) return;
      throw err;
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new Error(`job id store ${this.path} is corrupt: ${errText(err)}`);
    }
    const jids = (data as { jids?: unknown } | null)?.jids;
    if (jids === null || typeof jids !== "object" || Array.isArray(jids)) {
      throw new Error(`job id store ${this.path} is corrupt: no "jids" map`);
    }
    for (const [jid, at] of Object.entries(jids as Record<string, unknown>)) {
      if (typeof at === "number") this.seen.set(jid, at);
    }
    this.prune(Date.now());
  }

  has(jid: string): boolean {
    return this.seen.has(jid);
  }

  get size(): number {
    return this.seen.size;
  }

  /**
   * Records a jid. Returns false when it was already there (a replay). The in-memory set is
   * updated synchronously, so two copies arriving together cannot both pass; the returned
   * promise settles when the file on disk includes the jid.
   */
  add(jid: string, now = Date.now()): { fresh: boolean; persisted: Promise<void> } {
    if (this.seen.has(jid)) return { fresh: false, persisted: this.writing };
    this.seen.set(jid, now);
    this.prune(now);
    const persisted = this.writing.then(() => this.flush());
    // Later writes must not inherit an earlier failure; the caller of add() sees it.
    this.writing = persisted.catch(() => {});
    return { fresh: true, persisted };
  }

  /** Settles when every write started so far has finished (failed ones included). */
  idle(): Promise<void> {
    return this.writing;
  }

  private prune(now: number): void {
    for (const [jid, at] of this.seen) if (now - at > this.retentionMs) this.seen.delete(jid);
  }

  private flush(): Promise<void> {
    const body = JSON.stringify({ jids: Object.fromEntries(this.seen) });
    return writeFileAtomic(this.path, body, { mode: 0o600 });
  }
}
