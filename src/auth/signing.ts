/**
 * Signed commands. Subject permissions do not prove who published a message (a peel can make the
 * server deliver onto another subject through a consumer's deliver subject or a reply-to), so every
 * command carries a master's Ed25519 nkey signature over all of its fields. Peels verify it against
 * the master keys they trust and reject altered, misaddressed and stale commands; replays are
 * caught by the peel's persisted job-id store.
 */
import { fromSeed, type KeyPair } from "@nats-io/nkeys";
import {
  arrayOf,
  bool,
  json,
  MAX_DEPTH,
  nonNegInt,
  num,
  object,
  PayloadError,
  recordOf,
  type Schema,
  str,
} from "../bus/validate.js";
import type { Command } from "../jobs/wire.js";
import { errText } from "../util/errors.js";
import { ed25519Sign, ed25519Verify, publicNkeyOf } from "./ed25519.js";

/** How far a command's timestamp may be from the peel's clock. */
export const DEFAULT_MAX_SKEW_MS = 120_000;

/** The longest a queued command (`--queue`) is kept; the peel's job-id store keeps ids as long. */
export const MAX_QUEUE_TTL_MS = 24 * 3600 * 1000;

/**
 * JSON with object keys sorted at every level, so signer and verifier hash the same bytes.
 * Refuses (PayloadError) to nest deeper than MAX_DEPTH: it runs on unverified input.
 */
export function canonicalJson(value: unknown, depth = 0): string {
  if (value === null || typeof value !== "object") {
    if (value === undefined) return "null";
    return JSON.stringify(value);
  }
  if (depth >= MAX_DEPTH) throw new PayloadError(`value nests deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(value)) return `[${value.map((x) => canonicalJson(x, depth + 1)).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k], depth + 1)}`).join(",")}}`;
}

/** What a command must look like before its signature is even computed. */
export const commandSchema: Schema<Command> = object(
  {
    jid: str,
    fun: str,
    args: arrayOf(json),
    kwargs: recordOf(json),
    test: bool,
    peel: str,
    ts: num,
    timeout_s: num,
    master: str,
    sig: str,
  },
  { states_rev: nonNegInt, event_depth: nonNegInt, queue_until: nonNegInt },
);

const enc = new TextEncoder();

function signedBytes(cmd: Omit<Command, "sig">): Uint8Array {
  const { jid, fun, args, kwargs, test, peel, ts, timeout_s, master, states_rev, event_depth, queue_until } =
    cmd;
  // Absent fields are left out of the canonical form, so commands without states_rev,
  // event_depth or queue_until sign the same bytes as before they existed.
  return enc.encode(
    canonicalJson({
      jid,
      fun,
      args,
      kwargs,
      test,
      peel,
      ts,
      timeout_s,
      master,
      states_rev,
      event_depth,
      queue_until,
    }),
  );
}

export type UnsignedCommand = Omit<Command, "sig" | "master">;

export function signCommand(signer: KeyPair, cmd: UnsignedCommand): Command {
  const withKey = { ...cmd, master: publicNkeyOf(signer) };
  const sig = Buffer.from(ed25519Sign(signer, signedBytes(withKey))).toString("base64url");
  return { ...withKey, sig };
}

export type Verdict = { ok: true } | { ok: false; reason: string };

export interface VerifyOptions {
  /** Public nkeys of the masters this peel trusts. */
  trusted: ReadonlySet<string>;
  /** The peel verifying: a command addressed to another peel is refused. */
  peel: string;
  now?: number;
  maxSkewMs?: number;
}

/**
 * Checks a decoded payload: shape, trusted signer, signature, address and age. Never throws:
 * every way the input can be wrong is a refusal with a reason.
 */
export function verifyCommand(input: unknown, opts: VerifyOptions): Verdict {
  const maybe = (typeof input === "object" && input !== null ? input : {}) as Partial<
    Record<keyof Command, unknown>
  >;
  if (typeof maybe.sig !== "string" || maybe.sig === "") return { ok: false, reason: "unsigned command" };
  if (typeof maybe.master !== "string" || !opts.trusted.has(maybe.master)) {
    return { ok: false, reason: `signed by an untrusted key ${String(maybe.master).slice(0, 80)}` };
  }
  let cmd: Command;
  let bytes: Uint8Array;
  try {
    cmd = commandSchema.parse(input);
    bytes = signedBytes(cmd);
  } catch (err) {
    return { ok: false, reason: `malformed command: ${errText(err)}` };
  }
  const valid = ed25519Verify(cmd.master, bytes, Buffer.from(cmd.sig, "base64url"));
  if (!valid) return { ok: false, reason: "bad signature (command altered or forged)" };
  if (cmd.peel !== opts.peel)
    return { ok: false, reason: `command is addressed to ${String(cmd.peel)}, not ${opts.peel}` };
  const now = opts.now ?? Date.now();
  const maxSkew = opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  if (cmd.queue_until !== undefined) {
    // A command kept for an offline peel: valid from its signing (within the skew) until its
    // queue TTL ends. A replay inside that window is caught by the peel's job-id store, whose
    // retention (a day) is at least the longest TTL.
    if (cmd.queue_until - cmd.ts > MAX_QUEUE_TTL_MS)
      return {
        ok: false,
        reason: `queued command kept longer than the ${MAX_QUEUE_TTL_MS / 3_600_000} h maximum`,
      };
    if (cmd.ts - now > maxSkew)
      return {
        ok: false,
        reason: `stale command (signed ${Math.round((cmd.ts - now) / 1000)} s in this peel's future)`,
      };
    if (now - cmd.queue_until > maxSkew)
      return {
        ok: false,
        reason: `expired queued command (its queue TTL ended ${Math.round((now - cmd.queue_until) / 1000)} s ago)`,
      };
    return { ok: true };
  }
  const skew = Math.abs(now - cmd.ts);
  if (skew > maxSkew) {
    return {
      ok: false,
      reason: `stale command (signed ${Math.round(skew / 1000)} s away from this peel's clock)`,
    };
  }
  return { ok: true };
}

/** `fun` of the signed notice on `zester.job.<jid>.cancel.<peel>`. */
export const CANCEL_FUNCTION = "job.cancel";

/**
 * A cancel is a command too: unsigned, anyone who can make the server deliver onto a peel's
 * cancel subject could stop its jobs.
 */
export function signCancel(signer: KeyPair, jid: string, peel: string, now = Date.now()): Command {
  return signCommand(signer, {
    jid,
    fun: CANCEL_FUNCTION,
    args: [],
    kwargs: {},
    test: false,
    peel,
    ts: now,
    timeout_s: 0,
  });
}

/** The nkey seed inside a `.creds` file: masters sign commands with their own user key. */
export function keyPairFromCreds(creds: string): KeyPair {
  const m = /-----BEGIN USER NKEY SEED-----\s*([A-Z0-9]+)\s*------END USER NKEY SEED------/.exec(creds);
  if (!m) throw new Error("creds file has no user nkey seed");
  return fromSeed(enc.encode(m[1]!));
}
