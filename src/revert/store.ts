/**
 * Where kept runs live on a machine: `<dir>/runs/<id>.json` and file contents too large to keep
 * inline under `<dir>/blobs/<sha256>`. Bounded: the newest `maxRuns` runs and at most
 * `maxBlobBytes` of contents; older runs go first, with the contents only they reference. The
 * directory is 0700 and every file 0600: pre-images hold secrets.
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { errText } from "../util/errors.js";
import { isENOENT, writeFileAtomic } from "../util/files.js";
import type { Observed, RunRecord } from "./record.js";

export interface StoreLimits {
  /** Runs kept (newest first); default 50. */
  maxRuns: number;
  /** Total bytes of kept contents; default 256 MiB. */
  maxBlobBytes: number;
  /** Contents up to this size live inside the run record; default 64 KiB. */
  inlineBytes: number;
  /** A single content larger than this is not kept at all (its revert says so); default 64 MiB. */
  maxContentBytes: number;
}

export const DEFAULT_LIMITS: StoreLimits = {
  maxRuns: 50,
  maxBlobBytes: 256 * 1024 * 1024,
  inlineBytes: 64 * 1024,
  maxContentBytes: 64 * 1024 * 1024,
};

/** Kept content: inline (base64), in the blob dir by digest, or not kept because too large. */
export type ContentRef =
  | { inline: string; sha256: string; size: number }
  | { blob: string; sha256: string; size: number }
  | { dropped: true; sha256: string; size: number };

export class RunNotFound extends Error {
  override name = "RunNotFound";
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;

export class RevertStore {
  readonly limits: StoreLimits;

  constructor(
    readonly dir: string,
    limits: Partial<StoreLimits> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  private get runsDir(): string {
    return join(this.dir, "runs");
  }

  private get blobsDir(): string {
    return join(this.dir, "blobs");
  }

  /** Keeps a content: inline when small, as a blob by digest when larger, not at all when huge. */
  async keep(data: Buffer): Promise<ContentRef> {
    const sha256 = createHash("sha256").update(data).digest("hex");
    const size = data.length;
    if (size <= this.limits.inlineBytes) return { inline: data.toString("base64"), sha256, size };
    if (size > this.limits.maxContentBytes) return { dropped: true, sha256, size };
    await mkdir(this.blobsDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(this.blobsDir, sha256), data, { mode: 0o600 });
    return { blob: sha256, sha256, size };
  }

  /** The kept bytes, checked against their digest; throws when they are gone or damaged. */
  async content(ref: ContentRef): Promise<Buffer> {
    if ("dropped" in ref)
      throw new Error(`the content (${ref.size} bytes) was larger than the limit and was not kept`);
    let data: Buffer;
    if ("inline" in ref) data = Buffer.from(ref.inline, "base64");
    else {
      try {
        data = await readFile(join(this.blobsDir, ref.blob));
      } catch (err) {
        if (isENOENT(err)) throw new Error(`the kept content ${ref.blob} is gone (retention limit)`);
        throw err;
      }
    }
    if (createHash("sha256").update(data).digest("hex") !== ref.sha256)
      throw new Error(`the kept content ${ref.sha256} is damaged`);
    return data;
  }

  async save(rec: RunRecord): Promise<void> {
    if (!ID.test(rec.id)) throw new Error(`bad run id ${JSON.stringify(rec.id)}`);
    await mkdir(this.runsDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(this.runsDir, `${rec.id}.json`), JSON.stringify(rec), { mode: 0o600 });
    await this.prune();
  }

  async load(id: string): Promise<RunRecord> {
    if (!ID.test(id)) throw new RunNotFound(`no run ${JSON.stringify(id)} is kept here (not a run id)`);
    let text: string;
    try {
      text = await readFile(join(this.runsDir, `${id}.json`), "utf8");
    } catch (err) {
      if (isENOENT(err))
        throw new RunNotFound(
          `no run ${id} is kept here (only runs that changed something are kept, the newest ${this.limits.maxRuns}; list them with state.runs)`,
        );
      throw err;
    }
    try {
      const rec = JSON.parse(text) as RunRecord;
      if (rec.v !== 1 || !Array.isArray(rec.states)) throw new Error("not a run record");
      return rec;
    } catch (err) {
      throw new Error(`kept run ${id} is unreadable: ${errText(err)}`);
    }
  }

  /** Kept runs, newest first; unreadable records are skipped. */
  async list(): Promise<RunRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.runsDir);
    } catch (err) {
      if (isENOENT(err)) return [];
      throw err;
    }
    const out: RunRecord[] = [];
    for (const n of names) {
      if (!n.endsWith(".json")) continue;
      try {
        out.push(await this.load(n.slice(0, -5)));
      } catch {
        // a damaged record is reported by load() when asked for; the list shows what is usable
      }
    }
    return out.sort((a, b) => (a.finished_at < b.finished_at ? 1 : a.finished_at > b.finished_at ? -1 : 0));
  }

  /** Drops the oldest runs beyond maxRuns, then contents no run references, then runs until under the byte limit. */
  async prune(): Promise<void> {
    const runs = await this.list();
    const keep = runs.slice(0, this.limits.maxRuns);
    for (const r of runs.slice(this.limits.maxRuns)) await this.drop(r.id);
    for (;;) {
      const used = new Set(keep.flatMap((r) => blobsOf(r)));
      let total = 0;
      let names: string[] = [];
      try {
        names = await readdir(this.blobsDir);
      } catch (err) {
        if (!isENOENT(err)) throw err;
      }
      for (const n of names) {
        const p = join(this.blobsDir, n);
        if (!used.has(n)) await rm(p, { force: true });
        else total += (await stat(p)).size;
      }
      if (total <= this.limits.maxBlobBytes || keep.length <= 1) return;
      await this.drop(keep.pop()!.id);
    }
  }

  private async drop(id: string): Promise<void> {
    await rm(join(this.runsDir, `${id}.json`), { force: true });
  }
}

/** Blob digests a record references (anywhere in its pre-images). */
function blobsOf(rec: RunRecord): string[] {
  const out: string[] = [];
  const walk = (v: Observed | undefined) => {
    if (v === null || v === undefined || typeof v !== "object") return;
    if (Array.isArray(v)) return v.forEach(walk);
    if (typeof v.blob === "string") out.push(v.blob);
    for (const x of Object.values(v)) walk(x);
  };
  for (const s of rec.states) for (const r of s.refs) walk(r.before.data);
  return out;
}
