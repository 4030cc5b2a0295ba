/**
 * Checks for everything that arrives from the bus. A peel controls the bytes of its own keys and
 * subjects, and can have the server hand those bytes to other subscribers (a push consumer's
 * deliver subject, a direct get's reply-to), so a payload is hostile until these checks pass:
 * bounded size and nesting before any recursive work, a schema instead of a cast, and proof that
 * a message was published on the subject its handler serves.
 */

import type { Msg, MsgHdrs } from "@nats-io/transport-node";

/** Larger than any NATS max_payload Zester is deployed with (the server default is 1 MiB). */
export const MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;
/** Arrays and objects inside each other; real payloads (state results, settings) stay far below. */
export const MAX_DEPTH = 100;

/** A payload that is not what the protocol allows (codec.ts throws it too). */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

/** A payload over a limit or not matching its schema. */
export class PayloadError extends ProtocolError {
  override name = "PayloadError";
}

export function checkSize(length: number, max = MAX_PAYLOAD_BYTES): void {
  if (length > max) throw new PayloadError(`payload of ${length} bytes is larger than the limit of ${max}`);
}

/** Throws when `value` nests deeper than `max`. Its own recursion stops at `max`. */
export function checkDepth(value: unknown, max = MAX_DEPTH): void {
  if (!withinDepth(value, 1, max)) {
    throw new PayloadError(`payload nests deeper than ${max} levels`);
  }
}

function withinDepth(v: unknown, depth: number, max: number): boolean {
  if (typeof v !== "object" || v === null) return true;
  if (depth > max) return false;
  if (Array.isArray(v)) {
    for (const x of v)
      if (typeof x === "object" && x !== null && !withinDepth(x, depth + 1, max)) return false;
    return true;
  }
  for (const k in v) {
    const x = (v as Record<string, unknown>)[k];
    if (typeof x === "object" && x !== null && !withinDepth(x, depth + 1, max)) return false;
  }
  return true;
}

// ---- schemas ------------------------------------------------------------------------------------

/**
 * A parser from unknown JSON to T: returns the value typed, or throws PayloadError naming the
 * field. Unknown object keys are kept (the protocol grows additively).
 */
export interface Schema<T> {
  readonly describe: string;
  parse(value: unknown, path?: string): T;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

function fail(path: string, want: string, got: unknown): never {
  const kind =
    got === null
      ? "null"
      : Array.isArray(got)
        ? "an array"
        : typeof got === "object"
          ? "an object"
          : `${typeof got} ${JSON.stringify(got)?.slice(0, 40)}`;
  throw new PayloadError(`${path || "payload"}: expected ${want}, got ${kind}`);
}

function primitive<T>(describe: string, ok: (v: unknown) => boolean): Schema<T> {
  return {
    describe,
    parse(v, path = "") {
      if (!ok(v)) fail(path, describe, v);
      return v as T;
    },
  };
}

export const str: Schema<string> = primitive("a string", (v) => typeof v === "string");
export const bool: Schema<boolean> = primitive("a boolean", (v) => typeof v === "boolean");
export const num: Schema<number> = primitive(
  "a finite number",
  (v) => typeof v === "number" && Number.isFinite(v),
);
export const nonNegInt: Schema<number> = primitive(
  "a non-negative integer",
  (v) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0,
);
/** Any JSON value (its size and depth are bounded by the decoder). */
export const json: Schema<unknown> = primitive("a JSON value", () => true);

export function literal<const L extends string>(...values: L[]): Schema<L> {
  return primitive(`one of ${values.map((x) => JSON.stringify(x)).join(", ")}`, (v) =>
    values.includes(v as L),
  );
}

export function arrayOf<T>(item: Schema<T>): Schema<T[]> {
  return {
    describe: `an array of ${item.describe}`,
    parse(v, path = "") {
      if (!Array.isArray(v)) fail(path, "an array", v);
      for (let i = 0; i < v.length; i++) item.parse(v[i], `${path}[${i}]`);
      return v as T[];
    },
  };
}

export function recordOf<T>(item: Schema<T>): Schema<Record<string, T>> {
  return {
    describe: `an object of ${item.describe}`,
    parse(v, path = "") {
      if (typeof v !== "object" || v === null || Array.isArray(v)) fail(path, "an object", v);
      for (const [k, x] of Object.entries(v)) item.parse(x, path ? `${path}.${k}` : k);
      return v as Record<string, T>;
    },
  };
}

type Shape = Record<string, Schema<unknown>>;
type FromShape<R extends Shape, O extends Shape> = { [K in keyof R]: Infer<R[K]> } & {
  [K in keyof O]?: Infer<O[K]>;
};

/** An object with `required` keys and `optional` ones (absent or undefined). */
export function object<R extends Shape, O extends Shape = Record<never, never>>(
  required: R,
  optional?: O,
): Schema<FromShape<R, O>> {
  const names = Object.keys(required);
  return {
    describe: `an object with ${names.join(", ")}`,
    parse(v, path = "") {
      if (typeof v !== "object" || v === null || Array.isArray(v)) fail(path, "an object", v);
      const o = v as Record<string, unknown>;
      const at = (k: string) => (path ? `${path}.${k}` : k);
      for (const [k, s] of Object.entries(required)) {
        if (!(k in o)) throw new PayloadError(`${at(k)}: missing (expected ${s.describe})`);
        s.parse(o[k], at(k));
      }
      for (const [k, s] of Object.entries(optional ?? {})) {
        if (o[k] !== undefined) s.parse(o[k], at(k));
      }
      return v as FromShape<R, O>;
    },
  };
}

// ---- where a message came from -------------------------------------------------------------------

/** Headers JetStream puts on what it sends: direct-get answers and republished messages. */
export const JETSTREAM_HEADERS = ["Nats-Stream", "Nats-Subject", "Nats-Sequence"] as const;

/**
 * Why `msg` cannot be a client's publish on `subject` (a literal subject or a predicate), or
 * undefined when it can. A push consumer's delivery keeps the subject it was stored under and
 * has a `$JS.` reply; a direct get sent with someone else's subject as reply-to arrives on that
 * subject but carries JetStream's headers. Either way the bytes are whatever a peel stored.
 */
export function relayedReason(msg: Msg, subject: string | ((s: string) => boolean)): string | undefined {
  const ok = typeof subject === "string" ? msg.subject === subject : subject(msg.subject);
  if (!ok) return `message stored under ${msg.subject} was relayed here (a consumer's deliver subject)`;
  if (msg.reply?.startsWith("$JS.")) return "message was delivered by a JetStream consumer";
  return jetStreamAnswerReason(msg.headers);
}

/**
 * Why headers show a JetStream answer (a direct get sent with someone else's subject as
 * reply-to), or undefined. A stream that captured such a message keeps the headers, so readers
 * of stored messages (events) check them too.
 */
export function jetStreamAnswerReason(h: MsgHdrs | undefined): string | undefined {
  if (!h) return undefined;
  for (const name of JETSTREAM_HEADERS) {
    if (h.has(name)) return `message is a JetStream answer (${name}: ${h.get(name)}) sent here as a reply`;
  }
  return undefined;
}
