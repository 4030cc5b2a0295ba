/**
 * Enrollment state in KV `enrollments`: one record per peel id, an index from request id to the
 * key that made it, single-use challenge nonces and hashed one-time tokens. Every change is a
 * compare-and-set on the entry's revision, so two masters (or two requests) cannot both win.
 */
import { createHash, randomBytes } from "node:crypto";
import type { KV, KvEntry, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import { decode, encode } from "../bus/codec.js";
import { isWrongLastSequence } from "../bus/errors.js";
import { isValidPeelId } from "../bus/names.js";
import { errText } from "../util/errors.js";
import { type EnrollmentRecord, type EnrollmentStatus, kvKeys, REQUEST_ID_PATTERN } from "./protocol.js";

export class ConflictError extends Error {
  override name = "ConflictError";
}

const B32 = "abcdefghijklmnopqrstuvwxyz234567";

/** 130 random bits as 26 base32 characters: unguessable and safe in URLs and KV keys. */
export function newRequestId(): string {
  const bytes = randomBytes(26);
  let s = "";
  for (const b of bytes) s += B32[b & 31];
  return s;
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export interface Versioned<T> {
  value: T;
  revision: number;
}

interface RequestIndex {
  peel_id: string;
  public_key: string;
}

interface NonceEntry {
  peel_id: string;
  public_key: string;
  expires_at: number;
}

export interface TokenEntry {
  peel?: string;
  expires_at: number;
  created_at: string;
  created_by?: string;
}

function live(e: KvEntry | null): e is KvEntry {
  return e !== null && e.operation === "PUT";
}

export class EnrollmentStore {
  constructor(private readonly kv: KV) {}

  private async read<T extends object>(key: string): Promise<Versioned<T> | undefined> {
    const e = await this.kv.get(key);
    if (!live(e)) return undefined;
    const { v: _v, ...value } = decode<T>(e.value);
    return { value: value as unknown as T, revision: e.revision };
  }

  async get(peelId: string): Promise<Versioned<EnrollmentRecord> | undefined> {
    return this.read<EnrollmentRecord>(kvKeys.record(peelId));
  }

  /** Creates (revision undefined) or replaces (CAS) a record; a lost race throws ConflictError. */
  async put(rec: EnrollmentRecord, revision: number | undefined): Promise<number> {
    const key = kvKeys.record(rec.peel_id);
    try {
      return revision === undefined
        ? await this.kv.create(key, encode(rec))
        : await this.kv.update(key, encode(rec), revision);
    } catch (err) {
      if (isWrongLastSequence(err))
        throw new ConflictError(`enrollment of ${rec.peel_id} changed concurrently`);
      throw err;
    }
  }

  async indexRequest(requestId: string, peelId: string, publicKey: string): Promise<void> {
    const idx: RequestIndex = { peel_id: peelId, public_key: publicKey };
    await this.kv.put(kvKeys.request(requestId), encode(idx));
  }

  async requestIndex(requestId: string): Promise<RequestIndex | undefined> {
    if (!REQUEST_ID_PATTERN.test(requestId)) return undefined;
    return (await this.read<RequestIndex>(kvKeys.request(requestId)))?.value;
  }

  /** Every peel record (dotted keys are indexes, nonces and tokens). */
  async list(): Promise<EnrollmentRecord[]> {
    const ids: string[] = [];
    for await (const k of await this.kv.keys()) if (isValidPeelId(k)) ids.push(k);
    const out: EnrollmentRecord[] = [];
    for (const id of ids.sort()) {
      const r = await this.get(id);
      if (r) out.push(r.value);
    }
    return out;
  }

  /** A record named by request id or by peel id. */
  async find(id: string): Promise<Versioned<EnrollmentRecord> | undefined> {
    const idx = await this.requestIndex(id);
    if (idx) {
      const r = await this.get(idx.peel_id);
      if (r && r.value.request_id === id) return r;
    }
    return isValidPeelId(id) ? this.get(id) : undefined;
  }

  async issueNonce(
    peelId: string,
    publicKey: string,
    ttlMs: number,
  ): Promise<{ nonce: string; expires: number }> {
    const nonce = randomBytes(24).toString("base64url");
    const expires = Date.now() + ttlMs;
    const entry: NonceEntry = { peel_id: peelId, public_key: publicKey, expires_at: expires };
    await this.kv.create(kvKeys.nonce(nonce), encode(entry));
    return { nonce, expires };
  }

  /**
   * Burns a nonce: true only for the first caller, for the peel and key it was issued to, before
   * it expired. The purge is a CAS on the revision read, so two concurrent uses cannot both pass.
   */
  async consumeNonce(nonce: string, peelId: string, publicKey: string): Promise<boolean> {
    if (!/^[A-Za-z0-9_-]{32}$/.test(nonce)) return false;
    const key = kvKeys.nonce(nonce);
    const e = await this.read<NonceEntry>(key);
    if (!e) return false;
    try {
      await this.kv.purge(key, { previousSeq: e.revision });
    } catch (err) {
      if (isWrongLastSequence(err)) return false;
      throw err;
    }
    return e.value.peel_id === peelId && e.value.public_key === publicKey && Date.now() <= e.value.expires_at;
  }

  /** Drops nonces nobody used (a challenge without an enroll). */
  async sweepNonces(now = Date.now()): Promise<number> {
    let n = 0;
    for await (const k of await this.kv.keys("nonce.>")) {
      const e = await this.read<NonceEntry>(k);
      if (e && e.value.expires_at < now) {
        await this.kv.purge(k, { previousSeq: e.revision }).catch(() => {});
        n++;
      }
    }
    return n;
  }

  /**
   * Deletes a peel record if it is still at `revision`; false when it changed or is gone (another
   * master swept it, or the peel asked again meanwhile).
   */
  async remove(peelId: string, revision: number): Promise<boolean> {
    try {
      await this.kv.purge(kvKeys.record(peelId), { previousSeq: revision });
      return true;
    } catch (err) {
      if (isWrongLastSequence(err)) return false;
      throw err;
    }
  }

  /** Deletes a request index entry, only if it still names `peelId` (CAS on the entry read). */
  async removeRequestIndex(requestId: string, peelId: string): Promise<boolean> {
    if (!REQUEST_ID_PATTERN.test(requestId)) return false;
    const key = kvKeys.request(requestId);
    const e = await this.read<RequestIndex>(key);
    if (!e || e.value.peel_id !== peelId) return false;
    try {
      await this.kv.purge(key, { previousSeq: e.revision });
      return true;
    } catch (err) {
      if (isWrongLastSequence(err)) return false;
      throw err;
    }
  }

  /** Drops tokens past their expiry (used ones are already gone: burning purges them). */
  async sweepTokens(now = Date.now()): Promise<number> {
    let n = 0;
    for await (const k of await this.kv.keys("token.>")) {
      const e = await this.read<TokenEntry>(k);
      if (!e || e.value.expires_at >= now) continue;
      try {
        await this.kv.purge(k, { previousSeq: e.revision });
        n++;
      } catch (err) {
        if (!isWrongLastSequence(err)) throw err;
      }
    }
    return n;
  }

  async createToken(entry: TokenEntry): Promise<string> {
    const token = `zet_${randomBytes(24).toString("base64url")}`;
    await this.kv.create(kvKeys.token(hashToken(token)), encode(entry));
    return token;
  }

  /** The token's entry if it exists and has not expired (does not burn it). */
  async peekToken(token: string): Promise<Versioned<TokenEntry> | undefined> {
    const e = await this.read<TokenEntry>(kvKeys.token(hashToken(token)));
    if (!e || Date.now() > e.value.expires_at) return undefined;
    return e;
  }

  /** Burns a token; false when someone else burned it first. */
  async burnToken(token: string, revision: number): Promise<boolean> {
    try {
      await this.kv.purge(kvKeys.token(hashToken(token)), { previousSeq: revision });
      return true;
    } catch (err) {
      if (isWrongLastSequence(err)) return false;
      throw err;
    }
  }
}

/** What the view keeps per peel record: enough to count pending requests and pick sweep candidates. */
export interface RecordSummary {
  status: EnrollmentStatus;
  revision: number;
  /** When the record entered its status (ms): requested, rejected or expired time. */
  since: number;
}

function statusSince(r: EnrollmentRecord, fallback: number): number {
  const at = r.status === "rejected" ? r.rejected_at : r.status === "expired" ? r.expired_at : r.requested_at;
  const t = at === undefined ? Number.NaN : Date.parse(at);
  return Number.isFinite(t) ? t : fallback;
}

/**
 * A live summary of every peel record, fed by a KV watch on the single-token keys (peel ids: the
 * dotted index, nonce and token keys are not watched). Counting pending requests on each new
 * request must not cost a scan of the bucket, which would make the cap itself a DoS amplifier;
 * with several masters each one's view follows the others' writes within milliseconds.
 */
export class EnrollmentView {
  private readonly records = new Map<string, RecordSummary>();
  private iter: QueuedIterator<KvWatchEntry> | undefined;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly kv: KV,
    private readonly warn: (msg: string) => void = () => {},
  ) {}

  /** Starts the watch and resolves once the current records are loaded. */
  async start(): Promise<void> {
    // A watch whose filter matches nothing never reports "caught up": ask first whether it will.
    let any = false;
    for await (const _k of await this.kv.keys("*")) {
      any = true;
      break;
    }
    const iter = await this.kv.watch({ key: "*" });
    this.iter = iter;
    let markReady!: () => void;
    const ready = new Promise<void>((r) => {
      markReady = r;
    });
    if (!any) markReady();
    this.loop = (async () => {
      for await (const e of iter) {
        try {
          this.onEntry(e);
        } catch (err) {
          this.warn(`ignoring enrollment record ${e.key}: ${errText(err)}`);
        }
        if (e.delta === 0) markReady();
      }
      markReady();
    })();
    await ready;
  }

  async stop(): Promise<void> {
    this.iter?.stop();
    await this.loop?.catch(() => {});
  }

  private onEntry(e: KvWatchEntry): void {
    if (!isValidPeelId(e.key)) return;
    if (e.operation !== "PUT") {
      const cur = this.records.get(e.key);
      if (cur === undefined || cur.revision < e.revision) this.records.delete(e.key);
      return;
    }
    this.note(decode<EnrollmentRecord>(e.value), e.revision, e.created.getTime());
  }

  /** Records a write this master just made, without waiting for the watch to deliver it. */
  note(r: EnrollmentRecord, revision: number, fallbackSince = Date.now()): void {
    const cur = this.records.get(r.peel_id);
    if (cur !== undefined && cur.revision >= revision) return;
    this.records.set(r.peel_id, { status: r.status, revision, since: statusSince(r, fallbackSince) });
  }

  /** Records a deletion this master just made. */
  forget(peelId: string, revision: number): void {
    const cur = this.records.get(peelId);
    if (cur !== undefined && cur.revision <= revision) this.records.delete(peelId);
  }

  pendingCount(): number {
    let n = 0;
    for (const r of this.records.values()) if (r.status === "pending") n++;
    return n;
  }

  /** Peel ids whose record matches `pick` (a snapshot: the caller re-reads before changing one). */
  select(pick: (s: RecordSummary) => boolean): string[] {
    const out: string[] = [];
    for (const [id, s] of this.records) if (pick(s)) out.push(id);
    return out;
  }
}
