/**
 * The only way Zester opens a NATS connection: TLS 1.3 with server verification, creds-file
 * auth. Plaintext is refused twice: by URL scheme before any I/O, and by always passing a TLS
 * options object (the client would otherwise talk plaintext to a plaintext server even for tls://).
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { credsAuthenticator, type NatsConnection, connect as natsConnect } from "@nats-io/transport-node";
import { errText } from "../util/errors.js";
import { statOrUndefined } from "../util/files.js";

/** Where `zester nats-auth init` output lives on an installed machine. */
export const DEFAULT_AUTH_DIR = "/etc/zester/auth";
export const CA_FILE_NAME = "nats-ca.crt";

export class InsecureUrlError extends Error {
  override name = "InsecureUrlError";
}

export interface BusConnectOptions {
  /** One or more `tls://host:port` URLs (a comma-separated string is accepted too). */
  servers: string | string[];
  /** Path of a `.creds` file (JWT + seed). */
  credsFile?: string;
  /** Creds content, when it is not in a file. */
  creds?: string | Uint8Array;
  /** CA bundle that signed the server certificate; see resolveCaFile for the fallbacks. */
  caFile?: string;
  /** Directory checked for nats-ca.crt when neither caFile nor NATS_CA_FILE is set. */
  authDir?: string;
  /** Inbox prefix for replies; peels use peelInboxPrefix(id) so others cannot read their replies. */
  inboxPrefix?: string;
  name?: string;
  timeoutMs?: number;
  reconnect?: boolean;
  maxReconnectAttempts?: number;
  /** Environment for NATS_CA_FILE lookup; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
}

/** Splits and checks server URLs; throws InsecureUrlError for anything that is not tls://. */
export function assertTlsUrls(servers: string | string[]): string[] {
  const list = (Array.isArray(servers) ? servers : servers.split(","))
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (list.length === 0) throw new InsecureUrlError("no NATS server URL given (expected tls://host:4222)");
  for (const url of list) {
    const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(url);
    if (m && m[1]!.toLowerCase() === "tls") continue;
    const rest = m ? m[2]! : url;
    const scheme = m ? m[1]!.toLowerCase() : undefined;
    const why =
      scheme === undefined
        ? "a URL without a scheme would be plaintext"
        : scheme === "nats"
          ? "nats:// is plaintext"
          : `the ${scheme}:// scheme is not supported`;
    throw new InsecureUrlError(
      `refusing NATS URL ${JSON.stringify(url)}: ${why}; Zester only connects over TLS 1.3, use tls://${rest} instead`,
    );
  }
  return list;
}

/**
 * CA resolution order: explicit option → env NATS_CA_FILE → `<authDir>/nats-ca.crt` →
 * undefined (system trust). An explicitly named file that is missing is an error, never a
 * silent fall-through to the next source.
 */
export async function resolveCaFile(
  opts: Pick<BusConnectOptions, "caFile" | "authDir" | "env">,
): Promise<string | undefined> {
  const env = opts.env ?? process.env;
  const explicit = opts.caFile ?? (env.NATS_CA_FILE ? env.NATS_CA_FILE : undefined);
  if (explicit !== undefined) {
    if (!(await statOrUndefined(explicit))) {
      const src = opts.caFile !== undefined ? "CA file" : "NATS_CA_FILE";
      throw new Error(`${src} ${explicit} does not exist`);
    }
    return explicit;
  }
  const inDir = join(opts.authDir ?? DEFAULT_AUTH_DIR, CA_FILE_NAME);
  if (await statOrUndefined(inDir)) return inDir;
  return undefined;
}

/** Node TLS options passed through by the NATS transport; the client's type omits minVersion. */
interface ZesterTlsOptions {
  caFile?: string;
  minVersion: "TLSv1.3";
}

export async function connect(opts: BusConnectOptions): Promise<NatsConnection> {
  const servers = assertTlsUrls(opts.servers);
  const caFile = await resolveCaFile(opts);
  const tls: ZesterTlsOptions = { minVersion: "TLSv1.3" };
  if (caFile !== undefined) tls.caFile = caFile;

  let authenticator: ReturnType<typeof credsAuthenticator> | undefined;
  if (opts.credsFile !== undefined) {
    const data = await readFile(opts.credsFile);
    authenticator = credsAuthenticator(new Uint8Array(data));
  } else if (opts.creds !== undefined) {
    authenticator =
      typeof opts.creds === "string"
        ? credsAuthenticator(new TextEncoder().encode(opts.creds))
        : credsAuthenticator(opts.creds);
  }

  try {
    return await natsConnect({
      servers,
      tls,
      ...(authenticator ? { authenticator } : {}),
      ...(opts.inboxPrefix !== undefined ? { inboxPrefix: opts.inboxPrefix } : {}),
      ...(opts.name !== undefined ? { name: opts.name } : {}),
      timeout: opts.timeoutMs ?? 10_000,
      reconnect: opts.reconnect ?? true,
      maxReconnectAttempts: opts.maxReconnectAttempts ?? -1,
    });
  } catch (err) {
    const msg = errText(err);
    if (/does not support 'tls'/.test(msg)) {
      throw new Error(
        `NATS server at ${servers.join(",")} does not offer TLS; Zester refuses plaintext connections ` +
          "(configure a tls block on the server, see `zester nats-auth init`)",
        { cause: err },
      );
    }
    const tls = tlsRefusal(err);
    if (tls !== undefined) {
      throw new Error(
        `NATS server at ${servers.join(",")}: TLS handshake refused (${tls}); Zester requires TLS 1.3, ` +
          "so a server offering only TLS 1.2 or older is refused (upgrade the server or its TLS settings)",
        { cause: err },
      );
    }
    throw err;
  }
}

/** The TLS version refusal inside a connect error (OpenSSL's words for it), if that is what it is. */
function tlsRefusal(err: unknown): string | undefined {
  for (
    let e = err as { message?: string; code?: string; cause?: unknown } | undefined, i = 0;
    e && i < 5;
    i++
  ) {
    const text = `${e.code ?? ""} ${e.message ?? ""}`;
    if (/UNSUPPORTED_PROTOCOL|protocol version|TLSV1_ALERT_PROTOCOL_VERSION/i.test(text)) {
      return /alert/i.test(text) ? "the server does not speak TLS 1.3" : "no TLS version in common";
    }
    e = e.cause as typeof e;
  }
  return undefined;
}
