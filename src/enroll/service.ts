/**
 * The master's enrollment service: an HTTPS listener (TLS 1.3 only) where new peels ask to
 * join, and the `zester.admin.enroll.*` NATS services the operator CLI drives. Started by the
 * master with its own connection; one per master, the admin services share a queue group so
 * each operator request is handled once.
 */
import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { openKv } from "../bus/bootstrap.js";
import { decode, encode } from "../bus/codec.js";
import { relayedReason } from "../bus/validate.js";
import { issueServerCert, normaliseHosts, readCa } from "../ca/ca.js";
import { purgePeel } from "../peel/basket/store.js";
import { errText } from "../util/errors.js";
import { revokeUserKeys } from "./account.js";
import { announceEnrollment } from "./announce.js";
import { findKnownIdentity } from "./known.js";
import {
  ADMIN_OPS,
  type AdminOp,
  type AdminReply,
  type AdminRequest,
  adminSubject,
  DEFAULT_ENROLL_PORT,
  ENROLL_API_PREFIX,
  MAX_BODY_BYTES,
} from "./protocol.js";
import {
  DEFAULT_MAX_PENDING,
  DEFAULT_PENDING_MAX_AGE_MS,
  DEFAULT_REJECTED_RETENTION_MS,
  EnrollError,
  type EnrollLogger,
  type Outcome,
  Registrar,
} from "./registrar.js";
import { EnrollmentStore, EnrollmentView } from "./store.js";

export const ENROLL_QUEUE = "zester-enroll";

/**
 * Challenge + enroll requests per client address: a token bucket refilled at this rate. A
 * challenge costs a KV write; one enrollment attempt is two requests.
 */
export const DEFAULT_REQUESTS_PER_MINUTE = 20;
/** Bucket size: a burst of ~30 machines behind one NAT can all ask at once. */
export const DEFAULT_REQUEST_BURST = 60;
/**
 * Polls get their own, larger bucket: they write nothing, and a waiting machine must not be
 * starved by enroll attempts (its own or a flood) from the same address.
 */
export const DEFAULT_POLLS_PER_MINUTE = 300;
export const DEFAULT_SWEEP_INTERVAL_MS = 60_000;
/** A refused address is logged once per this period, not once per request. */
const REFUSAL_LOG_PERIOD_MS = 60_000;

export interface EnrollmentServiceOptions {
  /** The master's connection (master creds: may write KV and serve zester.admin.>). */
  nc: NatsConnection;
  /** Auth dir: account signing seed (issue creds), operator signing seed + sys.creds (revoke). */
  authDir: string;
  /** Listen address (default all interfaces) and port (default 8443; 0 = any free port). */
  host?: string;
  port?: number;
  /** PEM certificate and key files for HTTPS; default: a certificate issued now by the auth dir's CA. */
  certFile?: string;
  keyFile?: string;
  /** Extra names for a generated certificate (localhost, loopback and this host name are included). */
  certHosts?: readonly string[];
  /** NATS URL(s) for the system-account connection that pushes revocations (default: nc's server). */
  servers?: string | string[];
  /** CA of the NATS server certificate (default `<authDir>/nats-ca.crt`). */
  caFile?: string;
  logger?: EnrollLogger;
  nonceTtlMs?: number;
  /** Pending requests at which new ones are refused with 429 (default 1,000; 0 = no cap). */
  maxPending?: number;
  /** Challenge + enroll requests per client address and minute (default 20; 0 = no limit). */
  requestsPerMinute?: number;
  /** How many of those may come at once (default 60). */
  requestBurst?: number;
  /** Polls per client address and minute, also the burst (default 300; 0 = no limit). */
  pollsPerMinute?: number;
  /** A pending request older than this becomes `expired` (default 7 days). */
  pendingMaxAgeMs?: number;
  /** Rejected and expired records older than this are deleted (default 30 days). */
  rejectedRetentionMs?: number;
  /** How often expired nonces, tokens and old records are swept (default 60 s). */
  sweepIntervalMs?: number;
  /** The clock of the rate limits, decisions and sweeps (tests move it). */
  now?: () => number;
  /** Serve the admin subjects (default true); false leaves only HTTPS, e.g. for a second listener. */
  admin?: boolean;
}

function stderrLogger(): EnrollLogger {
  const line = (level: string, msg: string) =>
    process.stderr.write(`${new Date().toISOString()} ${level} enroll: ${msg}\n`);
  return { info: (m) => line("INFO", m), warn: (m) => line("WARN", m), error: (m) => line("ERROR", m) };
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new EnrollError(413, "request body too large");
    chunks.push(c as Buffer);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new EnrollError(400, "body is not valid JSON");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new EnrollError(400, "body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

function send(res: ServerResponse, o: Outcome, retryAfterS?: number): void {
  const text = JSON.stringify(o.body);
  res.writeHead(o.code, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
    ...(retryAfterS !== undefined ? { "retry-after": String(retryAfterS) } : {}),
  });
  res.end(text);
}

/**
 * The rate-limit key of a client: its IPv4 address, or the /64 of an IPv6 address (one host
 * usually holds a whole /64, so per-address limits would not limit it). Behind a reverse proxy
 * every client shares the proxy's address: forwarded headers are not trusted.
 */
export function clientKey(addr: string | undefined): string {
  if (addr === undefined || addr === "") return "unknown";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  if (mapped) return mapped[1] as string;
  if (!addr.includes(":")) return addr;
  const bare = addr.split("%")[0] as string;
  const [head = "", tail] = bare.split("::");
  const groups = (part: string) =>
    part === "" ? [] : part.split(":").flatMap((g) => (g.includes(".") ? ["0", "0"] : [g]));
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all =
    tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill("0"), ...t];
  return `${all
    .slice(0, 4)
    .map((g) => (Number.parseInt(g, 16) || 0).toString(16))
    .join(":")}::/64`;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Token buckets per client key, in memory: each master limits what reaches it. */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;

  constructor(
    readonly perMinute: number,
    readonly burst: number = perMinute,
  ) {
    this.perMs = perMinute / 60_000;
  }

  /** 0 when the request may go ahead, else the seconds until it may (for Retry-After). */
  take(key: string, now: number): number {
    if (this.perMinute <= 0) return 0;
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + Math.max(0, now - b.at) * this.perMs);
    b.at = now;
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perMs / 1000));
  }

  /** Forgets clients whose bucket has refilled: they are indistinguishable from new ones. */
  prune(now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + (now - b.at) * this.perMs >= this.burst) this.buckets.delete(k);
    }
  }
}

export class EnrollmentService {
  private readonly log: EnrollLogger;
  private reg: Registrar | undefined;
  private server: Server | undefined;
  private subs: Subscription[] = [];
  private sweepTimer: NodeJS.Timeout | undefined;
  private accountChain: Promise<unknown> = Promise.resolve();
  private store: EnrollmentStore | undefined;
  private view: EnrollmentView | undefined;
  private readonly now: () => number;
  private readonly requestLimit: RateLimiter;
  private readonly pollLimit: RateLimiter;
  /** When each refused client (and reason) was last logged. */
  private readonly refusalLogged = new Map<string, number>();
  private sweeping: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: EnrollmentServiceOptions) {
    this.log = opts.logger ?? stderrLogger();
    this.now = opts.now ?? Date.now;
    const perMinute = opts.requestsPerMinute ?? DEFAULT_REQUESTS_PER_MINUTE;
    this.requestLimit = new RateLimiter(
      perMinute,
      opts.requestBurst ?? Math.max(perMinute, DEFAULT_REQUEST_BURST),
    );
    this.pollLimit = new RateLimiter(opts.pollsPerMinute ?? DEFAULT_POLLS_PER_MINUTE);
  }

  /** The decisions behind both transports (after start). */
  get registrar(): Registrar {
    if (!this.reg) throw new Error("enrollment service is not started");
    return this.reg;
  }

  /** Pending requests as this master sees them (after start). */
  get pendingRequests(): number {
    if (!this.view) throw new Error("enrollment service is not started");
    return this.view.pendingCount();
  }

  /** The bound port (after start). */
  get port(): number {
    const a = this.server?.address() as AddressInfo | null | undefined;
    if (!a) throw new Error("enrollment service is not listening");
    return a.port;
  }

  /** Opens the bucket, serves admin requests, then listens for HTTPS. */
  async start(): Promise<void> {
    if (this.server) throw new Error("enrollment service already started");
    const kv = await openKv(this.opts.nc, "enrollments");
    const facts = await openKv(this.opts.nc, "facts");
    const store = new EnrollmentStore(kv);
    const view = new EnrollmentView(kv, (m) => this.log.warn(m));
    await view.start();
    this.store = store;
    this.view = view;
    this.reg = new Registrar({
      store,
      view,
      authDir: this.opts.authDir,
      logger: this.log,
      revoke: (keys) => this.revoke(keys),
      now: this.now,
      maxPending: this.opts.maxPending ?? DEFAULT_MAX_PENDING,
      ...(this.opts.nonceTtlMs !== undefined ? { nonceTtlMs: this.opts.nonceTtlMs } : {}),
      knownIdentity: (id) => findKnownIdentity(this.opts.authDir, facts, id),
      announce: (what, r, by) => announceEnrollment(this.opts.nc, what, r, by, this.now()),
    });
    if (this.opts.admin !== false) {
      for (const op of ADMIN_OPS) {
        this.subs.push(
          this.opts.nc.subscribe(adminSubject(op), {
            queue: ENROLL_QUEUE,
            callback: (err, msg) => {
              if (!err) void this.onAdmin(op, msg);
            },
          }),
        );
      }
    }
    const { cert, key } = await this.tlsMaterial();
    const server = createServer({ cert, key, minVersion: "TLSv1.3" }, (req, res) => {
      void this.onHttp(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.opts.port ?? DEFAULT_ENROLL_PORT, this.opts.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.server = server;
    this.sweepTimer = setInterval(() => {
      void this.sweep().catch((err) => this.log.warn(`enrollment sweep failed: ${errText(err)}`));
    }, this.opts.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
    this.log.info(`listening on https://${this.opts.host ?? "0.0.0.0"}:${this.port}${ENROLL_API_PREFIX}`);
  }

  /**
   * One garbage-collection pass (the timer runs it; `at` lets tests sweep "later"): unused
   * nonces, expired tokens, pending requests past the max age (→ expired), rejected and expired
   * records past the retention. Logs one line when it changed anything. Passes on one master do
   * not overlap; passes on several masters may, every change being a compare-and-set.
   */
  sweep(
    at: number = this.now(),
  ): Promise<{ nonces: number; tokens: number; expired: number; removed: number }> {
    const run = this.sweeping.then(async () => {
      const store = this.store;
      if (!store) throw new Error("enrollment service is not started");
      this.requestLimit.prune(at);
      this.pollLimit.prune(at);
      for (const [k, t] of this.refusalLogged)
        if (at - t >= REFUSAL_LOG_PERIOD_MS) this.refusalLogged.delete(k);
      // Nonces carry the wall-clock expiry they were issued with.
      const nonces = await store.sweepNonces();
      const tokens = await store.sweepTokens(at);
      const { expired, removed } = await this.registrar.sweep(at, {
        pendingMaxAgeMs: this.opts.pendingMaxAgeMs ?? DEFAULT_PENDING_MAX_AGE_MS,
        rejectedRetentionMs: this.opts.rejectedRetentionMs ?? DEFAULT_REJECTED_RETENTION_MS,
      });
      const parts = [
        expired > 0 ? `${expired} pending request(s) expired` : "",
        removed > 0 ? `${removed} rejected/expired record(s) deleted` : "",
        tokens > 0 ? `${tokens} expired token(s) deleted` : "",
        nonces > 0 ? `${nonces} unused nonce(s) deleted` : "",
      ].filter((p) => p !== "");
      if (parts.length > 0) this.log.info(`sweep: ${parts.join(", ")}`);
      return { nonces, tokens, expired, removed };
    });
    this.sweeping = run.catch(() => {});
    return run;
  }

  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.sweeping;
    await this.view?.stop();
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    const server = this.server;
    this.server = undefined;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    await this.accountChain.catch(() => {});
  }

  /** A revoked peel's basket entries would be served as current data forever: they go with it. */
  private async forgetBasket(peels: string[]): Promise<void> {
    try {
      const kv = await openKv(this.opts.nc, "basket");
      for (const p of peels) {
        const n = await purgePeel(kv, p);
        if (n > 0) this.log.info(`removed ${n} basket entr${n === 1 ? "y" : "ies"} of revoked ${p}`);
      }
    } catch (err) {
      this.log.error(`cannot remove the basket entries of ${peels.join(", ")}: ${errText(err)}`);
    }
  }

  /** Account updates are read-modify-write of one JWT: one at a time. */
  private revoke(keys: string[]): Promise<void> {
    const run = this.accountChain.then(async () => {
      await revokeUserKeys({
        authDir: this.opts.authDir,
        servers: this.opts.servers ?? `tls://${this.opts.nc.getServer()}`,
        keys,
        ...(this.opts.caFile !== undefined ? { caFile: this.opts.caFile } : {}),
      });
    });
    this.accountChain = run.catch(() => {});
    return run;
  }

  private async tlsMaterial(): Promise<{ cert: string; key: string }> {
    const { certFile, keyFile } = this.opts;
    if (certFile !== undefined || keyFile !== undefined) {
      if (certFile === undefined || keyFile === undefined) {
        throw new Error("enrollment TLS needs both a certificate and a key file");
      }
      return { cert: await readFile(certFile, "utf8"), key: await readFile(keyFile, "utf8") };
    }
    const ca = await readCa(this.opts.authDir);
    const host = this.opts.host;
    const extra = [...(this.opts.certHosts ?? []), hostname()];
    if (host !== undefined && host !== "0.0.0.0" && host !== "::") extra.push(host);
    const pair = await issueServerCert(ca, normaliseHosts(extra.filter((h) => h !== "")));
    return { cert: pair.certPem, key: pair.keyPem };
  }

  private async onHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? "/", "https://enroll.invalid");
      const path = url.pathname;
      const remote = req.socket.remoteAddress;
      if (path === `${ENROLL_API_PREFIX}/challenge`) {
        if (req.method !== "POST") throw new EnrollError(405, "use POST");
        this.limit(this.requestLimit, remote, "enrollment requests");
        return send(res, await this.registrar.challenge(await readBody(req)));
      }
      if (path === ENROLL_API_PREFIX) {
        if (req.method !== "POST") throw new EnrollError(405, "use POST");
        this.limit(this.requestLimit, remote, "enrollment requests");
        return send(res, await this.registrar.enroll(await readBody(req), remote));
      }
      if (path.startsWith(`${ENROLL_API_PREFIX}/`)) {
        if (req.method !== "GET") throw new EnrollError(405, "use GET");
        this.limit(this.pollLimit, remote, "enrollment polls");
        const id = path.slice(ENROLL_API_PREFIX.length + 1);
        return send(
          res,
          await this.registrar.poll(id, url.searchParams.get("ts"), url.searchParams.get("sig")),
        );
      }
      throw new EnrollError(404, "not found");
    } catch (err) {
      if (err instanceof EnrollError) {
        const from = req.socket.remoteAddress;
        if (err.code === 429) {
          // A flood must not flood the log too: the first refusal per client and minute.
          const key = `${clientKey(from)} ${err.message.replace(/retry in \d+ s/, "")}`;
          const last = this.refusalLogged.get(key);
          const now = this.now();
          if (last === undefined || now - last >= REFUSAL_LOG_PERIOD_MS) {
            this.refusalLogged.set(key, now);
            this.log.warn(
              `refusing ${req.method} ${req.url?.split("?")[0]} from ${from}: ${err.message} (logged once a minute per client)`,
            );
          }
        } else if (err.code >= 401 && err.code !== 404) {
          this.log.warn(`refused ${req.method} ${req.url} from ${from}: ${err.message}`);
        }
        return send(res, { code: err.code, body: { error: err.message } }, err.retryAfterS);
      }
      this.log.error(`${req.method} ${req.url}: ${errText(err)}`);
      return send(res, { code: 500, body: { error: "internal error (see the master log)" } });
    }
  }

  /** Throws 429 (with Retry-After) when the client's bucket is empty. */
  private limit(limiter: RateLimiter, remote: string | undefined, what: string): void {
    const wait = limiter.take(clientKey(remote), this.now());
    if (wait > 0) {
      throw new EnrollError(
        429,
        `too many ${what} from this address (limit ${limiter.perMinute}/min); retry in ${wait} s`,
        wait,
      );
    }
  }

  private async onAdmin(op: AdminOp, msg: Msg): Promise<void> {
    const relayed = relayedReason(msg, adminSubject(op));
    if (relayed) {
      this.log.warn(`admin ${op}: ignored: ${relayed}`);
      return;
    }
    let reply: AdminReply;
    try {
      const req = decode<AdminRequest>(msg.data);
      const r = this.registrar;
      reply =
        op === "list"
          ? await r.list(req)
          : op === "show"
            ? await r.show(req)
            : op === "approve"
              ? await r.approve(req)
              : op === "reject"
                ? await r.reject(req)
                : op === "revoke"
                  ? await r.revoke(req)
                  : await r.token(req);
      if (op === "revoke" && reply.ok) await this.forgetBasket(reply.peels ?? []);
    } catch (err) {
      if (!(err instanceof EnrollError)) this.log.error(`admin ${op}: ${errText(err)}`);
      reply = { ok: false, error: errText(err) };
    }
    if (msg.reply) msg.respond(encode(reply));
  }
}
