/**
 * The peel's copy of the state tree: `<root>/rev-<n>/` directories and a `current` symlink.
 * A revision is built next to the live one and switched in with one rename, so a run never sees
 * half a tree, and every byte is checked against the manifest's sha256 before it is trusted: the
 * bus is shared, the cache is what the peel executes.
 */
import { randomBytes } from "node:crypto";
import {
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  rename,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { dirname, join } from "node:path";
import {
  checkRevision,
  FileTreeIntegrityError,
  type FileTreeSource,
  fetchTreeFiles,
  isSafeTreePath,
  readManifest,
} from "../bus/file-tree.js";
import type { StateManifest, StateRevision } from "../jobs/wire.js";
import { isENOENT, writeFileAtomic } from "../util/files.js";

/** Reads one key of the `state-files` bucket; undefined when absent or deleted. */
export type StateFileSource = FileTreeSource;

export class StateSyncError extends FileTreeIntegrityError {
  override name = "StateSyncError";
}

export interface SyncResult {
  rev: number;
  /** False when the revision was already current. */
  changed: boolean;
  fetched: number;
  reused: number;
}

/** A manifest path must stay inside the tree: relative, posix, no `.`/`..`/empty segments. */
export function assertSafeRelPath(path: string): string {
  if (!isSafeTreePath(path))
    throw new StateSyncError(`manifest lists an unsafe path ${JSON.stringify(path)}`);
  return path;
}

function revDirName(rev: number): string {
  return `rev-${rev}`;
}

export class StateTreeCache {
  readonly current: string;

  /** @param root `<cacheDir>/states` */
  constructor(readonly root: string) {
    this.current = join(root, "current");
  }

  /** The revision `current` points at, or undefined when nothing was synced yet. */
  async currentRev(): Promise<number | undefined> {
    let target: string;
    try {
      target = await readlink(this.current);
    } catch (err) {
      if (isENOENT(err)) return undefined;
      throw err;
    }
    const m = /^rev-(\d+)$/.exec(target);
    return m ? Number(m[1]) : undefined;
  }

  /**
   * The real directory of the current revision. Runs use this path, not the symlink, so a
   * switch in the middle of a run cannot mix two revisions in one run.
   */
  async currentDir(): Promise<string | undefined> {
    try {
      return await realpath(this.current);
    } catch (err) {
      if (isENOENT(err)) return undefined;
      throw err;
    }
  }

  /**
   * Brings the cache to `revision`. Throws StateSyncError (leaving `current` untouched) when the
   * manifest or any blob does not match its hash, or a blob is missing.
   */
  async sync(source: StateFileSource, revision: StateRevision): Promise<SyncResult> {
    try {
      return await this.syncVerified(source, revision);
    } catch (err) {
      if (err instanceof FileTreeIntegrityError && !(err instanceof StateSyncError)) {
        throw new StateSyncError(err.message);
      }
      throw err;
    }
  }

  private async syncVerified(source: StateFileSource, wanted: StateRevision): Promise<SyncResult> {
    const revision = checkRevision(wanted);
    const before = await this.currentRev();
    if (before === revision.rev) return { rev: revision.rev, changed: false, fetched: 0, reused: 0 };
    const { manifest } = await readManifest<StateManifest["files"][string]>(source, revision);

    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const tmp = join(this.root, `${revDirName(revision.rev)}.tmp`);
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { mode: 0o755 });
    const reusable = await this.reusableBlobs(before);
    let counts: { fetched: number; reused: number };
    try {
      counts = await fetchTreeFiles(
        source,
        manifest,
        async (path, f, data) => {
          const dest = join(tmp, path);
          await mkdir(dirname(dest), { recursive: true, mode: 0o755 });
          await writeFile(dest, data, { mode: (typeof f.mode === "number" ? f.mode : 0o644) & 0o777 });
        },
        { reuse: (sha) => this.readReusable(reusable.get(sha)) },
      );
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }

    const final = join(this.root, revDirName(revision.rev));
    await rm(final, { recursive: true, force: true });
    await rename(tmp, final);
    await writeFileAtomic(join(this.root, `${revDirName(revision.rev)}.json`), JSON.stringify(manifest));
    const link = join(this.root, `.current-${randomBytes(6).toString("hex")}`);
    await symlink(revDirName(revision.rev), link);
    await rename(link, this.current);
    await this.removeOld(new Set([revision.rev, ...(before === undefined ? [] : [before])]));
    return { rev: revision.rev, changed: true, ...counts };
  }

  /** sha256 → a file of the current revision with that content. */
  private async reusableBlobs(rev: number | undefined): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (rev === undefined) return out;
    let manifest: StateManifest;
    try {
      manifest = JSON.parse(
        await readFile(join(this.root, `${revDirName(rev)}.json`), "utf8"),
      ) as StateManifest;
    } catch {
      return out;
    }
    for (const [path, f] of Object.entries(manifest.files ?? {})) {
      if (!out.has(f.sha256)) out.set(f.sha256, join(this.root, revDirName(rev), path));
    }
    return out;
  }

  /** A cached file's bytes (fetchTreeFiles checks them against the hash); undefined when unreadable. */
  private async readReusable(path: string | undefined): Promise<Uint8Array | undefined> {
    if (path === undefined) return undefined;
    try {
      return await readFile(path);
    } catch {
      return undefined;
    }
  }

  /**
   * Keeps the new revision and the one before it (a run that started on it may still read its
   * files); everything else, including leftovers of interrupted syncs, goes.
   */
  private async removeOld(keep: ReadonlySet<number>): Promise<void> {
    for (const name of await readdir(this.root)) {
      const m = /^rev-(\d+)(\.tmp|\.json)?$/.exec(name);
      const stale = (m && !(keep.has(Number(m[1])) && m[2] !== ".tmp")) || name.startsWith(".current-");
      if (stale) await rm(join(this.root, name), { recursive: true, force: true });
    }
  }
}
