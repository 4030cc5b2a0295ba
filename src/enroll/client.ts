/**
 * The peel's side of enrollment: make (or reuse) its own keys, prove possession to the master
 * over HTTPS, wait for an operator, and assemble `.creds` locally from the issued JWT and its own
 * seed. The seed never leaves the machine. Keys are written before the first request, so a
 * restarted peel resumes as the same identity (and its pending request) instead of a new one.
 */
import { mkdir, readFile } from "node:fs/promises";
import { request } from "node:https";
import { join } from "node:path";
import { decode as decodeJwt, fmtCreds, type User } from "@nats-io/jwt";
import { createUser, type KeyPair } from "@nats-io/nkeys";
import { keyPairFromSeed } from "../auth/hierarchy.js";
import { CA_FILE_NAME, DEFAULT_AUTH_DIR } from "../bus/connect.js";
import { assertPeelId } from "../bus/names.js";
import { ensurePeelCurveKey } from "../settings/keys.js";
import { errText } from "../util/errors.js";
import { isENOENT, statOrUndefined, writeSecretFile } from "../util/files.js";
import {
  type ChallengeResponse,
  ENROLL_API_PREFIX,
  type EnrollStatusResponse,
  enrollSignedString,
  isCurvePublicKey,
  pollSignedString,
  signString,
} from "./protocol.js";

/** The peel's user nkey seed inside its cache dir. */
export const PEEL_USER_KEY_FILE = "peel.nk";
export const PEEL_CREDS_FILE = "peel.creds";

export class EnrollRefusedError extends Error {
  override name = "EnrollRefusedError";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface EnrollLog {
  info(msg: string): void;
  warn(msg: string): void;
}

export interface EnrollOptions {
  /** `https://master:8443`; http:// is refused. */
  url: string;
  peelId: string;
  /** Holds the key seeds (0600); created if missing. */
  cacheDir: string;
  /** CA for the master's certificate; default `<authDir>/nats-ca.crt` if present, else system trust. */
  caFile?: string;
  authDir?: string;
  /** One-time token from `zester enroll token`: approves at once. */
  token?: string;
  /** This machine replaces an earlier enrollment of the same id (needs an operator's approval). */
  replace?: boolean;
  /** Poll backoff: starts at pollMinMs, doubles up to pollMaxMs. */
  pollMinMs?: number;
  pollMaxMs?: number;
  /** Give up waiting for approval after this long (default: wait forever). */
  timeoutMs?: number;
  signal?: AbortSignal;
  logger?: EnrollLog;
}

export interface EnrollResult {
  /** `.creds` text: the issued JWT and this peel's own seed. */
  creds: string;
  jwt: string;
  publicKey: string;
  curveKey: string;
  requestId: string;
  trustedMasters: string[];
  natsCa?: string;
  /** The master's curve public key, for opening sealed secrets. */
  masterCurvePub?: string;
}

/** Refuses anything but https:// before any key is made or byte is sent. */
export function assertHttpsUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`invalid enrollment URL ${JSON.stringify(url)} (expected https://master:8443)`);
  }
  if (u.protocol !== "https:") {
    throw new Error(
      `refusing enrollment URL ${JSON.stringify(url)}: only https:// is allowed (the master proves its identity with TLS)`,
    );
  }
  return u;
}

export function peelUserKeyPath(cacheDir: string): string {
  return join(cacheDir, PEEL_USER_KEY_FILE);
}

/** The peel's user key pair, generated (0600) on first use. */
export async function ensurePeelUserKey(cacheDir: string): Promise<KeyPair> {
  const path = peelUserKeyPath(cacheDir);
  try {
    return keyPairFromSeed(await readFile(path, "utf8"));
  } catch (err) {
    if (!isENOENT(err)) throw new Error(`cannot read the peel key ${path}: ${errText(err)}`);
  }
  const kp = createUser();
  await writeSecretFile(path, `${new TextDecoder().decode(kp.getSeed())}\n`);
  return kp;
}

async function resolveEnrollCa(opts: EnrollOptions): Promise<string | undefined> {
  if (opts.caFile !== undefined) {
    try {
      return await readFile(opts.caFile, "utf8");
    } catch (err) {
      throw new Error(`cannot read enrollment CA ${opts.caFile}: ${errText(err)}`);
    }
  }
  const inDir = join(opts.authDir ?? DEFAULT_AUTH_DIR, CA_FILE_NAME);
  if (await statOrUndefined(inDir)) return readFile(inDir, "utf8");
  return undefined;
}

interface HttpAnswer {
  status: number;
  body: Record<string, unknown>;
}

function httpsJson(
  base: URL,
  method: "GET" | "POST",
  path: string,
  ca: string | undefined,
  body?: unknown,
  signal?: AbortSignal,
): Promise<HttpAnswer> {
  const url = new URL(path, base);
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        minVersion: "TLSv1.3",
        ...(ca !== undefined ? { ca } : {}),
        headers: {
          accept: "application/json",
          ...(data !== undefined
            ? { "content-type": "application/json", "content-length": Buffer.byteLength(data) }
            : {}),
        },
        timeout: 15_000,
        ...(signal ? { signal } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
          } catch {
            reject(
              new Error(`${method} ${url.pathname}: HTTP ${res.statusCode}, not JSON: ${text.slice(0, 200)}`),
            );
          }
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${url.href} timed out`)));
    req.on("error", reject);
    req.end(data);
  });
}

function refused(a: HttpAnswer, what: string): EnrollRefusedError {
  const msg = typeof a.body.error === "string" ? a.body.error : JSON.stringify(a.body);
  return new EnrollRefusedError(a.status, `${what} refused (HTTP ${a.status}): ${msg}`);
}

/** An untrusted or mismatched certificate will not fix itself by waiting. */
function isTlsTrustError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code ?? "";
  return /CERT|SIGNATURE|ERR_TLS|ERR_SSL/.test(code);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error("enrollment aborted"));
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new Error("enrollment aborted"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Runs the whole exchange and returns the assembled creds (the caller decides where to write
 * them). Throws EnrollRefusedError when the master says no (409 id taken, 403 rejected, ...).
 */
export async function enrollPeel(opts: EnrollOptions): Promise<EnrollResult> {
  const base = assertHttpsUrl(opts.url);
  const peelId = assertPeelId(opts.peelId);
  const ca = await resolveEnrollCa(opts);
  await mkdir(opts.cacheDir, { recursive: true, mode: 0o700 });
  // The curve key first: peel.nk is the last key file written, so whoever sees it (a watcher, a
  // restarted daemon) sees the complete set. Each file is written atomically.
  const curve = await ensurePeelCurveKey(opts.cacheDir);
  const user = await ensurePeelUserKey(opts.cacheDir);
  const ident = { peel_id: peelId, public_key: user.getPublicKey(), curve_key: curve.getPublicKey() };
  const log = opts.logger;

  const started = Date.now();
  let delay = opts.pollMinMs ?? 1000;
  const maxDelay = opts.pollMaxMs ?? 30_000;
  const overdue = () => opts.timeoutMs !== undefined && Date.now() - started > opts.timeoutMs;

  // A master that is down, restarting or busy (429, 5xx) is waited for; a refusal is final.
  const ask = async (): Promise<HttpAnswer> => {
    for (;;) {
      try {
        const ch = await httpsJson(base, "POST", `${ENROLL_API_PREFIX}/challenge`, ca, ident, opts.signal);
        if (ch.status !== 200) throw refused(ch, "enrollment challenge");
        const { nonce } = ch.body as unknown as ChallengeResponse;
        const signature = signString(user, enrollSignedString({ ...ident, nonce }));
        const enroll = await httpsJson(
          base,
          "POST",
          ENROLL_API_PREFIX,
          ca,
          {
            ...ident,
            nonce,
            signature,
            ...(opts.token !== undefined ? { token: opts.token } : {}),
            ...(opts.replace ? { replace: true } : {}),
          },
          opts.signal,
        );
        if (enroll.status !== 200 && enroll.status !== 202) throw refused(enroll, "enrollment");
        return enroll;
      } catch (err) {
        const retriable =
          err instanceof EnrollRefusedError ? err.status === 429 || err.status >= 500 : !isTlsTrustError(err);
        if (!retriable || opts.signal?.aborted || overdue()) throw err;
        log?.warn(`${errText(err)}; retrying in ${delay} ms`);
        await sleep(delay, opts.signal);
        delay = Math.min(delay * 2, maxDelay);
      }
    }
  };

  let answer: EnrollStatusResponse;
  let requestId: string;
  // The master expires a request nobody decided on (and later forgets it): ask again, as new.
  for (;;) {
    answer = (await ask()).body as unknown as EnrollStatusResponse;
    requestId = answer.request_id;
    if (answer.status === "pending") {
      log?.info(
        `enrollment request ${requestId} is waiting for approval (zester enroll approve ${requestId})` +
          (answer.replaces ? `; it replaces key ${answer.replaces}` : ""),
      );
    }

    delay = opts.pollMinMs ?? 1000;
    let gone = false;
    while (answer.status === "pending") {
      if (overdue()) {
        throw new Error(`enrollment request ${requestId} was not approved within ${opts.timeoutMs} ms`);
      }
      await sleep(delay, opts.signal);
      delay = Math.min(delay * 2, maxDelay);
      const ts = Date.now();
      const sig = signString(user, pollSignedString(requestId, ts));
      let poll: HttpAnswer;
      try {
        poll = await httpsJson(
          base,
          "GET",
          `${ENROLL_API_PREFIX}/${encodeURIComponent(requestId)}?ts=${ts}&sig=${sig}`,
          ca,
          undefined,
          opts.signal,
        );
      } catch (err) {
        // The master may restart while we wait; the request is in KV, keep polling.
        if (opts.signal?.aborted) throw err;
        log?.warn(`cannot poll enrollment: ${errText(err)}`);
        continue;
      }
      // Busy or rate-limited: the request is still there, keep waiting.
      if (poll.status === 429 || poll.status >= 500) {
        log?.warn(`${refused(poll, "enrollment poll").message}; polling again in ${delay} ms`);
        continue;
      }
      if (poll.status === 404) {
        gone = true;
        break;
      }
      if (poll.status !== 200) throw refused(poll, "enrollment poll");
      answer = poll.body as unknown as EnrollStatusResponse;
    }
    if (!gone && answer.status !== "expired") break;
    if (overdue())
      throw new Error(`enrollment request ${requestId} ${gone ? "is gone" : "expired"} unapproved`);
    log?.warn(
      `enrollment request ${requestId} ${gone ? "is unknown to the master" : "expired"}` +
        `${!gone && answer.reason ? ` (${answer.reason})` : ""}; asking again`,
    );
    delay = opts.pollMinMs ?? 1000;
  }
  if (answer.status !== "approved" || typeof answer.jwt !== "string") {
    throw new EnrollRefusedError(
      403,
      `enrollment of ${peelId} was ${answer.status}${answer.reason ? `: ${answer.reason}` : ""}`,
    );
  }
  const claims = decodeJwt<User>(answer.jwt);
  if (claims.sub !== user.getPublicKey()) {
    throw new Error("the master issued a JWT for another key; refusing it");
  }
  const creds = new TextDecoder().decode(fmtCreds(answer.jwt, user));
  log?.info(`enrolled as ${peelId} (key ${user.getPublicKey()})`);
  return {
    creds,
    jwt: answer.jwt,
    publicKey: user.getPublicKey(),
    curveKey: curve.getPublicKey(),
    requestId,
    trustedMasters: answer.trusted_masters ?? [],
    ...(answer.nats_ca !== undefined ? { natsCa: answer.nats_ca } : {}),
    ...(typeof answer.master_curve === "string" && isCurvePublicKey(answer.master_curve)
      ? { masterCurvePub: answer.master_curve }
      : {}),
  };
}

/** Writes creds (0600), replacing an older file: a re-enrolled key makes the old creds useless. */
export async function writeCreds(path: string, creds: string): Promise<void> {
  await writeSecretFile(path, creds, true);
}

export function defaultEnrolledCredsPath(cacheDir: string): string {
  return join(cacheDir, PEEL_CREDS_FILE);
}
