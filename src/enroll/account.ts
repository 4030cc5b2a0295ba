/**
 * The two trust-chain operations enrollment needs: a user JWT for a key the master never holds
 * the seed of, and user revocation through the ZESTER account JWT.
 *
 * Revocation is a property of the account, not of the user: the account JWT lists revoked user
 * keys with a time, and the server refuses (and disconnects) any user JWT for such a key issued
 * at or before that time. The updated account JWT is pushed with the system account; a `full`
 * resolver stores it on disk, so it survives a server restart.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Account, Algorithms, decode, encodeAccount } from "@nats-io/jwt";
import type { NatsConnection } from "@nats-io/transport-node";
import { AUTH_FILES, loadAccountSigner } from "../auth/auth-dir.js";
import { issueUserJwt, keyPairFromSeed } from "../auth/hierarchy.js";
import type { RolePermissions } from "../auth/permissions.js";
import { connect } from "../bus/connect.js";
import { errText } from "../util/errors.js";
import { writeFileAtomic } from "../util/files.js";

/** Signs a user JWT for `publicKey` with the ZESTER account signing key in `authDir`. */
export async function issueUserJwtForKey(
  authDir: string,
  name: string,
  publicKey: string,
  permissions: RolePermissions,
): Promise<string> {
  return issueUserJwt(await loadAccountSigner(authDir), name, publicKey, permissions);
}

export interface RevokeOptions {
  authDir: string;
  /** NATS URL(s) for the system-account connection. */
  servers: string | string[];
  caFile?: string;
  /** User public keys to revoke. */
  keys: readonly string[];
  /** Revocation time in unix seconds (default now): JWTs issued at or before it are refused. */
  at?: number;
}

export interface RevokeResult {
  accountJwt: string;
  revocations: Record<string, number>;
}

interface ClaimsUpdateReply {
  data?: { account?: string; code?: number; message?: string };
  error?: { account?: string; code?: number; description?: string };
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch (err) {
    throw new Error(`cannot read ${what} ${path}: ${errText(err)}`);
  }
}

/** The account JWT the resolver holds now (another master may have pushed a newer one). */
async function lookupServerJwt(sys: NatsConnection, account: string): Promise<string | undefined> {
  try {
    const m = await sys.request(`$SYS.REQ.ACCOUNT.${account}.CLAIMS.LOOKUP`, "", { timeout: 5000 });
    const text = m.string().trim();
    return text.startsWith("ey") ? text : undefined;
  } catch {
    return undefined;
  }
}

async function untilSecondAfter(iat: number): Promise<void> {
  // iat has one-second resolution and resolvers keep the newer of two JWTs: never tie.
  while (Math.floor(Date.now() / 1000) <= iat) await new Promise((r) => setTimeout(r, 100));
}

/**
 * Adds `keys` to the ZESTER account's revocations, re-signs the account JWT with the operator
 * signing key, pushes it (`$SYS.REQ.CLAIMS.UPDATE`) and stores it in the auth dir (account JWT
 * file and the server config's preload) so later pushes and fresh servers keep the revocation.
 */
export async function revokeUserKeys(opts: RevokeOptions): Promise<RevokeResult> {
  const jwtPath = join(opts.authDir, AUTH_FILES.accountJwt);
  const localJwt = await readText(jwtPath, "the account JWT");
  const operatorSigner = keyPairFromSeed(
    await readText(join(opts.authDir, AUTH_FILES.operatorSigningSeed), "the operator signing seed"),
  );
  const local = decode<Account>(localJwt);
  const account = local.sub;

  const sys = await connect({
    servers: opts.servers,
    credsFile: join(opts.authDir, AUTH_FILES.systemCreds),
    authDir: opts.authDir,
    ...(opts.caFile !== undefined ? { caFile: opts.caFile } : {}),
    name: "zester enroll revoke",
    reconnect: false,
  });
  try {
    const serverJwt = await lookupServerJwt(sys, account);
    const remote = serverJwt ? decode<Account>(serverJwt) : undefined;
    const base = remote && remote.iat > local.iat ? remote : local;
    const at = opts.at ?? Math.floor(Date.now() / 1000);
    const revocations: Record<string, number> = {
      ...(local.nats.revocations ?? {}),
      ...(remote?.nats.revocations ?? {}),
    };
    for (const k of opts.keys) revocations[k] = Math.max(revocations[k] ?? 0, at);

    const { type: _t, version: _v, ...rest } = base.nats as Account & { type?: string; version?: number };
    await untilSecondAfter(Math.max(local.iat, remote?.iat ?? 0));
    const accountJwt = await encodeAccount(
      base.name,
      account,
      { ...rest, revocations },
      { signer: operatorSigner, algorithm: Algorithms.v2 },
    );

    const reply = await sys.request("$SYS.REQ.CLAIMS.UPDATE", accountJwt, { timeout: 5000 });
    const body = JSON.parse(reply.string()) as ClaimsUpdateReply;
    if (body.error || (body.data?.code !== undefined && body.data.code >= 300)) {
      throw new Error(
        `the server refused the account update: ${body.error?.description ?? body.data?.message ?? reply.string()}`,
      );
    }
    await writeFileAtomic(jwtPath, `${accountJwt}\n`, { mode: 0o644 });
    await updatePreload(join(opts.authDir, AUTH_FILES.serverConfig), account, accountJwt);
    return { accountJwt, revocations };
  } finally {
    await sys.close();
  }
}

/**
 * A preloaded JWT older than the resolver's copy is ignored by the server, but a server started
 * on an empty resolver dir would trust the preload alone: keep it current.
 */
async function updatePreload(confPath: string, account: string, jwt: string): Promise<void> {
  let conf: string;
  try {
    conf = await readFile(confPath, "utf8");
  } catch {
    return;
  }
  const line = new RegExp(`^(\\s*${account}\\s*:\\s*)"[^"]*"\\s*$`, "m");
  if (!line.test(conf)) return;
  await writeFileAtomic(
    confPath,
    conf.replace(line, (_m, head: string) => `${head}${JSON.stringify(jwt)}`),
    { mode: 0o644 },
  );
}
