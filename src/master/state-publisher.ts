/**
 * Publishes the master's states directory to the `state-files` bucket through src/bus/file-tree.ts
 * (blobs, manifest, revision last; no-op when unchanged; an empty or missing directory never
 * replaces a populated tree, since a missing mount must not wipe the fleet's states).
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import {
  blobKey,
  FileTreeIntegrityError,
  type FileTreePublishResult,
  publishFileTree,
  readLiveTree,
  sha256Hex,
} from "../bus/file-tree.js";
import type { StateManifest, StateRevision } from "../jobs/wire.js";
import { NODEGROUPS_FILE, nodegroupsFileBytes } from "../state/nodegroups.js";

export { blobKey };

export type ManifestFiles = StateManifest["files"];

export type StatePublishResult = FileTreePublishResult;

interface ScannedFile {
  path: string;
  abs: string;
  sha256: string;
  size: number;
  mode: number;
}

/**
 * Every regular file under `dir` (symlinks followed), keyed by posix relative path. Names
 * starting with "." are skipped so VCS metadata (.git) is never shipped to the fleet. A missing
 * directory reads as undefined.
 */
export async function scanTree(dir: string): Promise<ScannedFile[] | undefined> {
  const out: ScannedFile[] = [];
  try {
    if (!(await stat(dir)).isDirectory()) return undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const walk = async (abs: string, rel: string): Promise<void> => {
    const entries = await readdir(abs, { withFileTypes: true });
    for (const ent of entries) {
      if (ent.name.startsWith(".")) continue;
      const childAbs = join(abs, ent.name);
      const childRel = rel === "" ? ent.name : `${rel}/${ent.name}`;
      const st = await stat(childAbs);
      if (st.isDirectory()) await walk(childAbs, childRel);
      else if (st.isFile()) {
        const data = await readFile(childAbs);
        out.push({
          path: childRel,
          abs: childAbs,
          sha256: sha256Hex(data),
          size: data.length,
          mode: st.mode & 0o7777,
        });
      }
    }
  };
  await walk(dir, "");
  out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return out;
}

export interface LiveStates {
  revision: StateRevision;
  manifest: StateManifest;
}

/** The published revision and its manifest, or undefined when none is (consistently) live. */
export async function readLiveStates(kv: KV): Promise<LiveStates | undefined> {
  try {
    const live = await readLiveTree<ManifestFiles[string]>(kv);
    return live && { revision: live.revision, manifest: live.manifest };
  } catch (err) {
    if (err instanceof FileTreeIntegrityError) return undefined;
    throw err;
  }
}

export class StatePublisher {
  private readonly nodegroupsFile: Uint8Array | undefined;

  constructor(
    private readonly kv: KV,
    private readonly statesDir: string,
    private readonly masterId: string,
    private readonly log: (msg: string) => void = () => {},
    nodegroups?: Readonly<Record<string, string>>,
  ) {
    this.nodegroupsFile =
      nodegroups && Object.keys(nodegroups).length > 0 ? nodegroupsFileBytes(nodegroups) : undefined;
  }

  async publish(): Promise<StatePublishResult> {
    const scanned = await scanTree(this.statesDir);
    const what = scanned === undefined ? "is missing" : "is empty";
    const files = (scanned ?? []).map((f) => ({ ...f, read: () => readFile(f.abs) as Promise<Uint8Array> }));
    // Only beside real files: an empty states dir must still read as empty (never wipe the fleet's tree).
    const groups = this.nodegroupsFile;
    if (groups && files.length > 0) {
      files.push({
        path: NODEGROUPS_FILE,
        abs: "",
        sha256: sha256Hex(groups),
        size: groups.length,
        mode: 0o644,
        read: async () => groups,
      });
      files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    }
    const r = await publishFileTree(this.kv, files, {
      master: this.masterId,
      emptyReason: `states dir ${what}`,
    });
    if (r.replacedDamaged !== undefined) {
      this.log(`warning: the published states revision was damaged (${r.replacedDamaged}); replaced it`);
    }
    if (r.published) this.log(`published states revision ${r.rev} (${r.files} files)`);
    else if (!scanned?.length && r.files > 0) {
      this.log(
        `warning: states dir ${this.statesDir} ${what}; keeping published revision ${r.rev} ` +
          `(${r.files} files) instead of wiping it`,
      );
    }
    return r;
  }
}
