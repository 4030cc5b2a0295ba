/**
 * The wire codec: JSON with a protocol version field. Changes are additive within a major
 * version, so a reader accepts its own major and refuses anything newer instead of guessing.
 */

import { errText } from "../util/errors.js";
import { checkDepth, checkSize, ProtocolError, type Schema } from "./validate.js";

export { ProtocolError };

export const PROTOCOL_VERSION = 1;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Serialises a payload with `v` set to this build's protocol version (a caller's `v` is replaced). */
export function encode<T extends object>(payload: T): Uint8Array {
  return encoder.encode(JSON.stringify({ ...payload, v: PROTOCOL_VERSION }));
}

/**
 * Parses a payload and checks its version. Throws ProtocolError for a payload over the size or
 * nesting limits of validate.ts, invalid JSON, a non-object, a missing or malformed `v`, or a
 * newer major version. The fields are not checked: that is decodeAs() with a schema.
 */
export function decode<T extends object = Record<string, unknown>>(
  data: Uint8Array | string,
): T & { v: number } {
  checkSize(data.length);
  let text: string;
  try {
    text = typeof data === "string" ? data : decoder.decode(data);
  } catch {
    throw new ProtocolError("message is not valid UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError(`message is not valid JSON: ${errText(err)}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ProtocolError("message must be a JSON object");
  }
  checkDepth(value);
  const v = (value as { v?: unknown }).v;
  if (v === undefined) {
    throw new ProtocolError(`message has no protocol version field "v" (expected v: ${PROTOCOL_VERSION})`);
  }
  if (typeof v !== "number" || !Number.isFinite(v) || v < 1) {
    throw new ProtocolError(`message has an invalid protocol version ${JSON.stringify(v)}`);
  }
  const major = Math.floor(v);
  if (major > PROTOCOL_VERSION) {
    throw new ProtocolError(
      `message uses protocol version ${v}, newer than this build supports (${PROTOCOL_VERSION}); upgrade zester`,
    );
  }
  return value as T & { v: number };
}

/** decode() and then the schema: the payload as T, or a ProtocolError naming the bad field. */
export function decodeAs<T extends object>(schema: Schema<T>, data: Uint8Array | string): T & { v: number } {
  const value = decode(data);
  schema.parse(value);
  return value as T & { v: number };
}
