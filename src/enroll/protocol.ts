/**
 * The enrollment wire contract shared by the master's HTTPS service, the peel's client and the
 * admin CLI: what is signed, the record stored per peel, and the admin request subjects.
 *
 * Signatures are nkey (Ed25519) signatures with the peel's own user key, base64url encoded. The
 * signed strings carry a fixed prefix so a signature made for enrollment can never be replayed
 * as any other Zester signature, and vice versa.
 */
import { fromPublic } from "@nats-io/nkeys";
import { subjects } from "../bus/names.js";

export const ENROLL_API_PREFIX = "/v1/enroll";
export const DEFAULT_ENROLL_PORT = 8443;

/** How long a challenge nonce stays usable. */
export const NONCE_TTL_MS = 120_000;
/** How far a poll's timestamp may be from the master's clock. */
export const POLL_MAX_SKEW_MS = 120_000;
/** Bodies are a few hundred bytes; anything much larger is not a client of ours. */
export const MAX_BODY_BYTES = 16 * 1024;

/**
 * `expired`: a pending request nobody decided on within the master's max age (default 7 days).
 * The peel that polls it is told to ask again; the record is deleted later like a rejected one.
 */
export type EnrollmentStatus = "pending" | "approved" | "rejected" | "revoked" | "expired";

export const ENROLLMENT_STATUSES: readonly EnrollmentStatus[] = [
  "pending",
  "approved",
  "rejected",
  "revoked",
  "expired",
];

/** What an earlier enrollment of the same id looked like, kept on a replacement request. */
export interface ReplacedKey {
  request_id: string;
  public_key: string;
  curve_key: string;
  status: EnrollmentStatus;
  approved_at?: string;
  /** Kept so that rejecting the replacement restores the old enrollment exactly. */
  jwt?: string;
  approver?: string;
  /** Kept so that a revoked key's record can be restored when the request on top of it is swept. */
  revoked_at?: string;
  revoked_by?: string;
}

/**
 * An id that exists outside the enrollment records: creds issued by `zester peel creds`
 * (`public_key` known), or a peel that has published facts (its key is not known).
 */
export interface KnownIdentity {
  via: "creds" | "facts";
  public_key?: string;
  /** Set when approving the replacement revoked `public_key`. */
  revoked_at?: string;
}

/** How an existing identity is known, for messages and `zester enroll list`. */
export function knownText(k: KnownIdentity): string {
  return k.via === "creds"
    ? `creds issued by \`zester peel creds\`${k.public_key ? ` for key ${k.public_key}` : ""}`
    : "a peel that has published facts";
}

/** The record in KV `enrollments` under `<peel-id>`. */
export interface EnrollmentRecord {
  peel_id: string;
  status: EnrollmentStatus;
  /** The request that produced this record; polls name it. */
  request_id: string;
  public_key: string;
  curve_key: string;
  requested_at: string;
  /** Remote address of the HTTPS client, for the operator's judgement. */
  remote?: string;
  approved_at?: string;
  rejected_at?: string;
  revoked_at?: string;
  expired_at?: string;
  /** Who decided: the operator's name as the CLI reported it, or `token`. */
  approver?: string;
  revoked_by?: string;
  reason?: string;
  /** The user JWT issued for public_key (public: useless without the peel's seed). */
  jwt?: string;
  replaces?: ReplacedKey;
  /** The identity from outside enrollment that this (replacement) request takes over. */
  replaces_known?: KnownIdentity;
}

export interface ChallengeRequest {
  peel_id: string;
  public_key: string;
  curve_key: string;
}

export interface ChallengeResponse {
  nonce: string;
  expires_at: string;
}

export interface EnrollRequest extends ChallengeRequest {
  nonce: string;
  signature: string;
  token?: string;
  /** The peel knows it replaces an earlier enrollment of its id (rebuilt machine). */
  replace?: boolean;
}

/** Answer to enroll and to polls. `jwt` only when approved. */
export interface EnrollStatusResponse {
  status: EnrollmentStatus;
  request_id: string;
  peel_id: string;
  jwt?: string;
  /** Master command-signing keys the peel should trust (from the master's auth dir). */
  trusted_masters?: string[];
  /** PEM of the CA that signed the NATS server certificate, when the master has it. */
  nats_ca?: string;
  /** The master's curve public key: peels accept sealed secrets only from it. */
  master_curve?: string;
  /** Set on a pending replacement request. */
  replaces?: string;
  reason?: string;
}

export interface ErrorResponse {
  error: string;
}

export function enrollSignedString(r: ChallengeRequest & { nonce: string }): string {
  return `zester-enroll:v1:${r.peel_id}:${r.public_key}:${r.curve_key}:${r.nonce}`;
}

export function pollSignedString(requestId: string, ts: number): string {
  return `zester-enroll-poll:v1:${requestId}:${ts}`;
}

const enc = new TextEncoder();

export function signString(kp: { sign(data: Uint8Array): Uint8Array }, s: string): string {
  return Buffer.from(kp.sign(enc.encode(s))).toString("base64url");
}

/** False for any malformed key or signature: callers answer 401 without detail. */
export function verifyString(publicKey: string, s: string, signature: string): boolean {
  try {
    const sig = Buffer.from(signature, "base64url");
    if (sig.length !== 64) return false;
    return fromPublic(publicKey).verify(enc.encode(s), sig);
  } catch {
    return false;
  }
}

const USER_PUB = /^U[A-Z2-7]{55}$/;
const CURVE_PUB = /^X[A-Z2-7]{55}$/;

function checkedPublic(s: unknown, re: RegExp): boolean {
  if (typeof s !== "string" || !re.test(s)) return false;
  try {
    return fromPublic(s).getPublicKey() === s;
  } catch {
    return false;
  }
}

export function isUserPublicKey(s: unknown): s is string {
  return checkedPublic(s, USER_PUB);
}

export function isCurvePublicKey(s: unknown): s is string {
  return checkedPublic(s, CURVE_PUB);
}

/** Request ids travel in URLs and KV keys: lowercase base32-ish, one token. */
export const REQUEST_ID_PATTERN = /^[a-z2-7]{26}$/;

// ---- KV keys (peel ids have no dots, so dotted keys can never collide with a peel record) --------

export const kvKeys = {
  record: (peelId: string) => peelId,
  request: (requestId: string) => `request.${requestId}`,
  nonce: (nonce: string) => `nonce.${nonce}`,
  token: (hash: string) => `token.${hash}`,
} as const;

// ---- admin requests over NATS (admin creds may publish zester.admin.>) ---------------------------

export type AdminOp = "list" | "show" | "approve" | "reject" | "revoke" | "token";

export const ADMIN_OPS: readonly AdminOp[] = ["list", "show", "approve", "reject", "revoke", "token"];

export function adminSubject(op: AdminOp): string {
  return subjects.admin(`enroll.${op}`);
}

export interface AdminRequest {
  /** Request id or peel id (show, approve, reject, revoke). */
  id?: string;
  /** approve: every pending request. */
  all?: boolean;
  /** list: only records with this status. */
  status?: EnrollmentStatus;
  /** token: bind the token to one peel id. */
  peel?: string;
  /** token: lifetime in seconds. */
  ttl_s?: number;
  reason?: string;
  /** Who asks (user@host from the CLI); recorded, not authenticated: the creds are. */
  by?: string;
}

export interface AdminReply {
  ok: boolean;
  error?: string;
  records?: EnrollmentRecord[];
  record?: EnrollmentRecord;
  /** approve/reject/revoke: the peel ids affected. */
  peels?: string[];
  token?: string;
  expires_at?: string;
}
