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
import { issueServerCert, normaliseHosts, readCa } from "../ca/ca.js";
import { revokeUserKeys } from "./account.js";
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
import { EnrollError, type EnrollLogger, type Outcome, Registrar } from "./registrar.js";
import { EnrollmentStore } from "./store.js";

export const ENROLL_QUEUE = "zester-enroll";

/** Challenges per client address per minute: each one costs a KV write. */
export const DEFAULT_CHALLENGES_PER_MINUTE = 60;

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
  challengesPerMinute?: number;
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

function send(res: ServerResponse, o: Outcome): void {
  const text = JSON.stringify(o.body);
  res.writeHead(o.code, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(text);
}

export class EnrollmentService {
  private readonly log: EnrollLogger;
  private reg: Registrar | undefined;
  private server: Server | undefined;
  private subs: Subscription[] = [];
  private sweepTimer: NodeJS.Timeout | undefined;
  private accountChain: Promise<unknown> = Promise.resolve();
  /** Challenge counts per client address in the current minute. */
  private challengeCounts = new Map<string, number>();

  constructor(private readonly opts: EnrollmentServiceOptions) {
    this.log = opts.logger ?? stderrLogger();
  }

  /** The decisions behind both transports (after start). */
  get registrar(): Registrar {
    if (!this.reg) throw new Error("enrollment service is not started");
    return this.reg;
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
    const store = new EnrollmentStore(await openKv(this.opts.nc, "enrollments"));
    this.reg = new Registrar({
      store,
      authDir: this.opts.authDir,
      logger: this.log,
      revoke: (keys) => this.revoke(keys),
      ...(this.opts.nonceTtlMs !== undefined ? { nonceTtlMs: this.opts.nonceTtlMs } : {}),
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
      this.challengeCounts.clear();
      void store.sweepNonces().catch(() => {});
    }, 60_000);
    this.sweepTimer.unref();
    this.log.info(`listening on https://${this.opts.host ?? "0.0.0.0"}:${this.port}${ENROLL_API_PREFIX}`);
  }

  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
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
        const n = (this.challengeCounts.get(remote ?? "") ?? 0) + 1;
        this.challengeCounts.set(remote ?? "", n);
        if (n > (this.opts.challengesPerMinute ?? DEFAULT_CHALLENGES_PER_MINUTE)) {
          throw new EnrollError(429, "too many enrollment challenges from this address; retry in a minute");
        }
        return send(res, await this.registrar.challenge(await readBody(req)));
      }
      if (path === ENROLL_API_PREFIX) {
        if (req.method !== "POST") throw new EnrollError(405, "use POST");
        return send(res, await this.registrar.enroll(await readBody(req), remote));
      }
      if (path.startsWith(`${ENROLL_API_PREFIX}/`)) {
        if (req.method !== "GET") throw new EnrollError(405, "use GET");
        const id = path.slice(ENROLL_API_PREFIX.length + 1);
        return send(
          res,
          await this.registrar.poll(id, url.searchParams.get("ts"), url.searchParams.get("sig")),
        );
      }
      throw new EnrollError(404, "not found");
    } catch (err) {
      if (err instanceof EnrollError) {
        if (err.code >= 401 && err.code !== 404) {
          this.log.warn(`refused ${req.method} ${req.url} from ${req.socket.remoteAddress}: ${err.message}`);
        }
        return send(res, { code: err.code, body: { error: err.message } });
      }
      this.log.error(`${req.method} ${req.url}: ${(err as Error).message}`);
      return send(res, { code: 500, body: { error: "internal error (see the master log)" } });
    }
  }

  private async onAdmin(op: AdminOp, msg: Msg): Promise<void> {
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
    } catch (err) {
      if (!(err instanceof EnrollError)) this.log.error(`admin ${op}: ${(err as Error).message}`);
      reply = { ok: false, error: (err as Error).message };
    }
    if (msg.reply) msg.respond(encode(reply));
  }
}
