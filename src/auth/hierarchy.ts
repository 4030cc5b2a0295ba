/**
 * The NATS decentralised trust chain: operator → accounts → users. The operator's identity key
 * only signs the operator JWT; accounts are signed by an operator signing key, and users by an
 * account signing key, so identity keys can stay offline and signing keys can be rotated.
 */

import {
  Algorithms,
  type ClaimsData,
  decode,
  encodeAccount,
  encodeOperator,
  encodeUser,
  fmtCreds,
  type OperatorLimits,
  type User,
} from "@nats-io/jwt";
import { fromSeed, type KeyPair, Prefix } from "@nats-io/nkeys";
import { createEd25519KeyPair, fastKeyPair } from "./ed25519.js";
import { type PermissionSubject, permissionsFor, type RolePermissions } from "./permissions.js";

export const OPERATOR_NAME = "zester";
export const SYSTEM_ACCOUNT_NAME = "SYS";
export const ZESTER_ACCOUNT_NAME = "ZESTER";

const dec = new TextDecoder();

function seedOf(kp: KeyPair): string {
  return dec.decode(kp.getSeed());
}

export function keyPairFromSeed(seed: string): KeyPair {
  return fromSeed(new TextEncoder().encode(seed.trim()));
}

/**
 * Every limit explicit: a 2.9 server treats a missing JetStream limit as "disabled" and an
 * account without limits can refuse connections. -1 means unlimited.
 */
export function zesterAccountLimits(): OperatorLimits {
  return {
    subs: -1,
    data: -1,
    payload: -1,
    imports: -1,
    exports: -1,
    wildcards: true,
    conn: -1,
    leaf: -1,
    mem_storage: -1,
    disk_storage: -1,
    streams: -1,
    consumer: -1,
    max_ack_pending: -1,
    mem_max_stream_bytes: -1,
    disk_max_stream_bytes: -1,
    max_bytes_required: false,
  };
}

/** The system account: the same limits, but it must not have JetStream. */
export function systemAccountLimits(): OperatorLimits {
  return {
    ...zesterAccountLimits(),
    mem_storage: 0,
    disk_storage: 0,
    streams: 0,
    consumer: 0,
  };
}

export interface AccountMaterial {
  name: string;
  publicKey: string;
  seed: string;
  signingSeed: string;
  jwt: string;
}

export interface TrustHierarchy {
  operator: { publicKey: string; seed: string; signingSeed: string; jwt: string };
  system: AccountMaterial;
  zester: AccountMaterial;
}

async function makeAccount(
  name: string,
  operatorSigner: KeyPair,
  limits: OperatorLimits,
): Promise<AccountMaterial> {
  const akp = createEd25519KeyPair(Prefix.Account);
  const signing = createEd25519KeyPair(Prefix.Account);
  const jwt = await encodeAccount(
    name,
    akp,
    { limits, signing_keys: [signing.getPublicKey()] },
    { signer: operatorSigner, algorithm: Algorithms.v2 },
  );
  return { name, publicKey: akp.getPublicKey(), seed: seedOf(akp), signingSeed: seedOf(signing), jwt };
}

/** A new account with Zester's limits, signed by the operator signing key `operatorSigningSeed`. */
export function createAccount(name: string, operatorSigningSeed: string): Promise<AccountMaterial> {
  return makeAccount(name, keyPairFromSeed(operatorSigningSeed), zesterAccountLimits());
}

/** Generates a fresh operator, system account and ZESTER account. */
export async function createTrustHierarchy(): Promise<TrustHierarchy> {
  const okp = createEd25519KeyPair(Prefix.Operator);
  const osk = createEd25519KeyPair(Prefix.Operator);
  const system = await makeAccount(SYSTEM_ACCOUNT_NAME, osk, systemAccountLimits());
  const zester = await makeAccount(ZESTER_ACCOUNT_NAME, osk, zesterAccountLimits());
  const jwt = await encodeOperator(
    OPERATOR_NAME,
    okp,
    { signing_keys: [osk.getPublicKey()], system_account: system.publicKey },
    { algorithm: Algorithms.v2 },
  );
  return {
    operator: { publicKey: okp.getPublicKey(), seed: seedOf(okp), signingSeed: seedOf(osk), jwt },
    system,
    zester,
  };
}

/** What is needed to issue users in an account: its public key and a signing seed it lists. */
export interface AccountSigner {
  accountPublicKey: string;
  signingSeed: string;
}

export function toUserClaims(p: RolePermissions): Partial<User> {
  const claims: Partial<User> = {
    pub: { allow: [...p.pub.allow], deny: [...(p.pub.deny ?? [])] },
    sub: { allow: [...p.sub.allow], deny: [...(p.sub.deny ?? [])] },
  };
  if (p.resp) claims.resp = { max: p.resp.max, ttl: p.resp.ttl };
  return claims;
}

// The last account signing key used: a master or `zester peel creds` issues with the same one over
// and over, and importing a seed into node:crypto costs ~0.3 ms (most of what is left per token).
let lastSigner: { seed: string; kp: KeyPair } | undefined;

function signingKeyPair(seed: string): KeyPair {
  if (lastSigner?.seed !== seed) lastSigner = { seed, kp: fastKeyPair(keyPairFromSeed(seed)) };
  return lastSigner.kp;
}

/**
 * Signs a user JWT for a user key; `user` may be a public key alone, so a peel that enrolls
 * keeps its seed to itself.
 */
export function issueUserJwt(
  signer: AccountSigner,
  name: string,
  user: KeyPair | string,
  permissions: RolePermissions | undefined,
): Promise<string> {
  // fastKeyPair: tweetnacl would spend ~20 ms of key derivations and signing on each token.
  const ukp = typeof user === "string" ? user : fastKeyPair(user);
  return encodeUser(name, ukp, signer.accountPublicKey, permissions ? toUserClaims(permissions) : {}, {
    signer: signingKeyPair(signer.signingSeed),
    algorithm: Algorithms.v2,
  });
}

/** Issues a user JWT with the given permissions and returns the `.creds` file text. */
export async function issueUserCreds(
  signer: AccountSigner,
  name: string,
  permissions: RolePermissions | undefined,
): Promise<string> {
  const ukp = createEd25519KeyPair(Prefix.User);
  const jwt = await issueUserJwt(signer, name, ukp, permissions);
  return dec.decode(fmtCreds(jwt, ukp));
}

/** Creds for a Zester role or a peel, with that role's permissions from permissions.ts. */
export function issueRoleCreds(signer: AccountSigner, who: PermissionSubject): Promise<string> {
  const name = typeof who === "object" ? `peel-${who.peel}` : who;
  return issueUserCreds(signer, name, permissionsFor(who));
}

/** Decodes the user JWT inside a creds file (for inspection and tests; does not verify). */
export function decodeCredsJwt(creds: string): ClaimsData<User> {
  const m = /-----BEGIN NATS USER JWT-----\s*\n([^\n]+)\n/.exec(creds);
  if (!m) throw new Error("not a NATS creds file: no user JWT block");
  return decode<User>(m[1]!.trim());
}

/**
 * The user public key a creds file is for, read from its JWT's claims without checking the
 * signature (the server does that): for records about creds this process just issued or holds.
 */
export function credsUserKey(creds: string): string {
  const m = /-----BEGIN NATS USER JWT-----\s*\n([^\n]+)\n/.exec(creds);
  const payload = m?.[1]?.trim().split(".")[1];
  const sub = payload
    ? (JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { sub?: unknown }).sub
    : undefined;
  if (typeof sub !== "string" || !sub.startsWith("U"))
    throw new Error("not a NATS creds file: no user JWT block");
  return sub;
}
