/**
 * Connection options shared by every CLI command that talks to NATS, with the same names,
 * environment variables and defaults everywhere.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Command } from "commander";
import { connect, DEFAULT_AUTH_DIR } from "../bus/connect.js";
import { isNoResponders, isTimeout } from "../bus/errors.js";
import { DEFAULT_NATS_URL } from "../config/connect.js";
import { errText } from "../util/errors.js";
import { loadCliConfig } from "./cli-config.js";
import { UsageError } from "./errors.js";

export { DEFAULT_NATS_URL };

export interface ConnectFlags {
  natsUrl?: string;
  creds?: string;
  ca?: string;
  authDir?: string;
}

/** Which creds file is the default: the operator's (admin) or the master's. */
export type CliRole = "admin" | "master";

export const CONNECT_HELP = `Connection:
  --nats-url URL   NATS server(s), comma-separated (env ZESTER_NATS_URL, default ${DEFAULT_NATS_URL})
  --creds FILE     credentials (default <auth-dir>/admin.creds)
  --ca FILE        CA bundle of the server certificate (default <auth-dir>/nats-ca.crt if present)
  --auth-dir DIR   auth dir from \`zester nats-auth init\` (env ZESTER_AUTH_DIR, default ${DEFAULT_AUTH_DIR})
`;

const FLAG_KEYS: Record<string, keyof ConnectFlags> = {
  "--nats-url": "natsUrl",
  "--creds": "creds",
  "--ca": "ca",
  "--auth-dir": "authDir",
};

/**
 * For hand-written argv loops: if argv[i] is a connection flag (`--x v` or `--x=v`), stores it
 * and returns the index of its last token; otherwise returns undefined.
 */
export function takeConnectFlag(argv: readonly string[], i: number, flags: ConnectFlags): number | undefined {
  const a = argv[i]!;
  const eq = a.indexOf("=");
  const name = eq > 0 ? a.slice(0, eq) : a;
  const key = FLAG_KEYS[name];
  if (key === undefined) return undefined;
  if (eq > 0) {
    flags[key] = a.slice(eq + 1);
    return i;
  }
  const v = argv[i + 1];
  if (v === undefined) throw new UsageError(`${name} needs a value`);
  flags[key] = v;
  return i + 1;
}

/** Adds the connection options to a commander command (values land as natsUrl, creds, ca, authDir). */
export function addConnectOptions(cmd: Command, role: CliRole = "admin"): Command {
  return cmd
    .option("--nats-url <url>", `NATS server(s) (env ZESTER_NATS_URL, default ${DEFAULT_NATS_URL})`)
    .option("--creds <file>", `credentials (default <auth-dir>/${role}.creds)`)
    .option("--ca <file>", "CA bundle of the server certificate (default <auth-dir>/nats-ca.crt)")
    .option("--auth-dir <dir>", `auth dir (env ZESTER_AUTH_DIR, default ${DEFAULT_AUTH_DIR})`);
}

export interface ResolvedConnect {
  servers: string;
  credsFile: string;
  caFile?: string;
  authDir: string;
}

/**
 * Flags first; for the operator's commands then env and the CLI's config files
 * (`~/.config/zester/config.yaml`, the master's file on a master host), then the defaults.
 */
export function resolveConnect(
  flags: ConnectFlags,
  role: CliRole = "admin",
  env: NodeJS.ProcessEnv = process.env,
): ResolvedConnect {
  const file = role === "admin" ? loadCliConfig([], env).values : undefined;
  const authDir = flags.authDir ?? file?.auth_dir ?? (env.ZESTER_AUTH_DIR || DEFAULT_AUTH_DIR);
  const ca = flags.ca ?? file?.ca;
  return {
    servers: flags.natsUrl ?? file?.nats_url ?? (env.ZESTER_NATS_URL || DEFAULT_NATS_URL),
    credsFile: flags.creds ?? file?.creds ?? join(authDir, `${role}.creds`),
    ...(ca !== undefined ? { caFile: ca } : {}),
    authDir,
  };
}

/** Connects with the resolved options; a missing creds file is reported with the flag to fix it. */
export async function connectWith(flags: ConnectFlags, role: CliRole = "admin"): Promise<NatsConnection> {
  const r = resolveConnect(flags, role);
  try {
    await readFile(r.credsFile);
  } catch (err) {
    throw new Error(
      `cannot read credentials ${r.credsFile}: ${(err as NodeJS.ErrnoException).code ?? errText(err)} ` +
        "(pass --creds FILE or --auth-dir DIR)",
    );
  }
  try {
    return await connect({ ...r, name: `zester ${role === "admin" ? "cli" : "master"}` });
  } catch (err) {
    // The client's own message ("connection refused") does not say where it tried.
    const msg = errText(err);
    if (msg.includes(r.servers)) throw err;
    throw new Error(`cannot connect to ${r.servers}: ${msg} (set --nats-url or nats_url)`, { cause: err });
  }
}

/** Turns the client's "no responders" into something an operator can act on. */
export function explainRequestError(err: unknown, subject: string): Error {
  const msg = errText(err);
  if (isNoResponders(err)) {
    return new Error(`no master answered on ${subject} (is zester-master running and connected?)`);
  }
  if (isTimeout(err)) return new Error(`no answer on ${subject} in time (${msg})`);
  return err instanceof Error ? err : new Error(msg);
}
