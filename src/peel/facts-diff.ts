/**
 * Deciding whether facts changed. Some facts move on every collection (free memory, disk
 * usage); publishing on those would write the `facts` bucket every minute for every peel and
 * push real changes out of its short history, so they are left out of the comparison (but still
 * published along with a real change).
 */
import { canonicalJson } from "../auth/signing.js";
import type { Facts } from "../facts/index.js";

/** Fields whose value is expected to drift between two collections on an unchanged machine. */
const VOLATILE_MEMORY = ["available", "swap_free"];
const VOLATILE_MOUNT = ["used", "available"];

function without(obj: unknown, keys: readonly string[]): unknown {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) return obj;
  const out: Record<string, unknown> = { ...(obj as Record<string, unknown>) };
  for (const k of keys) delete out[k];
  return out;
}

/** A canonical string of the facts that identify the machine's configuration. */
export function stableFactsKey(facts: Facts): string {
  const f: Record<string, unknown> = { ...facts };
  delete f.v;
  f.memory = without(f.memory, VOLATILE_MEMORY);
  const disk = f.disk as { mounts?: unknown } | undefined;
  if (disk && typeof disk === "object" && Array.isArray(disk.mounts)) {
    f.disk = { ...disk, mounts: disk.mounts.map((m) => without(m, VOLATILE_MOUNT)) };
  }
  return canonicalJson(f);
}
