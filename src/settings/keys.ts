/**
 * Curve (X25519) keys for secrets. The master's key opens what operators encrypt and seals each
 * peel's secrets; each peel's key opens only its own blob. Seeds are 0600 and never replaced
 * silently: losing a master curve seed makes every `!encrypted` value in the tree unreadable.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createCurve, fromCurveSeed, fromPublic, type KeyPair } from "@nats-io/nkeys";
import { errText } from "../util/errors.js";
import {
  FileExistsError,
  isENOENT,
  MissingFileError,
  statOrUndefined,
  writeFileAtomic,
  writeSecretFile,
} from "../util/files.js";

/** File names inside the auth dir (next to the files of `zester nats-auth init`). */
export const MASTER_CURVE_FILES = {
  seed: "master-curve.nk",
  /** Public: operators need it to encrypt values (`zester settings encrypt --auth-dir`). */
  pub: "master-curve.pub",
} as const;

/** A peel's curve seed inside its cache dir. */
export const PEEL_CURVE_FILE = "curve.nk";

const CURVE_PUB = /^X[A-Z2-7]{55}$/;

/** Shape and checksum: a typo in a pasted key must not produce a value nobody can open. */
export function isCurvePublicKey(s: string): boolean {
  if (!CURVE_PUB.test(s)) return false;
  try {
    fromPublic(s);
    return true;
  } catch {
    return false;
  }
}

export function assertCurvePublicKey(s: string, what = "curve public key"): string {
  if (!isCurvePublicKey(s)) {
    throw new Error(
      `invalid ${what} ${JSON.stringify(s)}: expected a 56-character curve public key starting with "X" (check for a typo)`,
    );
  }
  return s;
}

export function curveFromSeed(seed: string, where: string): KeyPair {
  try {
    return fromCurveSeed(new TextEncoder().encode(seed.trim()));
  } catch (err) {
    throw new Error(`${where} does not hold a curve seed (expected one starting with "SX"): ${errText(err)}`);
  }
}

async function readText(path: string, missing: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if (isENOENT(err)) throw new MissingFileError(path, `${path} does not exist: ${missing}`, { cause: err });
    throw err;
  }
}

export interface MasterCurveFiles {
  seedPath: string;
  pubPath: string;
  publicKey: string;
}

/** `zester settings keygen`: writes a new master curve seed (0600) and its public key (0644). */
export async function writeMasterCurveKey(
  dir: string,
  opts: { force?: boolean } = {},
): Promise<MasterCurveFiles> {
  const kp = createCurve();
  const seed = new TextDecoder().decode(kp.getSeed());
  const publicKey = kp.getPublicKey();
  const seedPath = join(dir, MASTER_CURVE_FILES.seed);
  const pubPath = join(dir, MASTER_CURVE_FILES.pub);
  await writeSecretFile(seedPath, `${seed}\n`, opts.force ?? false);
  await writeFileAtomic(pubPath, `${publicKey}\n`, { mode: 0o644 });
  return { seedPath, pubPath, publicKey };
}

/** Creates the master curve key unless the auth dir has one (or `force`); says which. */
export async function ensureMasterCurveKey(
  dir: string,
  opts: { force?: boolean } = {},
): Promise<{ written: boolean; seedPath: string }> {
  const seedPath = join(dir, MASTER_CURVE_FILES.seed);
  if (!opts.force && (await statOrUndefined(seedPath))) return { written: false, seedPath };
  await writeMasterCurveKey(dir, opts);
  return { written: true, seedPath };
}

/** The master's curve key pair, from the auth dir. */
export async function loadMasterCurve(dir: string): Promise<KeyPair> {
  const path = join(dir, MASTER_CURVE_FILES.seed);
  const text = await readText(path, `create it with \`zester settings keygen --dir ${dir}\``);
  return curveFromSeed(text, path);
}

/** The master's curve public key, what operators encrypt to. */
export async function loadMasterCurvePub(dir: string): Promise<string> {
  const path = join(dir, MASTER_CURVE_FILES.pub);
  const text = await readText(path, `create it with \`zester settings keygen --dir ${dir}\``);
  return assertCurvePublicKey(text.trim(), `master curve public key in ${path}`);
}

export function peelCurveKeyPath(cacheDir: string): string {
  return join(cacheDir, PEEL_CURVE_FILE);
}

/**
 * The peel's curve key pair, generated on first use. The peel publishes the public half (e.g.
 * with its facts) so the master can seal for it; the seed never leaves the machine.
 */
export async function ensurePeelCurveKey(cacheDir: string): Promise<KeyPair> {
  const path = peelCurveKeyPath(cacheDir);
  try {
    return curveFromSeed(await readFile(path, "utf8"), path);
  } catch (err) {
    if (!isENOENT(err)) throw err;
  }
  const kp = createCurve();
  try {
    await writeSecretFile(path, `${new TextDecoder().decode(kp.getSeed())}\n`);
  } catch (err) {
    // Another Peel in this process won the race: use its key, not ours.
    if (err instanceof FileExistsError) return curveFromSeed(await readFile(path, "utf8"), path);
    throw err;
  }
  return kp;
}
