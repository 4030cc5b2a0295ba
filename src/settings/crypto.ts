/**
 * The two sealed formats of the secrets pipeline, both NATS xkeys (X25519 + XSalsa20-Poly1305):
 *
 * - `ENC[nkey,<base64>]`: what an operator writes in a settings file. Sealed to the master's curve
 *   key by a throw-away sender key whose public half travels in the value, so encrypting needs no
 *   secret at all, only the master's public key.
 * - The per-peel blob (KV `secrets`, key `<peel>`): one JSON envelope holding every secret that
 *   peel needs, sealed by the master's key to the peel's key. Because a box is authenticated by
 *   both keys, a peel accepts only what a trusted master sealed, and only the recipient can open it.
 */
import { createCurve, type KeyPair } from "@nats-io/nkeys";
import { publicNkeyOf } from "../auth/ed25519.js";
import { errText } from "../util/errors.js";
import { SecretError } from "./errors.js";
import { assertCurvePublicKey, isCurvePublicKey } from "./keys.js";

export const ENC_PREFIX = "ENC[nkey,";
/** One encrypted value; the base64 alphabet cannot contain `]`, so the first `]` closes it. */
export const ENC_PATTERN = /ENC\[nkey,([A-Za-z0-9+/=]+)\]/;
/** A whole value that is exactly one encrypted value. */
export const ENC_VALUE = /^ENC\[nkey,([A-Za-z0-9+/=]+)\]$/;

const PUB_LEN = 56;
/** "xkv1" + 24-byte nonce + 16-byte MAC: anything shorter cannot be a sealed value. */
const MIN_SEALED = 4 + 24 + 16;

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** Encrypts a value for the master; the result goes after `!encrypted` in a settings file. */
export function encryptValue(plaintext: string, masterCurvePub: string): string {
  assertCurvePublicKey(masterCurvePub, "master curve public key");
  const sender = createCurve();
  try {
    const sealed = sender.seal(enc.encode(plaintext), masterCurvePub);
    const payload = new Uint8Array(PUB_LEN + sealed.length);
    payload.set(enc.encode(sender.getPublicKey()), 0);
    payload.set(sealed, PUB_LEN);
    return `${ENC_PREFIX}${Buffer.from(payload).toString("base64")}]`;
  } finally {
    sender.clear();
  }
}

/** Opens an `ENC[nkey,...]` value with the master's key. Throws SecretError; never returns "". */
export function decryptValue(masterCurve: KeyPair, value: string): string {
  const m = ENC_VALUE.exec(value.trim());
  if (!m) throw new SecretError(`not an encrypted value (expected ${ENC_PREFIX}<base64>])`);
  const payload = Buffer.from(m[1]!, "base64");
  const sender = payload.subarray(0, PUB_LEN).toString("latin1");
  if (payload.length < PUB_LEN + MIN_SEALED || !isCurvePublicKey(sender)) {
    throw new SecretError("encrypted value is truncated or malformed");
  }
  let opened: Uint8Array | null;
  try {
    opened = masterCurve.open(new Uint8Array(payload.subarray(PUB_LEN)), sender);
  } catch (err) {
    throw new SecretError(`encrypted value is malformed: ${errText(err)}`);
  }
  if (opened === null) {
    throw new SecretError(
      `encrypted value does not open with master curve key ${masterCurve.getPublicKey()}: ` +
        "it was encrypted for another key, or altered",
    );
  }
  return utf8(opened, "encrypted value");
}

function utf8(data: Uint8Array, what: string): string {
  try {
    return dec.decode(data);
  } catch {
    throw new SecretError(`${what} is not valid UTF-8`);
  }
}

/** The envelope stored in KV `secrets`. `from`/`to` only improve error messages: the box itself proves both. */
interface PeelSecretsEnvelope {
  v: 1;
  alg: "xkv1";
  from: string;
  to: string;
  data: string;
}

/** Seals `secrets` (placeholder id → plaintext) from the master to one peel, as a JSON string. */
export function sealForPeel(
  masterCurve: KeyPair,
  peelCurvePub: string,
  secrets: Readonly<Record<string, string>>,
): string {
  assertCurvePublicKey(peelCurvePub, "peel curve public key");
  const inner = enc.encode(JSON.stringify({ v: 1, secrets }));
  const sealed = masterCurve.seal(inner, peelCurvePub);
  const envelope: PeelSecretsEnvelope = {
    v: 1,
    alg: "xkv1",
    from: publicNkeyOf(masterCurve),
    to: peelCurvePub,
    data: Buffer.from(sealed).toString("base64"),
  };
  return JSON.stringify(envelope);
}

/**
 * Opens this peel's blob. `masterCurvePub` lists the trusted master key(s). Any failure (wrong
 * recipient, untrusted sender, altered bytes) throws SecretError: a peel must never run with
 * secrets silently missing.
 */
export function openPeelSecrets(
  peelCurve: KeyPair,
  masterCurvePub: string | readonly string[],
  blob: string | Uint8Array,
): Record<string, string> {
  const trusted = typeof masterCurvePub === "string" ? [masterCurvePub] : [...masterCurvePub];
  if (trusted.length === 0) throw new SecretError("no trusted master curve key configured");
  let env: Partial<PeelSecretsEnvelope>;
  try {
    env = JSON.parse(
      typeof blob === "string" ? blob : utf8(blob, "sealed secrets"),
    ) as Partial<PeelSecretsEnvelope>;
  } catch (err) {
    if (err instanceof SecretError) throw err;
    throw new SecretError("sealed secrets are not valid JSON (truncated or altered)");
  }
  if (env === null || typeof env !== "object" || env.alg !== "xkv1" || typeof env.data !== "string") {
    throw new SecretError("sealed secrets have an unknown format");
  }
  const me = peelCurve.getPublicKey();
  if (env.to !== undefined && env.to !== me) {
    throw new SecretError(`sealed secrets are for curve key ${env.to}, but this peel's key is ${me}`);
  }
  if (env.from !== undefined && !trusted.includes(env.from)) {
    throw new SecretError(
      `sealed secrets come from curve key ${env.from}, which is not a trusted master key`,
    );
  }
  // The named sender first; `from` is unauthenticated, so the box decides, against trusted keys only.
  const order = env.from !== undefined ? [env.from, ...trusted.filter((k) => k !== env.from)] : trusted;
  const sealed = new Uint8Array(Buffer.from(env.data, "base64"));
  let opened: Uint8Array | null = null;
  for (const sender of order) {
    try {
      opened = peelCurve.open(sealed, sender);
    } catch {
      opened = null;
    }
    if (opened !== null) break;
  }
  if (opened === null) {
    throw new SecretError(
      "sealed secrets failed to open: altered or truncated in transit or storage, or not sealed for this peel",
    );
  }
  let inner: { v?: unknown; secrets?: unknown };
  try {
    inner = JSON.parse(utf8(opened, "sealed secrets")) as { v?: unknown; secrets?: unknown };
  } catch {
    throw new SecretError("opened secrets are not valid JSON");
  }
  const secrets = inner?.secrets;
  if (secrets === null || typeof secrets !== "object" || Array.isArray(secrets)) {
    throw new SecretError("opened secrets have no secrets map");
  }
  const out: Record<string, string> = {};
  for (const [id, v] of Object.entries(secrets)) {
    if (typeof v !== "string") throw new SecretError(`opened secret ${id} is not a string`);
    out[id] = v;
  }
  return out;
}
