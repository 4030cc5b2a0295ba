/**
 * The one event shape (DESIGN §3): `{v, id, tag, data, ts, origin, depth}` and the mapping
 * between an event's origin + slash tag and its subject. Identity comes from the subject only:
 * a payload whose origin or tag disagrees with the subject it arrived on is a spoof, never
 * trusted. Beacon events are the one irregular mapping: their tag names the peel again
 * (`beacon/<peel>/<name>`, Salt's habit) while their subject does not
 * (`zester.event.<peel>.beacon.<name>`).
 */
import { decode, PROTOCOL_VERSION, ProtocolError } from "../bus/codec.js";
import { isValidPeelId, ROOT } from "../bus/names.js";
import { JETSTREAM_HEADERS } from "../bus/validate.js";
import { isKsuid, newKsuid } from "../jobs/ksuid.js";

export const MASTER_ORIGIN = "_master";
export const ADMIN_ORIGIN = "_admin";

/** A peel id, or one of the two reserved origins (peel ids cannot start with `_`). */
export type EventOrigin = typeof MASTER_ORIGIN | typeof ADMIN_ORIGIN | (string & {});

export type EventData = Record<string, unknown>;

export interface ZesterEvent {
  v: number;
  /** KSUID: unique, time-ordered; the stream's dedup id and the reactor's job-id seed. */
  id: string;
  /** Slash form: `myco/deploy/finished`. */
  tag: string;
  data: EventData;
  /** ISO 8601, when the event was made. */
  ts: string;
  origin: EventOrigin;
  /** 0 for an event made by hand or by the system; a reaction's event has its cause's depth + 1. */
  depth: number;
}

export const MAX_TAG_LENGTH = 255;
const TAG_SEGMENT = /^[^\s.*>/]+$/;
const EVENT_PREFIX = `${ROOT}.event.`;
const ADMIN_SEND = `${ADMIN_ORIGIN}.send`;

/** Bad tags, origins and payloads; the message names what is wrong. */
export class EventError extends Error {
  override name = "EventError";
}

/** Why a tag is invalid, or undefined when it is fine. */
export function tagProblem(tag: unknown): string | undefined {
  if (typeof tag !== "string" || tag === "") return "an event tag is required";
  if (tag.length > MAX_TAG_LENGTH) return `event tag is longer than ${MAX_TAG_LENGTH} characters`;
  for (const seg of tag.split("/")) {
    if (!TAG_SEGMENT.test(seg)) {
      return (
        `invalid event tag ${JSON.stringify(tag)}: use segments separated by "/", none empty, ` +
        "without spaces, dots, * or >"
      );
    }
  }
  return undefined;
}

export function assertTag(tag: unknown): string {
  const p = tagProblem(tag);
  if (p !== undefined) throw new EventError(p);
  return tag as string;
}

export function isEventOrigin(origin: unknown): origin is EventOrigin {
  return (
    origin === MASTER_ORIGIN ||
    origin === ADMIN_ORIGIN ||
    (typeof origin === "string" && isValidPeelId(origin))
  );
}

function assertOrigin(origin: unknown): EventOrigin {
  if (!isEventOrigin(origin)) {
    throw new EventError(
      `invalid event origin ${JSON.stringify(origin)}: a peel id, "${MASTER_ORIGIN}" or "${ADMIN_ORIGIN}"`,
    );
  }
  return origin;
}

/** The subject an event of `origin` with `tag` travels on. */
export function eventSubject(origin: EventOrigin, tag: string): string {
  assertOrigin(origin);
  assertTag(tag);
  const dotted = tag.replaceAll("/", ".");
  if (origin === MASTER_ORIGIN) return `${EVENT_PREFIX}${MASTER_ORIGIN}.${dotted}`;
  if (origin === ADMIN_ORIGIN) return `${EVENT_PREFIX}${ADMIN_SEND}.${dotted}`;
  const segs = tag.split("/");
  if (segs[0] === "beacon") {
    if (segs.length < 3 || segs[1] !== origin) {
      throw new EventError(
        `tags under beacon/ are beacon/${origin}/<name> for peel ${origin} (got ${JSON.stringify(tag)})`,
      );
    }
    return `${EVENT_PREFIX}${origin}.beacon.${segs.slice(2).join(".")}`;
  }
  return `${EVENT_PREFIX}${origin}.${dotted}`;
}

/** Origin and tag that a subject carries; undefined for a subject outside the event space. */
export function parseEventSubject(subject: string): { origin: EventOrigin; tag: string } | undefined {
  if (!subject.startsWith(EVENT_PREFIX)) return undefined;
  const toks = subject.slice(EVENT_PREFIX.length).split(".");
  const [first, ...rest] = toks;
  if (first === undefined || rest.length === 0 || toks.some((t) => t === "")) return undefined;
  if (first === MASTER_ORIGIN) return { origin: MASTER_ORIGIN, tag: rest.join("/") };
  if (first === ADMIN_ORIGIN) {
    if (rest[0] !== "send" || rest.length < 2) return undefined;
    return { origin: ADMIN_ORIGIN, tag: rest.slice(1).join("/") };
  }
  if (!isValidPeelId(first)) return undefined;
  if (rest[0] === "beacon" && rest.length >= 2) {
    return { origin: first, tag: ["beacon", first, ...rest.slice(1)].join("/") };
  }
  return { origin: first, tag: rest.join("/") };
}

/** `<origin>/<tag>`: what reactor rules and `event watch` globs match. */
export function matchKey(ev: Pick<ZesterEvent, "origin" | "tag">): string {
  return `${ev.origin}/${ev.tag}`;
}

/** The peel an event is about: its origin for peel events, none for master and admin events. */
export function eventPeel(ev: Pick<ZesterEvent, "origin">): string | undefined {
  return ev.origin === MASTER_ORIGIN || ev.origin === ADMIN_ORIGIN ? undefined : ev.origin;
}

export interface NewEvent {
  origin: EventOrigin;
  tag: string;
  /** A mapping (checked at run time: a payload type such as JobDoneEvent fits as it is). */
  data?: object;
  depth?: number;
  /** Only for deterministic ids (a reaction's chained event); default a fresh KSUID. */
  id?: string;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** A complete, checked event. Throws EventError for a bad tag, origin, data or depth. */
export function makeEvent(e: NewEvent): ZesterEvent {
  const origin = assertOrigin(e.origin);
  const tag = assertTag(e.tag);
  eventSubject(origin, tag);
  const data: unknown = e.data ?? {};
  if (!isPlainObject(data)) throw new EventError("event data must be a mapping (key: value)");
  const depth = e.depth ?? 0;
  if (!Number.isInteger(depth) || depth < 0) throw new EventError(`event depth must be an integer >= 0`);
  const id = e.id ?? newKsuid();
  if (!isKsuid(id)) throw new EventError(`event id ${JSON.stringify(id)} is not a KSUID`);
  return { v: PROTOCOL_VERSION, id, tag, data, ts: new Date().toISOString(), origin, depth };
}

/** Refused by validateEvent; `spoof` marks payloads that claim another origin or tag. */
export class EventRejected extends Error {
  override name = "EventRejected";
  constructor(
    message: string,
    readonly spoof: boolean,
  ) {
    super(message);
  }
}

/**
 * Checks a decoded payload received on `subject` (codec.decode has checked JSON and `v`): every
 * field's type, and that origin and tag agree with the subject. Throws EventRejected.
 */
export function validateEvent(subject: string, payload: Record<string, unknown>): ZesterEvent {
  const where = parseEventSubject(subject);
  if (!where) throw new EventRejected(`${subject} is not an event subject`, false);
  const { id, tag, data, ts, origin, depth, v } = payload;
  if (typeof v !== "number") throw new EventRejected("event has no protocol version", false);
  if (!isKsuid(id)) throw new EventRejected(`event id ${JSON.stringify(id)} is not a KSUID`, false);
  const tp = tagProblem(tag);
  if (tp !== undefined) throw new EventRejected(tp, false);
  if (!isPlainObject(data)) throw new EventRejected("event data must be a mapping", false);
  if (typeof ts !== "string" || Number.isNaN(Date.parse(ts))) {
    throw new EventRejected("event ts must be an ISO 8601 time", false);
  }
  if (typeof depth !== "number" || !Number.isInteger(depth) || depth < 0) {
    throw new EventRejected("event depth must be an integer >= 0", false);
  }
  if (origin !== where.origin || tag !== where.tag) {
    throw new EventRejected(
      `event claims ${JSON.stringify(`${String(origin)}/${String(tag)}`)} but arrived on ${subject} ` +
        `(${where.origin}/${where.tag}): dropped as spoofed`,
      true,
    );
  }
  return { v, id, tag, data, ts, origin: where.origin, depth };
}

/** The headers of a received message, as far as relay detection needs them. */
export interface HeaderView {
  has(name: string): boolean;
  get(name: string): string;
}

/**
 * decode + validateEvent for raw message bytes. With the message's headers, an answer that
 * JetStream sent onto an event subject (a direct get whose reply-to a peel pointed there: its
 * bytes are whatever the peel stored in its own KV key) is refused as spoofed.
 */
export function parseEvent(subject: string, bytes: Uint8Array, headers?: HeaderView): ZesterEvent {
  for (const name of JETSTREAM_HEADERS) {
    if (headers?.has(name)) {
      throw new EventRejected(
        `message on ${subject} is a JetStream answer (${name}: ${headers.get(name)}) relayed onto an event subject: dropped as spoofed`,
        true,
      );
    }
  }
  let payload: Record<string, unknown>;
  try {
    payload = decode(bytes);
  } catch (err) {
    if (err instanceof ProtocolError) throw new EventRejected(err.message, false);
    throw err;
  }
  return validateEvent(subject, payload);
}
