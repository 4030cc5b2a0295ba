/**
 * Enrollment state in KV `enrollments`: one record per peel id, an index from request id to the
 * key that made it, single-use challenge nonces and hashed one-time tokens. Every change is a
 * compare-and-set on the entry's revision, so two masters (or two requests) cannot both win.
 */
import { createHash, randomBytes } from "node:crypto";
import type { KV, KvEntry } from "@nats-io/kv";
import { decode, encode } from "../bus/codec.js";
import { isValidPeelId } from "../bus/names.js";
import { type EnrollmentRecord, kvKeys, REQUEST_ID_PATTERN } from "./protocol.js";

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

function isCasFailure(err: unknown): boolean {
  return /wrong last sequence|key exists|10071/i.test((err as Error)?.message ?? "");
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
      if (isCasFailure(err)) throw new ConflictError(`enrollment of ${rec.peel_id} changed concurrently`);
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
      if (isCasFailure(err)) return false;
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
      if (isCasFailure(err)) return false;
      throw err;
    }
  }
}
