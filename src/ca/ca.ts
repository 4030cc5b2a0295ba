/**
 * A small certificate authority for the NATS TLS listener (dev, test, and sites without a PKI):
 * one ECDSA P-256 CA and server certificates whose SANs list every name clients dial.
 * Node's crypto signs but cannot build X.509, hence @peculiar/x509 on top of WebCrypto.
 */

// @peculiar/x509 resolves its algorithm providers through tsyringe, which needs the Reflect
// metadata polyfill loaded first.
import "reflect-metadata";
import { createPrivateKey, randomBytes, webcrypto } from "node:crypto";
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { errText } from "../util/errors.js";
import { statOrUndefined, writeFileAtomic, writeSecretFile } from "../util/files.js";
import { CA_FILES } from "./files.js";

type X509Crypto = NonNullable<Parameters<typeof x509.X509CertificateGenerator.create>[1]>;
type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
const crypto = webcrypto;
const x509Crypto = webcrypto as unknown as X509Crypto;
const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY_MS = 24 * 3600 * 1000;

export { CA_FILES } from "./files.js";

/** Names every local client can use, added to each server certificate. */
export const DEFAULT_SERVER_HOSTS = ["localhost", "127.0.0.1", "::1"];

export interface PemPair {
  certPem: string;
  keyPem: string;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive INTEGER
  if (b[0] === 0) b[0] = 1;
  return b.toString("hex");
}

async function keyToPem(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

async function importSigningKey(pem: string): Promise<CryptoKey> {
  const der = createPrivateKey(pem).export({ type: "pkcs8", format: "der" });
  return crypto.subtle.importKey("pkcs8", new Uint8Array(der), EC, false, ["sign"]);
}

export async function createCa(opts: { commonName?: string; validDays?: number } = {}): Promise<PemPair> {
  const keys = (await crypto.subtle.generateKey(EC, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: `CN=${opts.commonName ?? "Zester NATS CA"}, O=Zester`,
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + (opts.validDays ?? 3650) * DAY_MS),
      signingAlgorithm: SIGNING,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, x509Crypto),
      ],
    },
    x509Crypto,
  );
  return { certPem: cert.toString("pem"), keyPem: await keyToPem(keys.privateKey) };
}

/** Splits host arguments (repeatable, comma-separated) into unique names, defaults first. */
export function normaliseHosts(hosts: readonly string[], withDefaults = true): string[] {
  const out: string[] = withDefaults ? [...DEFAULT_SERVER_HOSTS] : [];
  for (const h of hosts.flatMap((x) => x.split(","))) {
    const v = h.trim().replace(/^\[(.*)\]$/, "$1");
    if (v === "") continue;
    if (
      !isIP(v) &&
      !/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(v)
    ) {
      throw new Error(`invalid host ${JSON.stringify(h)}: expected a DNS name or an IP address`);
    }
    if (!out.includes(v)) out.push(v);
  }
  return out;
}

export async function issueServerCert(
  ca: PemPair,
  hosts: readonly string[],
  opts: { validDays?: number } = {},
): Promise<PemPair> {
  const names = normaliseHosts(hosts, false);
  if (names.length === 0) throw new Error("a server certificate needs at least one host");
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importSigningKey(ca.keyPem);
  const keys = (await crypto.subtle.generateKey(EC, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serial(),
      subject: `CN=${names.find((n) => !isIP(n)) ?? names[0]}, O=Zester`,
      issuer: caCert.subject,
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + (opts.validDays ?? 825) * DAY_MS),
      signingAlgorithm: SIGNING,
      publicKey: keys.publicKey,
      signingKey: caKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        // clientAuth too: cluster nodes present this certificate to each other on their routes.
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.SubjectAlternativeNameExtension(
          names.map((n) => ({ type: isIP(n) ? ("ip" as const) : ("dns" as const), value: n })),
        ),
        await x509.AuthorityKeyIdentifierExtension.create(caCert, false, x509Crypto),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, x509Crypto),
      ],
    },
    x509Crypto,
  );
  return { certPem: cert.toString("pem"), keyPem: await keyToPem(keys.privateKey) };
}

/** Reads the SANs of a PEM certificate (for output and tests). */
export function certificateHosts(certPem: string): string[] {
  const cert = new x509.X509Certificate(certPem);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return san ? san.names.toJSON().map((n) => n.value) : [];
}

export interface CaDirResult {
  written: string[];
  kept: string[];
}

/** Creates the CA in `dir` unless one exists; `force` replaces it (invalidating issued certs). */
export async function initCaDir(dir: string, opts: { force?: boolean } = {}): Promise<CaDirResult> {
  const certPath = join(dir, CA_FILES.caCert);
  const keyPath = join(dir, CA_FILES.caKey);
  const haveCert = await statOrUndefined(certPath);
  const haveKey = await statOrUndefined(keyPath);
  if ((haveCert || haveKey) && !opts.force) {
    throw new Error(`${haveCert ? certPath : keyPath} already exists (use --force to overwrite)`);
  }
  const ca = await createCa();
  await writeSecretFile(keyPath, ca.keyPem, opts.force);
  await writeFileAtomic(certPath, ca.certPem, { mode: 0o644 });
  return { written: [certPath, keyPath], kept: [] };
}

export async function readCa(dir: string): Promise<PemPair> {
  const certPath = join(dir, CA_FILES.caCert);
  const keyPath = join(dir, CA_FILES.caKey);
  try {
    return { certPem: await readFile(certPath, "utf8"), keyPem: await readFile(keyPath, "utf8") };
  } catch (err) {
    throw new Error(
      `cannot read the CA in ${dir} (run \`zester ca init --dir ${dir}\` first): ${errText(err)}`,
    );
  }
}

/** Issues `<dir>/nats-server.{crt,key}` from the CA in `dir`. */
export async function issueServerCertFiles(
  dir: string,
  hosts: readonly string[],
  opts: { force?: boolean } = {},
): Promise<CaDirResult> {
  const certPath = join(dir, CA_FILES.serverCert);
  const keyPath = join(dir, CA_FILES.serverKey);
  if (!opts.force) {
    for (const p of [certPath, keyPath]) {
      if (await statOrUndefined(p)) throw new Error(`${p} already exists (use --force to overwrite)`);
    }
  }
  const ca = await readCa(dir);
  const pair = await issueServerCert(ca, normaliseHosts(hosts));
  await writeSecretFile(keyPath, pair.keyPem, opts.force);
  await writeFileAtomic(certPath, pair.certPem, { mode: 0o644 });
  return { written: [certPath, keyPath], kept: [] };
}

/**
 * Ensures a CA and a server certificate exist in `dir`, creating only what is missing; used by
 * `nats-auth init`, which must not invalidate certificates clients already trust.
 */
export async function ensureCaAndServerCert(dir: string, hosts: readonly string[]): Promise<CaDirResult> {
  const result: CaDirResult = { written: [], kept: [] };
  const caCert = join(dir, CA_FILES.caCert);
  if (await statOrUndefined(caCert)) {
    result.kept.push(caCert);
  } else {
    result.written.push(...(await initCaDir(dir)).written);
  }
  const serverCert = join(dir, CA_FILES.serverCert);
  if (await statOrUndefined(serverCert)) {
    result.kept.push(serverCert);
  } else {
    result.written.push(...(await issueServerCertFiles(dir, hosts, { force: true })).written);
  }
  return result;
}
