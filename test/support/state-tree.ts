/**
 * Publishes a state tree into `state-files` the way a master does (blobs, then the manifest,
 * then the revision last), for peel tests that run without a master. `tamper` breaks one part
 * on purpose, for the tests that prove a peel refuses it.
 */
import { createHash } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { openKv } from "../../src/bus/bootstrap.js";
import { encode } from "../../src/bus/codec.js";
import type { StateManifest, StateRevision } from "../../src/jobs/wire.js";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const bytes = (s: string) => new TextEncoder().encode(s);

export async function publishTestTree(
  nc: NatsConnection,
  rev: number,
  files: Record<string, string>,
  tamper: { blobFor?: string; manifestSha?: string } = {},
): Promise<void> {
  const kv = await openKv(nc, "state-files");
  const manifest: StateManifest = { rev, files: {}, published_at: new Date().toISOString(), master: "test" };
  for (const [path, text] of Object.entries(files)) {
    const data = bytes(text);
    const h = sha(data);
    manifest.files[path] = { sha256: h, size: data.length, mode: 0o644 };
    await kv.put(`blob.${h}`, tamper.blobFor === path ? bytes(`${text}\n# tampered`) : data);
  }
  const m = encode(manifest);
  await kv.put("manifest", m);
  const revision: StateRevision = { rev, manifest_sha256: tamper.manifestSha ?? sha(m) };
  await kv.put("revision", encode(revision));
}
