/**
 * Ed25519 for nkeys through node:crypto. @nats-io/nkeys signs in pure JavaScript (~9 ms a
 * signature, ~13 ms a verification on these machines): a master signing one command per peel
 * would stall for seconds on a thousand-peel job. OpenSSL does the same in well under 0.1 ms, and
 * Ed25519 is deterministic, so the signatures are byte-identical to the nkeys ones.
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { fromPublic, type KeyPair } from "@nats-io/nkeys";

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
