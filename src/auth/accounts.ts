/**
 * More accounts under one operator (spec: "Three-Tier Trust Hierarchy", production and
 * staging). NATS keeps accounts apart: subjects, KV buckets and streams of one account do not
 * exist in another, so each account is a whole Zester deployment of its own, with its own
 * master, admin and peel creds, trusted master keys and master curve key. Each lives in
 * `<auth-dir>/accounts/<name>/`, laid out like the auth dir itself, so a master, CLI or peel
 * selects an account by using that directory as its auth dir (`--auth-dir`, ZESTER_AUTH_DIR).
 */
import { chmod, copyFile, mkdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { connect } from "../bus/connect.js";
import { CA_FILES } from "../ca/files.js";
import { ensureMasterCurveKey } from "../settings/keys.js";
import { errText } from "../util/errors.js";
import { statOrUndefined, writeFileAtomic, writeSecretFile } from "../util/files.js";
import { AUTH_FILES } from "./auth-dir.js";
import { type AccountSigner, createAccount, issueRoleCreds } from "./hierarchy.js";
import { keyPairFromCreds } from "./signing.js";

export const ACCOUNTS_DIR = "accounts";
const ACCOUNT_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
/** Names the auth dir already uses for its own accounts. */
const RESERVED = new Set(["SYS", "ZESTER"]);

export function accountDir(root: string, name: string): string {
  if (!ACCOUNT_NAME.test(name) || RESERVED.has(name.toUpperCase())) {
    throw new Error(
      `invalid account name ${JSON.stringify(name)}: 1-64 characters from A-Z a-z 0-9 _ -, not SYS or ZESTER`,
    );
  }
  return join(resolve(root), ACCOUNTS_DIR, name);
}

export interface AddAccountResult {
  dir: string;
  publicKey: string;
  jwt: string;
  written: string[];
  /** The server config's resolver preload now lists the account (false: no config in the dir). */
  preloaded: boolean;
}

async function readRequired(path: string, what: string): Promise<string> {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch (err) {
    throw new Error(`cannot read ${what} ${path} (run \`zester nats-auth init\` first): ${errText(err)}`);
  }
}

/**
 * Creates account `name` in the auth dir `root`: its JWT signed by the operator signing key, a
 * master and an admin user, and the files peels and masters of that account need. Refuses an
 * existing account directory.
 */
export async function addAccount(root: string, name: string): Promise<AddAccountResult> {
  const dir = accountDir(root, name);
  if (await statOrUndefined(join(dir, AUTH_FILES.accountJwt))) {
    throw new Error(`account ${name} already exists in ${dir}`);
  }
  const operatorSigningSeed = await readRequired(
    join(root, AUTH_FILES.operatorSigningSeed),
    "the operator signing seed",
  );
  await mkdir(join(dir, AUTH_FILES.peelCredsDir), { recursive: true, mode: 0o700 });
  const written: string[] = [];
  const secret = async (file: string, data: string) => {
    await writeSecretFile(join(dir, file), data.endsWith("\n") ? data : `${data}\n`, false);
    written.push(join(dir, file));
  };
  const pub = async (file: string, data: string) => {
    await writeFileAtomic(join(dir, file), data.endsWith("\n") ? data : `${data}\n`, { mode: 0o644 });
    written.push(join(dir, file));
  };

  const acct = await createAccount(name, operatorSigningSeed);
  await pub(AUTH_FILES.accountJwt, acct.jwt);
  await secret(AUTH_FILES.accountSeed, acct.seed);
  await secret(AUTH_FILES.accountSigningSeed, acct.signingSeed);
  const signer: AccountSigner = { accountPublicKey: acct.publicKey, signingSeed: acct.signingSeed };
  const masterCreds = await issueRoleCreds(signer, "master");
  await secret(AUTH_FILES.masterCreds, masterCreds);
  await secret(AUTH_FILES.adminCreds, await issueRoleCreds(signer, "admin"));
  await pub(
    AUTH_FILES.trustedMasters,
    `# master keys whose signed commands peels of account ${name} accept\n${keyPairFromCreds(masterCreds).getPublicKey()}\n`,
  );
  // Enrollment revokes keys by re-signing this account's JWT and pushing it with the system user.
  await secret(AUTH_FILES.operatorSigningSeed, operatorSigningSeed);
  await copyIfPresent(join(root, AUTH_FILES.systemCreds), join(dir, AUTH_FILES.systemCreds), written, 0o600);
  await copyIfPresent(join(root, CA_FILES.caCert), join(dir, CA_FILES.caCert), written, 0o644);
  const curve = await ensureMasterCurveKey(dir);
  if (curve.written) written.push(curve.seedPath);

  const preloaded = await addToPreload(join(root, AUTH_FILES.serverConfig), acct.publicKey, acct.jwt);
  return { dir, publicKey: acct.publicKey, jwt: acct.jwt, written, preloaded };
}

async function copyIfPresent(from: string, to: string, written: string[], mode: number): Promise<void> {
  if (!(await statOrUndefined(from))) return;
  await copyFile(from, to);
  await chmod(to, mode);
  written.push(to);
}

/** Adds the account to `resolver_preload` so a server started from this config knows it. */
async function addToPreload(confPath: string, publicKey: string, jwt: string): Promise<boolean> {
  let conf: string;
  try {
    conf = await readFile(confPath, "utf8");
  } catch {
    return false;
  }
  const open = /^resolver_preload:\s*\{\s*$/m.exec(conf);
  if (!open) throw new Error(`${confPath} has no resolver_preload block to add the account to`);
  const at = open.index + open[0].length;
  const next = `${conf.slice(0, at)}\n  ${publicKey}: ${JSON.stringify(jwt)}${conf.slice(at)}`;
  await writeFileAtomic(confPath, next, { mode: 0o644 });
  return true;
}

/**
 * Pushes an account JWT to a running server's full resolver with the system user, so the
 * account works without a restart.
 */
export async function pushAccount(
  root: string,
  jwt: string,
  servers: string | string[],
  caFile?: string,
): Promise<void> {
  const sys = await connect({
    servers,
    credsFile: join(root, AUTH_FILES.systemCreds),
    authDir: root,
    ...(caFile !== undefined ? { caFile } : {}),
    name: "zester nats-auth account add",
    reconnect: false,
  });
  try {
    const reply = await sys.request("$SYS.REQ.CLAIMS.UPDATE", jwt, { timeout: 5000 });
    const body = JSON.parse(reply.string()) as {
      error?: { description?: string };
      data?: { code?: number; message?: string };
    };
    if (body.error || (body.data?.code !== undefined && body.data.code >= 300)) {
      throw new Error(
        `the server refused the account: ${body.error?.description ?? body.data?.message ?? reply.string()}`,
      );
    }
  } finally {
    await sys.close();
  }
}
