/**
 * The master's nodegroups (`N@name`) travel to the peels inside the published states tree, as
 * `.zester-nodegroups.json` at its root: a peel evaluates its own top file and needs them there,
 * offline too, and at the revision the top file was published with. The master never publishes a
 * file of the operator's whose name starts with ".", so this name cannot collide with one.
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { isENOENT } from "../util/files.js";
import { type CompileTracker, stampOf } from "./sls.js";

export const NODEGROUPS_FILE = ".zester-nodegroups.json";

/** The file's bytes: name → target expression, names sorted so equal groups publish equal bytes. */
export function nodegroupsFileBytes(groups: Readonly<Record<string, string>>): Uint8Array {
  const sorted = Object.fromEntries(
    Object.keys(groups)
      .sort()
      .map((k) => [k, groups[k]!]),
  );
  return new TextEncoder().encode(`${JSON.stringify({ v: 1, nodegroups: sorted }, null, 2)}\n`);
}

/** The nodegroups published with the tree in `statesDir`; undefined when it has none. */
export async function readNodegroups(
  statesDir: string,
  track?: CompileTracker,
): Promise<Record<string, string> | undefined> {
  const path = join(statesDir, NODEGROUPS_FILE);
  let text: string;
  try {
    const st = await stat(path);
    text = await readFile(path, "utf8");
    track?.files.set(NODEGROUPS_FILE, stampOf(st));
  } catch (err) {
    if (!isENOENT(err)) throw err;
    track?.files.set(NODEGROUPS_FILE, null);
    return undefined;
  }
  const doc = JSON.parse(text) as { nodegroups?: unknown };
  const groups = doc.nodegroups;
  if (groups === null || typeof groups !== "object" || Array.isArray(groups))
    throw new Error(`${path}: no nodegroups mapping`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(groups)) {
    if (typeof v !== "string")
      throw new Error(`${path}: nodegroup ${JSON.stringify(k)} is not a target expression`);
    out[k] = v;
  }
  return out;
}
