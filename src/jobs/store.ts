/**
 * Job records in KV. `jobs` holds `<jid>` (the JobRecord) and `active.<jid>` (a tiny index entry
 * while the job runs); `job-returns` holds `<jid>.<peel>`. Records change with compare-and-set
 * so two masters (an owner and one taking over a kill) can never overwrite each other blindly.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import type { KV, KvEntry } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { openKv } from "../bus/bootstrap.js";
import { decode, encode } from "../bus/codec.js";
import { isWrongLastSequence } from "../bus/errors.js";
import { kvStream } from "../bus/names.js";
import { isKsuid, parseKsuid } from "./ksuid.js";
import type { ActiveJobEntry, JobRecord, JobStatus, PeelJobStatus, PeelReturn } from "./wire.js";

export interface StoredJob {
  record: JobRecord;
  /** KV revision of the record, for compare-and-set updates. */
  revision: number;
}

/** Thrown when a CAS update lost against another writer and the caller asked not to retry. */
export class JobConflictError extends Error {
  override name = "JobConflictError";
}

/** Peel statuses after which a peel is no longer waited for. */
const SETTLED: ReadonlySet<PeelJobStatus> = new Set([
  "success",
  "failed",
  "unreachable",
  "timeout",
  "canceled",
  "expired",
]);

export function isPeelSettled(s: PeelJobStatus): boolean {
  return SETTLED.has(s);
}

export function isJobFinished(s: JobStatus): boolean {
  return s !== "running";
}

/**
 * The status of a job whose peels have all settled (see docs/fleet.md): canceled and timeout win
 * when any peel ended that way; otherwise complete when every peel succeeded, failed when none
 * did, partial in between.
 */
export function settledJobStatus(peels: Record<string, PeelJobStatus>): Exclude<JobStatus, "running"> {
  const all = Object.values(peels);
  if (all.includes("canceled")) return "canceled";
  if (all.includes("timeout")) return "timeout";
  const ok = all.filter((s) => s === "success").length;
  if (ok === all.length) return "complete";
  if (ok === 0) return "failed";
  return "partial";
}

/** Decodes a stored payload without the wire's protocol field, which is not part of the record. */
function read<T extends object>(data: Uint8Array): T {
  const { v: _v, ...rest } = decode<T>(data);
  return rest as unknown as T;
}

function isMissing(e: KvEntry | null): e is null {
  return e === null || e.operation !== "PUT";
}

/** Gets in flight at once when reading a job's returns. */
const RETURN_GET_BATCH = 256;
export class JobStore {
  constructor(
    readonly jobs: KV,
    readonly returns: KV,
    private readonly nc?: NatsConnection,
  ) {}

  static async open(nc: NatsConnection): Promise<JobStore> {
    const [jobs, returns] = await Promise.all([openKv(nc, "jobs"), openKv(nc, "job-returns")]);
    return new JobStore(jobs, returns, nc);
  }

  /** Writes a new record and its active entry; fails if the jid already exists. */
  async create(record: JobRecord): Promise<StoredJob> {
    const revision = await this.jobs.create(record.jid, encode(record));
    const active: ActiveJobEntry = {
      jid: record.jid,
      fun: record.fun,
      target: record.target,
      created_at: record.created_at,
    };
    await this.jobs.put(`active.${record.jid}`, encode(active));
    return { record, revision };
  }

  async get(jid: string): Promise<StoredJob | undefined> {
    const e = await this.jobs.get(jid);
    if (isMissing(e)) return undefined;
    return { record: read<JobRecord>(e.value), revision: e.revision };
  }

  /** CAS write of a record read at `revision`; throws JobConflictError when someone wrote in between. */
  async write(record: JobRecord, revision: number): Promise<StoredJob> {
    try {
      const rev = await this.jobs.update(record.jid, encode(record), revision);
      return { record, revision: rev };
    } catch (err) {
      if (isWrongLastSequence(err))
        throw new JobConflictError(`job ${record.jid} was changed by another writer`);
      throw err;
    }
  }

  /**
   * Read-modify-write with CAS, retried on conflict. `mutate` returns the new record, or
   * undefined to leave it as it is (e.g. because it already finished).
   */
  async update(jid: string, mutate: (r: JobRecord) => JobRecord | undefined): Promise<StoredJob | undefined> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const cur = await this.get(jid);
      if (!cur) return undefined;
      const next = mutate(structuredClone(cur.record));
      if (!next) return cur;
      try {
        return await this.write(next, cur.revision);
      } catch (err) {
        if (!(err instanceof JobConflictError)) throw err;
      }
    }
    throw new JobConflictError(`job ${jid}: too many concurrent updates`);
  }

  async removeActive(jid: string): Promise<void> {
    await this.jobs.delete(`active.${jid}`);
  }

  /**
   * Most recent jobs first. KSUIDs sort by the second only, so the jobs of the last second that
   * fits are all read and ordered by `created_at` (milliseconds), then by jid.
   */
  async list(opts: { limit?: number } = {}): Promise<JobRecord[]> {
    const limit = opts.limit ?? 20;
    const jids = [...(await this.jobIds())].sort().reverse();
    let end = Math.min(limit, jids.length);
    const second = (jid: string) => parseKsuid(jid).timestamp.getTime();
    while (end > 0 && end < jids.length && second(jids[end]!) === second(jids[end - 1]!)) end++;
    const records = await Promise.all(jids.slice(0, end).map((j) => this.get(j)));
    return records
      .filter((r): r is StoredJob => r !== undefined)
      .map((r) => r.record)
      .sort((a, b) => {
        const bySecond = second(b.jid) - second(a.jid);
        if (bySecond !== 0) return bySecond;
        const t = Date.parse(b.created_at) - Date.parse(a.created_at);
        return t !== 0 && Number.isFinite(t) ? t : a.jid < b.jid ? 1 : a.jid > b.jid ? -1 : 0;
      })
      .slice(0, limit);
  }

  /**
   * Every recorded jid. The server's own subject list of the bucket's stream is one snapshot;
   * a `keys()` listing (a consumer) misses keys rewritten while it runs (seen: 21 of 90 jobs
   * missing while a master finished them), so it is only the fallback where stream info is refused.
   */
  private async jobIds(): Promise<Set<string>> {
    const found = new Set<string>();
    if (this.nc) {
      try {
        const jsm = await jetstreamManager(this.nc, { checkAPI: false });
        const prefix = "$KV.jobs.";
        const info = await jsm.streams.info(kvStream("jobs"), { subjects_filter: `${prefix}*` });
        for (const subject of Object.keys(info.state.subjects ?? {})) {
          const k = subject.slice(prefix.length);
          if (isKsuid(k)) found.add(k);
        }
        return found;
      } catch {
        found.clear();
      }
    }
    // A key written while the listing runs is delivered again: keep each jid once.
    for await (const k of await this.jobs.keys("*")) if (isKsuid(k)) found.add(k);
    return found;
  }

  async active(): Promise<ActiveJobEntry[]> {
    const keys: string[] = [];
    for await (const k of await this.jobs.keys("active.*")) keys.push(k);
    const entries = await Promise.all(keys.map((k) => this.jobs.get(k)));
    return entries
      .filter((e): e is KvEntry => !isMissing(e))
      .map((e) => read<ActiveJobEntry>(e.value))
      .sort((a, b) => (a.jid < b.jid ? -1 : a.jid > b.jid ? 1 : 0));
  }

  async putReturn(ret: PeelReturn): Promise<void> {
    await this.returns.put(`${ret.jid}.${ret.peel}`, encode(ret));
  }

  async getReturn(jid: string, peel: string): Promise<PeelReturn | undefined> {
    const e = await this.returns.get(`${jid}.${peel}`);
    return isMissing(e) ? undefined : read<PeelReturn>(e.value);
  }

  /**
   * The stored returns of a job's peels, keyed by peel id. Read key by key (direct gets, in
   * batches) rather than through a `keys()` listing: a listing made while returns are being
   * written could stall for good (seen with @nats-io/kv 3.4 against nats-server 2.9, as a
   * test that polled this while its peel answered).
   */
  async returnsOf(jid: string, peels: Iterable<string>): Promise<Map<string, PeelReturn>> {
    const out = new Map<string, PeelReturn>();
    const ids = [...peels];
    for (let i = 0; i < ids.length; i += RETURN_GET_BATCH) {
      const batch = ids.slice(i, i + RETURN_GET_BATCH);
      const entries = await Promise.all(batch.map((p) => this.returns.get(`${jid}.${p}`)));
      entries.forEach((e, j) => {
        if (!isMissing(e)) out.set(batch[j]!, { ...read<PeelReturn>(e.value), peel: batch[j]! });
      });
    }
    return out;
  }
}
