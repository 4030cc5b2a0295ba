/**
 * The auth directory written by `zester nats-auth init`: trust chain seeds and JWTs, role creds,
 * the CA and server certificate, and a ready nats-server.conf. Secrets are 0600 and nothing is
 * replaced without `force`.
 */

import { mkdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { decode } from "@nats-io/jwt";
import { fromPublic } from "@nats-io/nkeys";
import { assertPeelId } from "../bus/names.js";
import { CA_FILES } from "../ca/files.js";
import { errText } from "../util/errors.js";
import { statOrUndefined, writeFileAtomic, writeSecretFile } from "../util/files.js";
import { type ClusterOptions, checkClusterOptions, clusterNodes } from "./cluster-layout.js";
import {
  type AccountSigner,
  createTrustHierarchy,
  credsUserKey,
  issueRoleCreds,
  issueUserCreds,
} from "./hierarchy.js";
import { type BasketScope, permissionsFor, type Role } from "./permissions.js";
import { renderServerConfig } from "./server-config.js";
import { keyPairFromCreds } from "./signing.js";

export const AUTH_FILES = {
  operatorJwt: "operator.jwt",
  operatorSeed: "operator.nk",
  operatorSigningSeed: "operator-signing.nk",
  systemAccountJwt: "sys-account.jwt",
  systemAccountSeed: "sys-account.nk",
  systemAccountSigningSeed: "sys-account-signing.nk",
  /** A system-account user, for pushing account updates and revocations to the resolver. */
  systemCreds: "sys.creds",
  accountJwt: "zester-account.jwt",
  accountSeed: "zester-account.nk",
  /** Signs user JWTs: what `zester peel creds` (and enrollment) need to issue peel creds. */
  accountSigningSeed: "zester-account-signing.nk",
  masterCreds: "master.creds",
  adminCreds: "admin.creds",
  serverConfig: "nats-server.conf",
  /** An edge site's leaf node server (`nats-auth init --leaf`), and its identity toward the hub. */
  leafServerConfig: "nats-server-leaf.conf",
  leafCreds: "leaf.creds",
  leafResolverDir: "resolver-leaf",
  resolverDir: "resolver",
  jetstreamDir: "jetstream",
  peelCredsDir: "peels",
  /** Public nkeys whose command signatures peels accept, one per line (peels need no secrets). */
  trustedMasters: "trusted-masters.pub",
} as const;

export const DEFAULT_NATS_PORT = 4222;

export interface InitAuthOptions {
  dir: string;
  force?: boolean;
  /** Extra names for the server certificate (localhost and loopback IPs are always included). */
  hosts?: readonly string[];
  port?: number;
  /** Listen address for the server config; omitted = all interfaces. */
  listenHost?: string;
  /** Write one config per node of a JetStream cluster instead of `nats-server.conf`. */
  cluster?: ClusterOptions;
  /**
   * An edge site: the server config accepts leaf connections on `port`, and
   * `nats-server-leaf.conf` (plus `leaf.creds`) is written for an edge server that connects to
   * `hubHost` and serves its own clients on `clientPort`.
   */
  leaf?: LeafOptions;
}

export interface LeafOptions {
  /** Leaf node port on the hub (7422 is NATS' usual). */
  port: number;
  /** How the edge server reaches the hub. */
  hubHost: string;
  /** Client port of the edge server. */
  clientPort: number;
  /** Listen address of the edge server's clients; omitted = all interfaces. */
  clientHost?: string;
}

export interface InitAuthResult {
  written: string[];
  /** Existing CA / server cert files that were kept. */
  kept: string[];
}

const SECRET_OUTPUTS = [
  AUTH_FILES.operatorSeed,
  AUTH_FILES.operatorSigningSeed,
  AUTH_FILES.systemAccountSeed,
  AUTH_FILES.systemAccountSigningSeed,
  AUTH_FILES.systemCreds,
  AUTH_FILES.accountSeed,
  AUTH_FILES.accountSigningSeed,
  AUTH_FILES.masterCreds,
  AUTH_FILES.adminCreds,
];
const PUBLIC_OUTPUTS = [
  AUTH_FILES.operatorJwt,
  AUTH_FILES.systemAccountJwt,
  AUTH_FILES.accountJwt,
  AUTH_FILES.serverConfig,
  AUTH_FILES.trustedMasters,
];

export async function initAuthDir(opts: InitAuthOptions): Promise<InitAuthResult> {
  const dir = resolve(opts.dir);
  const force = opts.force ?? false;
  if (opts.cluster) checkClusterOptions(opts.cluster);
  if (!force) {
    const existing: string[] = [];
    for (const f of [...SECRET_OUTPUTS, ...PUBLIC_OUTPUTS]) {
      if (await statOrUndefined(join(dir, f))) existing.push(f);
    }
    if (existing.length > 0) {
      throw new Error(`${dir} already holds ${existing.join(", ")} (use --force to overwrite)`);
    }
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  const secret = async (name: string, data: string) => {
    await writeSecretFile(join(dir, name), data.endsWith("\n") ? data : `${data}\n`, force);
    written.push(join(dir, name));
  };
  const pub = async (name: string, data: string) => {
    await writeFileAtomic(join(dir, name), data.endsWith("\n") ? data : `${data}\n`, { mode: 0o644 });
    written.push(join(dir, name));
  };

  const th = await createTrustHierarchy();
  await secret(AUTH_FILES.operatorSeed, th.operator.seed);
  await secret(AUTH_FILES.operatorSigningSeed, th.operator.signingSeed);
  await pub(AUTH_FILES.operatorJwt, th.operator.jwt);
  await secret(AUTH_FILES.systemAccountSeed, th.system.seed);
  await secret(AUTH_FILES.systemAccountSigningSeed, th.system.signingSeed);
  await pub(AUTH_FILES.systemAccountJwt, th.system.jwt);
  await secret(AUTH_FILES.accountSeed, th.zester.seed);
  await secret(AUTH_FILES.accountSigningSeed, th.zester.signingSeed);
  await pub(AUTH_FILES.accountJwt, th.zester.jwt);

  const zesterSigner: AccountSigner = {
    accountPublicKey: th.zester.publicKey,
    signingSeed: th.zester.signingSeed,
  };
  const sysSigner: AccountSigner = {
    accountPublicKey: th.system.publicKey,
    signingSeed: th.system.signingSeed,
  };
  await secret(AUTH_FILES.systemCreds, await issueUserCreds(sysSigner, "sys", undefined));
  const masterCreds = await issueRoleCreds(zesterSigner, "master");
  await secret(AUTH_FILES.masterCreds, masterCreds);
  await pub(
    AUTH_FILES.trustedMasters,
    `# master keys whose signed commands peels accept\n${keyPairFromCreds(masterCreds).getPublicKey()}\n`,
  );
  await secret(AUTH_FILES.adminCreds, await issueRoleCreds(zesterSigner, "admin"));

  const ca = await (await import("../ca/ca.js")).ensureCaAndServerCert(dir, [
    ...(opts.hosts ?? []),
    ...(opts.cluster?.hosts ?? []),
  ]);
  written.push(...ca.written);

  await mkdir(join(dir, AUTH_FILES.resolverDir), { recursive: true, mode: 0o700 });
  await mkdir(join(dir, AUTH_FILES.jetstreamDir), { recursive: true, mode: 0o700 });
  const base = {
    dir,
    operatorJwtFile: AUTH_FILES.operatorJwt,
    systemAccountPublicKey: th.system.publicKey,
    accounts: { [th.system.publicKey]: th.system.jwt, [th.zester.publicKey]: th.zester.jwt },
    certFile: CA_FILES.serverCert,
    keyFile: CA_FILES.serverKey,
  };
  if (opts.cluster) {
    for (const node of clusterNodes(opts.cluster, opts.port ?? DEFAULT_NATS_PORT, opts.listenHost)) {
      await mkdir(join(dir, node.resolverDir), { recursive: true, mode: 0o700 });
      await mkdir(join(dir, node.jetstreamDir), { recursive: true, mode: 0o700 });
      await pub(node.configFile, renderServerConfig({ ...base, ...node.config }));
    }
    return { written, kept: ca.kept };
  }
  const conf = renderServerConfig({
    ...base,
    port: opts.port ?? DEFAULT_NATS_PORT,
    ...(opts.listenHost !== undefined ? { host: opts.listenHost } : {}),
    resolverDir: AUTH_FILES.resolverDir,
    jetstreamDir: AUTH_FILES.jetstreamDir,
    ...(opts.leaf ? { leafListenPort: opts.leaf.port, defaultJsDomainAccounts: [th.zester.publicKey] } : {}),
  });
  await pub(AUTH_FILES.serverConfig, conf);
  if (opts.leaf) {
    const leaf = opts.leaf;
    // The edge server's own identity in the account: it relays its peels' traffic to the hub.
    await secret(AUTH_FILES.leafCreds, await issueUserCreds(zesterSigner, "leaf", undefined));
    await mkdir(join(dir, AUTH_FILES.leafResolverDir), { recursive: true, mode: 0o700 });
    const hub = leaf.hubHost.includes(":") ? `[${leaf.hubHost}]` : leaf.hubHost;
    await pub(
      AUTH_FILES.leafServerConfig,
      renderServerConfig({
        ...base,
        serverName: "zester-leaf",
        port: leaf.clientPort,
        ...(leaf.clientHost !== undefined ? { host: leaf.clientHost } : {}),
        resolverDir: AUTH_FILES.leafResolverDir,
        // No JetStream of its own: its clients' JetStream traffic goes to the hub.
        defaultJsDomainAccounts: [th.zester.publicKey],
        leafRemotes: {
          url: `tls://${hub}:${leaf.port}`,
          account: { publicKey: th.zester.publicKey, credsFile: AUTH_FILES.leafCreds },
          caFile: CA_FILES.caCert,
        },
      }),
    );
  }
  return { written, kept: ca.kept };
}

/** Loads what is needed to issue users in the ZESTER account from an auth dir. */
export async function loadAccountSigner(dir: string): Promise<AccountSigner> {
  const jwtPath = join(dir, AUTH_FILES.accountJwt);
  const seedPath = join(dir, AUTH_FILES.accountSigningSeed);
  let jwt: string;
  let signingSeed: string;
  try {
    jwt = (await readFile(jwtPath, "utf8")).trim();
    signingSeed = (await readFile(seedPath, "utf8")).trim();
  } catch (err) {
    throw new Error(
      `cannot read the account signing material in ${dir} (run \`zester nats-auth init --dir ${dir}\`): ` +
        errText(err),
    );
  }
  let sub = accountSubjects.get(jwt);
  if (sub === undefined) {
    sub = decode(jwt).sub;
    accountSubjects.set(jwt, sub);
  }
  return { accountPublicKey: sub, signingSeed };
}

/**
 * Account JWT → its subject. decode() checks the JWT's signature in JavaScript (~6 ms), which
 * issuing creds for a fleet would otherwise pay on every peel; the files are still read each time.
 */
const accountSubjects = new Map<string, string>();

export function peelCredsPath(dir: string, peelId: string): string {
  return join(dir, AUTH_FILES.peelCredsDir, `${assertPeelId(peelId)}.creds`);
}

/**
 * `<dir>/peels/<id>.pub`: the user key of creds issued for the id, wherever they were written.
 * Enrollment reads it so that a new key cannot take over an id that already has creds.
 */
export function peelPublicKeyPath(dir: string, peelId: string): string {
  return join(dir, AUTH_FILES.peelCredsDir, `${assertPeelId(peelId)}.pub`);
}

/** Issues least-privilege creds for one peel and writes them (0600) to `out` or the default path. */
export async function issuePeelCredsFile(
  dir: string,
  peelId: string,
  opts: { out?: string; force?: boolean; basketScope?: BasketScope } = {},
): Promise<string> {
  assertPeelId(peelId);
  const signer = await loadAccountSigner(dir);
  const out = opts.out ?? peelCredsPath(dir, peelId);
  const creds = await issueRoleCreds(signer, {
    peel: peelId,
    ...(opts.basketScope ? { basketScope: opts.basketScope } : {}),
  });
  await writeSecretFile(out, creds, opts.force ?? false);
  await mkdir(join(dir, AUTH_FILES.peelCredsDir), { recursive: true, mode: 0o700 });
  await writeFileAtomic(peelPublicKeyPath(dir, peelId), `${credsUserKey(creds)}\n`, { mode: 0o644 });
  return out;
}

/** Re-issues role creds (e.g. after a permissions change) without touching the trust chain. */
export async function issueRoleCredsFile(
  dir: string,
  role: Role,
  opts: { out?: string; force?: boolean } = {},
): Promise<string> {
  const signer = await loadAccountSigner(dir);
  const out = opts.out ?? join(dir, role === "master" ? AUTH_FILES.masterCreds : AUTH_FILES.adminCreds);
  await writeSecretFile(out, await issueUserCreds(signer, role, permissionsFor(role)), opts.force ?? false);
  return out;
}

/**
 * The master public keys in `<dir>/trusted-masters.pub`: one nkey per line, `#` comments and
 * blank lines ignored. A missing or empty file is an error: a peel that trusts nobody would
 * silently refuse every command.
 */
export async function loadTrustedMasters(dir: string): Promise<Set<string>> {
  const path = join(dir, AUTH_FILES.trustedMasters);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new Error(
      `cannot read trusted master keys ${path} (written by \`zester nats-auth init\`): ${errText(err)}`,
    );
  }
  const keys = new Set<string>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    let ok = false;
    try {
      ok = line.startsWith("U") && fromPublic(line).getPublicKey() === line;
    } catch {
      ok = false;
    }
    if (!ok) throw new Error(`${path}:${i + 1}: not a user public nkey: ${JSON.stringify(line)}`);
    keys.add(line);
  });
  if (keys.size === 0) throw new Error(`${path} lists no master keys`);
  return keys;
}
