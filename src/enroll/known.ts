/**
 * Whether a peel id already belongs to someone outside the enrollment records. Without this, a
 * new key enrolling as an id whose creds came from `zester peel creds` found no record to
 * conflict with, and an approval gave that identity to the new key.
 */
import { readFile } from "node:fs/promises";
import type { KV } from "@nats-io/kv";
import { peelCredsPath, peelPublicKeyPath } from "../auth/auth-dir.js";
import { credsUserKey } from "../auth/hierarchy.js";
import { isENOENT } from "../util/files.js";
import type { KnownIdentity } from "./protocol.js";

async function readOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if (isENOENT(err)) return undefined;
    throw err;
  }
}

/**
 * Creds issued in `authDir` (the public key recorded at issue, or the creds file itself), else
 * a facts key in the bucket (only that peel can write it), else undefined.
 */
export async function findKnownIdentity(
  authDir: string,
  facts: KV | undefined,
  peelId: string,
): Promise<KnownIdentity | undefined> {
  const pub = (await readOrUndefined(peelPublicKeyPath(authDir, peelId)))?.trim();
  if (pub) return { via: "creds", public_key: pub };
  const creds = await readOrUndefined(peelCredsPath(authDir, peelId));
  if (creds !== undefined) return { via: "creds", public_key: credsUserKey(creds) };
  if (facts && (await facts.get(peelId))?.operation === "PUT") return { via: "facts" };
  return undefined;
}
