/**
 * The enrollment decisions, independent of transport: what a signed enroll request does to the
 * record of its peel id, and what approve / reject / revoke / token do. HTTPS (peels) and NATS
 * admin requests (operators) both call into this.
 *
 * Rules that matter for safety:
 *  - an id enrolled with one key is never silently given to another key: a different key is 409
 *    unless the peel says it replaces the old enrollment, and then only an operator can approve
 *    it (tokens do not), which revokes the old key;
 *  - a rejected or revoked key stays refused;
 *  - tokens are single use: burned by a compare-and-set before anything is issued;
 *  - unauthenticated clients cannot grow the bucket without bound: new pending requests stop at a
 *    cap, abandoned ones expire, and rejected or expired records are swept after a retention
 *    period. Approved and revoked records (current trust and the audit trail) are never deleted.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadTrustedMasters } from "../auth/auth-dir.js";
import { peelPermissions } from "../auth/permissions.js";
import { isValidPeelId } from "../bus/names.js";
import { CA_FILES } from "../ca/ca.js";
import { loadMasterCurvePub } from "../settings/keys.js";
import { errText } from "../util/errors.js";
import { issueUserJwtForKey } from "./account.js";
import {
  type AdminReply,
  type AdminRequest,
  type ChallengeResponse,
  type EnrollmentRecord,
  type EnrollRequest,
  type EnrollStatusResponse,
  enrollSignedString,
  isCurvePublicKey,
  isUserPublicKey,
  type KnownIdentity,
  knownText,
  NONCE_TTL_MS,
  POLL_MAX_SKEW_MS,
  pollSignedString,
  verifyString,
} from "./protocol.js";
import {
  ConflictError,
  type EnrollmentStore,
  type EnrollmentView,
  newRequestId,
  type Versioned,
} from "./store.js";

export interface EnrollLogger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/** An answer for the HTTPS layer: status code and JSON body. */
export interface Outcome {
  code: number;
  body: EnrollStatusResponse | ChallengeResponse | { error: string };
}

export class EnrollError extends Error {
  override name = "EnrollError";
  constructor(
    readonly code: number,
    message: string,
    /** For 429: seconds the client should wait (sent as Retry-After). */
    readonly retryAfterS?: number,
  ) {
    super(message);
  }
}

export interface RegistrarDeps {
  store: EnrollmentStore;
  authDir: string;
  /** Revokes user keys in the account JWT (pushes to the server). */
  revoke: (keys: string[]) => Promise<void>;
  logger: EnrollLogger;
  nonceTtlMs?: number;
  /** Default lifetime of one-time tokens. */
  tokenTtlS?: number;
  now?: () => number;
  /** Live record summaries: the pending count and sweep candidates (default: scan the bucket). */
  view?: EnrollmentView;
  /** New pending requests stop here (default 1,000; 0 = no cap). */
  maxPending?: number;
  /** Whether an id without an enrollment record already exists (creds, facts): see known.ts. */
  knownIdentity?: (peelId: string) => Promise<KnownIdentity | undefined>;
  /**
   * Told after a decision is stored: a request became pending, was approved (by an operator or a
   * token) or rejected. The master turns it into `_master/enroll/<peel>/<what>` events.
   */
  announce?: (what: EnrollDecision, record: EnrollmentRecord, by?: string) => void;
}

export type EnrollDecision = "pending" | "approved" | "rejected";

export const DEFAULT_MAX_PENDING = 1000;
export const DEFAULT_PENDING_MAX_AGE_MS = 7 * 24 * 3600_000;
export const DEFAULT_REJECTED_RETENTION_MS = 30 * 24 * 3600_000;

export interface SweepLimits {
  /** A pending request older than this becomes `expired`. */
  pendingMaxAgeMs: number;
  /** Rejected and expired records older than this are deleted. */
  rejectedRetentionMs: number;
}

export interface SweepCounts {
  /** Pending requests that became `expired` (or, for a replacement, gave way to the enrolled key). */
  expired: number;
  /** Rejected and expired records deleted (or rolled back to the revoked key they carried). */
  removed: number;
}

function days(ms: number): string {
  const d = ms / 86_400_000;
  return d >= 1 && Number.isInteger(d) ? `${d} days` : `${Math.round(ms / 1000)} s`;
}

export const DEFAULT_TOKEN_TTL_S = 3600;
/** A token that outlives a month is a standing password, not a one-time token. */
export const MAX_TOKEN_TTL_S = 30 * 24 * 3600;

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function str(v: unknown): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= 512;
}

function withoutJwt(r: EnrollmentRecord): EnrollmentRecord {
  const { jwt: _j, ...rest } = r;
  if (rest.replaces) {
    const { jwt: _rj, ...rep } = rest.replaces;
    rest.replaces = rep;
  }
  return rest;
}

/**
 * The record a replacement request was filed on top of, as it was: rejecting or expiring a
 * replacement of an approved key keeps that key, and sweeping a request filed over a revoked key
 * keeps the revocation on record.
 */
function restoreReplaced(r: EnrollmentRecord, reason: string): EnrollmentRecord {
  const old = r.replaces;
  if (!old) throw new Error("no replaced key to restore");
  return {
    peel_id: r.peel_id,
    status: old.status,
    request_id: old.request_id,
    public_key: old.public_key,
    curve_key: old.curve_key,
    requested_at: r.requested_at,
    ...(old.approved_at !== undefined ? { approved_at: old.approved_at } : {}),
    ...(old.approver !== undefined ? { approver: old.approver } : {}),
    ...(old.jwt !== undefined ? { jwt: old.jwt } : {}),
    ...(old.revoked_at !== undefined ? { revoked_at: old.revoked_at } : {}),
    ...(old.revoked_by !== undefined ? { revoked_by: old.revoked_by } : {}),
    reason,
  };
}

export class Registrar {
  private readonly store: EnrollmentStore;
  private readonly log: EnrollLogger;
  private readonly now: () => number;
  /** New pending requests this master is writing right now: counted against the cap. */
  private creating = 0;

  constructor(private readonly deps: RegistrarDeps) {
    this.store = deps.store;
    this.log = deps.logger;
    this.now = deps.now ?? Date.now;
  }

  // ---- peel side (HTTPS) -----------------------------------------------------------------------

  async challenge(body: Record<string, unknown>): Promise<Outcome> {
    const { peel_id, public_key, curve_key } = body;
    this.checkIdentity(peel_id, public_key, curve_key);
    const n = await this.store.issueNonce(
      peel_id as string,
      public_key as string,
      this.deps.nonceTtlMs ?? NONCE_TTL_MS,
    );
    return { code: 200, body: { nonce: n.nonce, expires_at: iso(n.expires) } };
  }

  async enroll(body: Record<string, unknown>, remote: string | undefined): Promise<Outcome> {
    const { peel_id, public_key, curve_key, nonce, signature, token, replace } = body;
    this.checkIdentity(peel_id, public_key, curve_key);
    if (!str(nonce) || !str(signature)) throw new EnrollError(400, "nonce and signature are required");
    if (token !== undefined && !str(token)) throw new EnrollError(400, "token must be a string");
    const req = { peel_id, public_key, curve_key, nonce, signature } as EnrollRequest;
    if (!(await this.store.consumeNonce(nonce, req.peel_id, req.public_key))) {
      throw new EnrollError(401, "nonce unknown, already used or expired: ask for a new challenge");
    }
    if (!verifyString(req.public_key, enrollSignedString(req), signature)) {
      throw new EnrollError(401, "bad signature: the request was not signed with public_key's seed");
    }

    const current = await this.store.get(req.peel_id);
    const cur = current?.value;
    const fresh = (): EnrollmentRecord => ({
      peel_id: req.peel_id,
      status: "pending",
      request_id: newRequestId(),
      public_key: req.public_key,
      curve_key: req.curve_key,
      requested_at: iso(this.now()),
      ...(remote !== undefined ? { remote } : {}),
    });

    let next: EnrollmentRecord;
    let tokenAllowed = true;
    if (!cur || (cur.status === "expired" && !cur.replaces)) {
      // No enrollment says whose the id is, but creds or facts may: taking over a live identity
      // needs the machine to say it replaces it, and an operator (never a token) to approve.
      const known = cur?.replaces_known ?? (await this.deps.knownIdentity?.(req.peel_id));
      if (known && replace !== true) {
        throw new EnrollError(
          409,
          `${req.peel_id} already exists (${knownText(known)}); a rebuilt machine must ask to replace it ` +
            "(zester-peel --enroll-replace), and an operator must approve that",
        );
      }
      next = { ...fresh(), ...(known ? { replaces_known: known } : {}) };
      if (known) tokenAllowed = false;
    } else if (cur.status === "expired") {
      // Nobody decided in time: a new request, from this key or another (an expired request
      // carries no trust). A revoked key underneath stays on record.
      next = { ...fresh(), ...(cur.replaces ? { replaces: cur.replaces } : {}) };
    } else if (cur.public_key === req.public_key) {
      if (cur.curve_key !== req.curve_key) {
        throw new EnrollError(409, `${req.peel_id} is enrolled with this key but another curve key`);
      }
      if (cur.status === "approved") return { code: 200, body: await this.statusBody(cur) };
      if (cur.status === "rejected" || cur.status === "revoked") {
        throw new EnrollError(403, `the enrollment of ${req.peel_id} with this key was ${cur.status}`);
      }
      if (token === undefined || cur.replaces?.status === "approved" || cur.replaces_known) {
        return { code: 202, body: await this.statusBody(cur) };
      }
      next = cur;
    } else {
      if (cur.status === "pending") {
        throw new EnrollError(
          409,
          `a request for ${req.peel_id} with another key is pending; an operator must reject it first`,
        );
      }
      if (cur.status === "approved" && replace !== true) {
        throw new EnrollError(
          409,
          `${req.peel_id} is already enrolled with another key; a rebuilt machine must ask to replace it ` +
            "(zester-peel --enroll-replace), and an operator must approve that",
        );
      }
      next = {
        ...fresh(),
        replaces: {
          request_id: cur.request_id,
          public_key: cur.public_key,
          curve_key: cur.curve_key,
          status: cur.status,
          ...(cur.approved_at !== undefined ? { approved_at: cur.approved_at } : {}),
          ...(cur.jwt !== undefined ? { jwt: cur.jwt } : {}),
          ...(cur.approver !== undefined ? { approver: cur.approver } : {}),
          ...(cur.revoked_at !== undefined ? { revoked_at: cur.revoked_at } : {}),
          ...(cur.revoked_by !== undefined ? { revoked_by: cur.revoked_by } : {}),
        },
      };
      // Handing a live identity to a new key is the operator's call, never a token's.
      tokenAllowed = cur.status !== "approved";
    }

    if (token !== undefined && tokenAllowed) {
      const t = await this.store.peekToken(token);
      if (!t) throw new EnrollError(403, "enrollment token unknown, already used or expired");
      if (t.value.peel !== undefined && t.value.peel !== req.peel_id) {
        throw new EnrollError(403, `enrollment token is for peel ${t.value.peel}, not ${req.peel_id}`);
      }
      if (!(await this.store.burnToken(token, t.revision))) {
        throw new EnrollError(403, "enrollment token already used");
      }
      const approved = await this.approveRecord(next, "token");
      await this.write(approved, current?.revision);
      this.log.info(`enrollment of ${req.peel_id} approved by a one-time token`);
      this.announce("approved", approved, "token");
      return { code: 200, body: await this.statusBody(approved) };
    }

    if (next === cur) return { code: 202, body: await this.statusBody(cur) };
    // Only a request that adds a pending record counts: re-asking with the same key and polling
    // an existing request keep working when the cap is reached.
    const max = this.deps.maxPending ?? DEFAULT_MAX_PENDING;
    if (max > 0 && (await this.pendingCount()) + this.creating >= max) {
      throw new EnrollError(
        429,
        `too many pending enrollment requests (${max}): approve or reject some, or raise the limit`,
        60,
      );
    }
    this.creating++;
    try {
      await this.write(next, current?.revision);
    } finally {
      this.creating--;
    }
    if (cur?.status === "expired" && cur.request_id !== next.request_id) {
      await this.store.removeRequestIndex(cur.request_id, cur.peel_id).catch(() => false);
    }
    this.announce("pending", next);
    this.log.info(
      `enrollment request ${next.request_id} for ${next.peel_id} pending` +
        (next.replaces ? ` (replaces key ${next.replaces.public_key})` : "") +
        (next.replaces_known ? ` (replaces ${knownText(next.replaces_known)})` : ""),
    );
    return { code: 202, body: await this.statusBody(next) };
  }

  /** A poll: authenticated by a signature over the request id and a fresh timestamp. */
  async poll(requestId: string, ts: string | null, sig: string | null): Promise<Outcome> {
    const idx = await this.store.requestIndex(requestId);
    if (!idx)
      throw new EnrollError(
        404,
        "unknown enrollment request (an expired request is removed after a while): ask again",
      );
    const t = Number(ts);
    if (!Number.isSafeInteger(t) || sig === null) throw new EnrollError(400, "ts and sig are required");
    if (!verifyString(idx.public_key, pollSignedString(requestId, t), sig)) {
      throw new EnrollError(401, "bad poll signature");
    }
    if (Math.abs(this.now() - t) > POLL_MAX_SKEW_MS) {
      throw new EnrollError(401, "stale poll timestamp (check this machine's clock)");
    }
    const cur = (await this.store.get(idx.peel_id))?.value;
    if (!cur || cur.request_id !== requestId) {
      const body: EnrollStatusResponse = {
        status: "rejected",
        request_id: requestId,
        peel_id: idx.peel_id,
        reason: "the request was rejected or superseded",
      };
      return { code: 200, body };
    }
    return { code: 200, body: await this.statusBody(cur) };
  }

  private async pendingCount(): Promise<number> {
    if (this.deps.view) return this.deps.view.pendingCount();
    return (await this.store.list()).filter((r) => r.status === "pending").length;
  }

  // ---- garbage collection (the master's sweep timer) --------------------------------------------

  /**
   * Expires pending requests older than the max age and deletes rejected and expired records
   * older than the retention. Each change is a compare-and-set on the revision just read, after
   * checking again that it still applies, so two masters sweeping at once (or a peel asking again
   * meanwhile) make one change at most; the loser skips the record.
   */
  async sweep(now: number, limits: SweepLimits): Promise<SweepCounts> {
    const counts: SweepCounts = { expired: 0, removed: 0 };
    const due = (status: string, since: number) =>
      (status === "pending" && now - since > limits.pendingMaxAgeMs) ||
      ((status === "rejected" || status === "expired") && now - since > limits.rejectedRetentionMs);
    const ids = this.deps.view
      ? this.deps.view.select((s) => due(s.status, s.since))
      : (await this.store.list()).map((r) => r.peel_id);
    for (const id of ids) {
      try {
        const v = await this.store.get(id);
        if (!v) continue;
        const r = v.value;
        const at =
          r.status === "rejected" ? r.rejected_at : r.status === "expired" ? r.expired_at : r.requested_at;
        const since = at === undefined ? Number.NaN : Date.parse(at);
        if (!Number.isFinite(since) || !due(r.status, since)) continue;
        if (r.status === "pending") {
          if (await this.expire(v, now, limits.pendingMaxAgeMs)) counts.expired++;
        } else if (await this.drop(v)) {
          counts.removed++;
        }
      } catch (err) {
        this.log.warn(`sweeping the enrollment of ${id}: ${errText(err)}`);
      }
    }
    return counts;
  }

  private async expire(v: Versioned<EnrollmentRecord>, now: number, maxAgeMs: number): Promise<boolean> {
    const r = v.value;
    const next: EnrollmentRecord =
      r.replaces?.status === "approved"
        ? restoreReplaced(r, `replacement request ${r.request_id} (key ${r.public_key}) expired unapproved`)
        : {
            ...r,
            status: "expired",
            expired_at: iso(now),
            reason: `not approved within ${days(maxAgeMs)}: the machine must ask again`,
          };
    if (!(await this.casPut(next, v.revision))) return false;
    // The rolled-back request is gone: its machine's next poll gets 404 and asks again.
    if (next.status !== "expired") await this.store.removeRequestIndex(r.request_id, r.peel_id);
    return true;
  }

  /** Deletes a swept record and its request index, or rolls back to a revoked key it carried. */
  private async drop(v: Versioned<EnrollmentRecord>): Promise<boolean> {
    const r = v.value;
    if (r.replaces?.status === "revoked" || r.replaces?.status === "approved") {
      const back = restoreReplaced(r, `request ${r.request_id} (key ${r.public_key}) was ${r.status}`);
      if (!(await this.casPut(back, v.revision))) return false;
      await this.store.removeRequestIndex(r.request_id, r.peel_id);
      return true;
    }
    if (!(await this.store.remove(r.peel_id, v.revision))) return false;
    this.deps.view?.forget(r.peel_id, v.revision);
    await this.store.removeRequestIndex(r.request_id, r.peel_id);
    if (r.replaces) await this.store.removeRequestIndex(r.replaces.request_id, r.peel_id);
    return true;
  }

  /** Tells `deps.announce` of a stored decision; a listener's failure never undoes it. */
  private announce(what: EnrollDecision, r: EnrollmentRecord, by?: string): void {
    try {
      this.deps.announce?.(what, r, by);
    } catch (err) {
      this.log.warn(`announcing the enrollment of ${r.peel_id} (${what}) failed: ${errText(err)}`);
    }
  }

  /** A compare-and-set write; false when someone else changed the record first. */
  private async casPut(r: EnrollmentRecord, revision: number): Promise<boolean> {
    try {
      const rev = await this.store.put(r, revision);
      this.deps.view?.note(r, rev);
      return true;
    } catch (err) {
      if (err instanceof ConflictError) return false;
      throw err;
    }
  }

  private checkIdentity(peel_id: unknown, public_key: unknown, curve_key: unknown): void {
    if (typeof peel_id !== "string" || !isValidPeelId(peel_id)) {
      throw new EnrollError(400, "invalid peel_id: 1-128 characters from A-Z a-z 0-9 _ -, no dots");
    }
    if (!isUserPublicKey(public_key)) throw new EnrollError(400, "public_key is not a user nkey (U...)");
    if (!isCurvePublicKey(curve_key)) throw new EnrollError(400, "curve_key is not a curve nkey (X...)");
  }

  private async statusBody(r: EnrollmentRecord): Promise<EnrollStatusResponse> {
    const body: EnrollStatusResponse = { status: r.status, request_id: r.request_id, peel_id: r.peel_id };
    if (r.replaces) body.replaces = r.replaces.public_key;
    else if (r.replaces_known) body.replaces = r.replaces_known.public_key ?? r.replaces_known.via;
    if (r.reason !== undefined) body.reason = r.reason;
    if (r.status === "approved" && r.jwt !== undefined) {
      body.jwt = r.jwt;
      try {
        body.trusted_masters = [...(await loadTrustedMasters(this.deps.authDir))];
      } catch (err) {
        this.log.warn(`no trusted master keys to hand out: ${errText(err)}`);
      }
      try {
        body.master_curve = await loadMasterCurvePub(this.deps.authDir);
      } catch (err) {
        this.log.warn(`no master curve key to hand out (secrets cannot be opened): ${errText(err)}`);
      }
      try {
        body.nats_ca = await readFile(join(this.deps.authDir, CA_FILES.caCert), "utf8");
      } catch {
        // A site whose NATS certificate chains to a public CA has no CA file to hand out.
      }
    }
    return body;
  }

  private async write(r: EnrollmentRecord, revision: number | undefined): Promise<void> {
    try {
      this.deps.view?.note(r, await this.store.put(r, revision));
    } catch (err) {
      if (err instanceof ConflictError) throw new EnrollError(409, `${err.message}; retry`);
      throw err;
    }
    await this.store.indexRequest(r.request_id, r.peel_id, r.public_key);
  }

  /** Issues the JWT (revoking a replaced approved key first) and returns the approved record. */
  private async approveRecord(r: EnrollmentRecord, by: string): Promise<EnrollmentRecord> {
    if (r.replaces?.status === "approved") {
      await this.deps.revoke([r.replaces.public_key]);
      this.log.info(`revoked the replaced key ${r.replaces.public_key} of ${r.peel_id}`);
    }
    const known = r.replaces_known;
    if (known?.public_key !== undefined && known.revoked_at === undefined) {
      await this.deps.revoke([known.public_key]);
      this.log.info(`revoked the creds-issued key ${known.public_key} of ${r.peel_id}`);
    }
    const jwt = await issueUserJwtForKey(
      this.deps.authDir,
      `peel-${r.peel_id}`,
      r.public_key,
      peelPermissions(r.peel_id),
    );
    const out: EnrollmentRecord = {
      ...r,
      status: "approved",
      approved_at: iso(this.now()),
      approver: by,
      jwt,
    };
    if (known?.public_key !== undefined && known.revoked_at === undefined) {
      out.replaces_known = { ...known, revoked_at: out.approved_at! };
    }
    if (out.replaces)
      out.replaces = {
        ...out.replaces,
        status: out.replaces.status === "approved" ? "revoked" : out.replaces.status,
      };
    return out;
  }

  // ---- operator side (NATS admin requests) -----------------------------------------------------

  private async mustFind(id: unknown): Promise<Versioned<EnrollmentRecord>> {
    if (!str(id)) throw new EnrollError(400, "a request id or peel id is required");
    const r = await this.store.find(id);
    if (!r) throw new EnrollError(404, `no enrollment matches ${JSON.stringify(id)}`);
    return r;
  }

  async list(req: AdminRequest): Promise<AdminReply> {
    const all = await this.store.list();
    const records = all.filter((r) => req.status === undefined || r.status === req.status).map(withoutJwt);
    return { ok: true, records };
  }

  async show(req: AdminRequest): Promise<AdminReply> {
    return { ok: true, record: (await this.mustFind(req.id)).value };
  }

  async approve(req: AdminRequest): Promise<AdminReply> {
    const by = req.by ?? "operator";
    const targets: Versioned<EnrollmentRecord>[] = [];
    if (req.all === true) {
      for (const r of await this.store.list()) {
        if (r.status !== "pending") continue;
        const v = await this.store.get(r.peel_id);
        if (v) targets.push(v);
      }
    } else {
      targets.push(await this.mustFind(req.id));
    }
    const peels: string[] = [];
    const errors: string[] = [];
    for (const t of targets) {
      if (t.value.status !== "pending") {
        errors.push(`${t.value.peel_id} is ${t.value.status}, not pending`);
        continue;
      }
      try {
        const approved = await this.approveRecord(t.value, by);
        await this.write(approved, t.revision);
        this.announce("approved", approved, by);
        peels.push(t.value.peel_id);
        this.log.info(`enrollment of ${t.value.peel_id} (${t.value.request_id}) approved by ${by}`);
      } catch (err) {
        errors.push(`${t.value.peel_id}: ${errText(err)}`);
      }
    }
    return errors.length > 0 ? { ok: false, peels, error: errors.join("; ") } : { ok: true, peels };
  }

  async reject(req: AdminRequest): Promise<AdminReply> {
    const by = req.by ?? "operator";
    const t = await this.mustFind(req.id);
    const r = t.value;
    if (r.status !== "pending") throw new EnrollError(409, `${r.peel_id} is ${r.status}, not pending`);
    let next: EnrollmentRecord;
    const old = r.replaces;
    if (old?.status === "approved") {
      // Rejecting a replacement keeps the machine that is enrolled now.
      next = restoreReplaced(
        r,
        `replacement request ${r.request_id} (key ${r.public_key}) rejected by ${by}`,
      );
    } else {
      next = {
        ...r,
        status: "rejected",
        rejected_at: iso(this.now()),
        approver: by,
        ...(req.reason !== undefined ? { reason: req.reason } : {}),
      };
    }
    await this.write(next, t.revision);
    this.announce(
      "rejected",
      { ...r, status: "rejected", ...(next.reason ? { reason: next.reason } : {}) },
      by,
    );
    this.log.info(`enrollment request ${r.request_id} for ${r.peel_id} rejected by ${by}`);
    return { ok: true, peels: [r.peel_id] };
  }

  async revoke(req: AdminRequest): Promise<AdminReply> {
    const by = req.by ?? "operator";
    const t = await this.mustFind(req.id);
    const r = t.value;
    const keys: string[] = [];
    if (r.status === "approved") keys.push(r.public_key);
    if (r.replaces?.status === "approved") keys.push(r.replaces.public_key);
    if (keys.length === 0) {
      throw new EnrollError(409, `${r.peel_id} is ${r.status}: nothing to revoke (reject a pending request)`);
    }
    await this.deps.revoke(keys);
    const { replaces: _r, ...rest } = r;
    const next: EnrollmentRecord = {
      ...rest,
      status: "revoked",
      revoked_at: iso(this.now()),
      revoked_by: by,
      ...(req.reason !== undefined ? { reason: req.reason } : {}),
    };
    await this.write(next, t.revision);
    this.log.info(`${r.peel_id} revoked by ${by} (keys ${keys.join(", ")})`);
    return { ok: true, peels: [r.peel_id], record: withoutJwt(next) };
  }

  async token(req: AdminRequest): Promise<AdminReply> {
    if (req.peel !== undefined && !isValidPeelId(req.peel)) {
      throw new EnrollError(400, `invalid peel id ${JSON.stringify(req.peel)}`);
    }
    const ttl = req.ttl_s ?? this.deps.tokenTtlS ?? DEFAULT_TOKEN_TTL_S;
    if (!Number.isFinite(ttl) || ttl <= 0 || ttl > MAX_TOKEN_TTL_S) {
      throw new EnrollError(400, `token ttl must be between 1 s and ${MAX_TOKEN_TTL_S} s`);
    }
    const expires = this.now() + ttl * 1000;
    const token = await this.store.createToken({
      expires_at: expires,
      created_at: iso(this.now()),
      ...(req.peel !== undefined ? { peel: req.peel } : {}),
      ...(req.by !== undefined ? { created_by: req.by } : {}),
    });
    this.log.info(
      `one-time enrollment token created by ${req.by ?? "operator"}${req.peel ? ` for ${req.peel}` : ""}`,
    );
    return { ok: true, token, expires_at: iso(expires) };
  }
}
