/**
 * Ed25519 for nkeys through node:crypto. @nats-io/nkeys signs in pure JavaScript (~9 ms a
 * signature, ~13 ms a verification on these machines): a master signing one command per peel
 * would stall for seconds on a thousand-peel job. OpenSSL does the same in well under 0.1 ms, and
 * Ed25519 is deterministic, so the signatures are byte-identical to the nkeys ones.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";
import { fromPublic, fromSeed, type KeyPair, Prefix } from "@nats-io/nkeys";
// Not re-exported by the package's entry point; the tests pin its output against nkeys' own keys.
import { Codec } from "@nats-io/nkeys/lib/codec.js";

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
// DER headers that wrap a raw 32-byte Ed25519 seed (PKCS#8) or public key (SPKI).
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");

function base32Decode(text: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const v = BASE32.indexOf(ch);
    if (v < 0) throw new Error("invalid nkey encoding");
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The nkey text form of a raw public key (nkeys' own codec: prefix byte, payload, CRC-16). */
function encodePublic(role: Prefix, raw: Uint8Array): string {
  return new TextDecoder().decode(Codec.encode(role, raw));
}

const privateKeys = new WeakMap<KeyPair, KeyObject>();
const publicKeys = new Map<string, KeyObject>();

function privateKeyOf(kp: KeyPair): KeyObject {
  let key = privateKeys.get(kp);
  if (!key) {
    // An nkey seed is base32(2 prefix bytes + 32-byte seed + 2-byte CRC).
    const raw = base32Decode(new TextDecoder().decode(kp.getSeed())).subarray(2, 34);
    key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, raw]), format: "der", type: "pkcs8" });
    privateKeys.set(kp, key);
  }
  return key;
}

function publicKeyOf(nkey: string): KeyObject {
  let key = publicKeys.get(nkey);
  if (!key) {
    fromPublic(nkey); // validates prefix and checksum; throws on a malformed key
    // A public nkey is base32(1 prefix byte + 32-byte key + 2-byte CRC).
    const raw = base32Decode(nkey).subarray(1, 33);
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: "der", type: "spki" });
    // Only keys that passed a trust check reach here in practice; the bound is a safety net.
    if (publicKeys.size > 1024) publicKeys.clear();
    publicKeys.set(nkey, key);
  }
  return key;
}

const publicNkeys = new WeakMap<KeyPair, string>();

/** `kp.getPublicKey()` recomputes the key from the seed in JavaScript every call; this does it once. */
export function publicNkeyOf(kp: KeyPair): string {
  let pub = publicNkeys.get(kp);
  if (pub === undefined) {
    pub = kp.getPublicKey();
    publicNkeys.set(kp, pub);
  }
  return pub;
}

export function ed25519Sign(kp: KeyPair, data: Uint8Array): Uint8Array {
  return sign(null, data, privateKeyOf(kp));
}

export function ed25519Verify(publicNkey: string, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(null, data, publicKeyOf(publicNkey), signature);
  } catch {
    return false;
  }
}

const fastPairs = new WeakSet<KeyPair>();

/**
 * `kp` with sign(), getPublicKey() and getPrivateKey() done by node:crypto, once each for the
 * keys; nkeys would redo the Ed25519 key derivation in JavaScript on every call, and
 * @nats-io/jwt calls getPublicKey() several times per token. Results are byte-identical, so
 * JWTs and creds do not change. Public-only and curve keys are returned as they are.
 */
export function fastKeyPair(kp: KeyPair): KeyPair {
  return wrap(kp);
}

function wrap(kp: KeyPair, known?: { privateKey: KeyObject; rawPublic: Buffer }): KeyPair {
  if (fastPairs.has(kp)) return kp;
  if (known) privateKeys.set(kp, known.privateKey);
  let seed: Uint8Array;
  let role: Prefix;
  try {
    const decoded = Codec.decodeSeed(kp.getSeed());
    seed = decoded.buf;
    role = decoded.prefix;
  } catch {
    return kp;
  }
  if (role === Prefix.Curve) return kp;
  let pub: Buffer | undefined = known?.rawPublic;
  const rawPublic = (): Buffer => {
    pub ??= createPublicKey(privateKeyOf(kp))
      .export({ format: "der", type: "spki" })
      .subarray(SPKI_ED25519.length);
    return pub;
  };
  let publicNkey: string | undefined;
  const fast: KeyPair = {
    getPublicKey() {
      kp.getSeed(); // throws once the pair is cleared, as nkeys does
      publicNkey ??= encodePublic(role, rawPublic());
      return publicNkey;
    },
    getPrivateKey() {
      kp.getSeed();
      // nkeys' private key: the 64-byte tweetnacl secret key (seed + public key).
      return Codec.encode(Prefix.Private, Buffer.concat([seed, rawPublic()]));
    },
    getSeed: () => kp.getSeed(),
    sign(input: Uint8Array) {
      kp.getSeed();
      return ed25519Sign(kp, input);
    },
    verify: (input, sig) => kp.verify(input, sig),
    clear() {
      seed.fill(0);
      kp.clear();
    },
    seal: (input, recipient, nonce) => kp.seal(input, recipient, nonce),
    open: (message, sender) => kp.open(message, sender),
  };
  fastPairs.add(fast);
  return fast;
}

/**
 * A fresh Ed25519 nkey (already a fastKeyPair) with its seed from node:crypto. Generating the key
 * object directly is ~10x cheaper than importing a seed (OpenSSL 3 decodes PKCS#8 slowly), and
 * gives the public key for free. fromSeed re-parses the encoded seed, so nkeys itself checks the
 * prefix and checksum written here.
 */
export function createEd25519KeyPair(role: Prefix.User | Prefix.Account | Prefix.Operator): KeyPair {
  const { privateKey } = generateKeyPairSync("ed25519");
  const jwk = privateKey.export({ format: "jwk" });
  const raw = Buffer.from(jwk.d ?? "", "base64url");
  const rawPublic = Buffer.from(jwk.x ?? "", "base64url");
  if (raw.length !== 32 || rawPublic.length !== 32)
    throw new Error("node:crypto returned a malformed Ed25519 key");
  const kp = fromSeed(Codec.encodeSeed(role, raw));
  raw.fill(0);
  return wrap(kp, { privateKey, rawPublic });
}
