import { randomBytes } from "node:crypto";

/**
 * KSUIDs: 20 bytes — a 4-byte big-endian count of seconds since 2014-05-13T16:53:20Z followed by
 * 16 random bytes — written as 27 base62 characters. The fixed width and the digits-before-letters
 * alphabet make plain string order equal to time order, which is what job listings rely on.
 */

/** 1400000000 seconds after the Unix epoch. */
export const KSUID_EPOCH_SECONDS = 1_400_000_000;
export const KSUID_LENGTH = 27;
const PAYLOAD_BYTES = 16;
const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const MAX_VALUE = (1n << 160n) - 1n;
const KSUID_RE = /^[0-9A-Za-z]{27}$/;

export interface ParsedKsuid {
  timestamp: Date;
  payload: Uint8Array;
}

/** Encodes a timestamp (whole seconds) and a 16-byte payload. */
export function formatKsuid(timestamp: Date, payload: Uint8Array): string {
  if (payload.length !== PAYLOAD_BYTES) throw new Error(`KSUID payload must be ${PAYLOAD_BYTES} bytes`);
  const secs = Math.floor(timestamp.getTime() / 1000) - KSUID_EPOCH_SECONDS;
  if (!Number.isFinite(secs) || secs < 0 || secs > 0xffffffff) {
    throw new Error(`timestamp ${timestamp.toISOString()} is outside the KSUID range`);
  }
  let n = BigInt(secs);
  for (const b of payload) n = (n << 8n) | BigInt(b);
  let out = "";
  while (n > 0n) {
    out = ALPHABET[Number(n % 62n)]! + out;
    n /= 62n;
  }
  return out.padStart(KSUID_LENGTH, "0");
}

/** A new KSUID for `date` (default now) with a cryptographically random payload. */
export function newKsuid(date: Date = new Date()): string {
  return formatKsuid(date, randomBytes(PAYLOAD_BYTES));
}

/** Decodes a KSUID; throws on wrong length, characters outside base62, or a value over 160 bits. */
export function parseKsuid(s: string): ParsedKsuid {
  if (!KSUID_RE.test(s))
    throw new Error(`not a KSUID: ${JSON.stringify(s)} (want ${KSUID_LENGTH} base62 characters)`);
  let n = 0n;
  for (const ch of s) n = n * 62n + BigInt(ALPHABET.indexOf(ch));
  if (n > MAX_VALUE) throw new Error(`not a KSUID: ${JSON.stringify(s)} (value exceeds 160 bits)`);
  const payload = new Uint8Array(PAYLOAD_BYTES);
  for (let i = PAYLOAD_BYTES - 1; i >= 0; i--) {
    payload[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return { timestamp: new Date((Number(n) + KSUID_EPOCH_SECONDS) * 1000), payload };
}

export function isKsuid(s: unknown): s is string {
  if (typeof s !== "string" || !KSUID_RE.test(s)) return false;
  // Only strings at or below the max ("aWgEPTl1tmebfsQzFP4bxwgy80V") fit in 160 bits; same-length
  // base62 strings compare like their values under plain string order.
  return s <= "aWgEPTl1tmebfsQzFP4bxwgy80V";
}

/** The smallest KSUID for a time: useful as a lower bound when listing jobs since a moment. */
export function minKsuidAt(date: Date): string {
  return formatKsuid(date, new Uint8Array(PAYLOAD_BYTES));
}
