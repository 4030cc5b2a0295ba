/**
 * The peel's cache dir must take writes: job ids (replay protection), the state tree, the
 * settings snapshot and the outbox all live there. A full or read-only disk is found at start-up
 * and named in the error of every mutating command it stops, so the operator reads the reason in
 * the job's return instead of waiting out its timeout.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { errText } from "../util/errors.js";

const PROBE = ".write-probe";

export class CacheDirError extends Error {
  override name = "CacheDirError";
}

/**
 * Creates the dir (0700) and `subdirs`, then writes and removes a small file; throws
 * CacheDirError naming the dir and the system's reason.
 */
export async function prepareCacheDir(dir: string, subdirs: readonly string[] = []): Promise<void> {
  const path = join(dir, PROBE);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // Not empty: on a full disk an empty file can still be created. Before the subdirs: a
    // recursive mkdir on a read-only file system reports ENOENT, which names no reason.
    await writeFile(path, "zester cache write probe\n", { mode: 0o600 });
    await rm(path, { force: true });
    for (const sub of subdirs) await mkdir(join(dir, sub), { recursive: true });
  } catch (err) {
    throw new CacheDirError(cacheDirMessage(dir, err));
  }
}

export function cacheDirMessage(dir: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  const what = code === "ENOSPC" ? "is full" : code === "EROFS" ? "is read-only" : "cannot be written";
  return `the peel's cache dir ${dir} ${what} (${errText(err)})`;
}
