import { randomBytes } from "node:crypto";
import { chmod, lstat, mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** True when the error is "no such file or directory" — the only error that means absent. */
export function isENOENT(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === "ENOENT";
}

/** stat() that returns undefined for ENOENT and throws for anything else. */
export async function statOrUndefined(path: string) {
  try {
    return await stat(path);
  } catch (err) {
    if (isENOENT(err)) return undefined;
    throw err;
  }
}

/** lstat() that returns undefined for ENOENT and throws for anything else. */
export async function lstatOrUndefined(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if (isENOENT(err)) return undefined;
    throw err;
  }
}

/** File text, or undefined when the file does not exist (any other error propagates). */
export async function readTextOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if (isENOENT(err)) return undefined;
    throw err;
  }
}

/**
 * A file that has to be there is not, said with what to do about it. It keeps ENOENT as its
 * code, so isENOENT() answers for it as for the fs error it replaces.
 */
export class MissingFileError extends Error {
  override name = "MissingFileError";
  readonly code = "ENOENT";
  constructor(
    readonly path: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** An exclusive write found the file already there (code EEXIST, as fs says it). */
export class FileExistsError extends Error {
  override name = "FileExistsError";
  readonly code = "EEXIST";
  constructor(readonly path: string) {
    super(`${path} already exists (use --force to overwrite)`);
  }
}

export interface WriteOptions {
  mode?: number;
  /** Refuse to replace an existing file. */
  exclusive?: boolean;
}

/**
 * Writes a file atomically: a temp file in the same directory, fsync, then rename, so a reader
 * never sees half a file and a crash never leaves one.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, opts: WriteOptions = {}) {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  if (opts.exclusive && (await statOrUndefined(path))) {
    throw new FileExistsError(path);
  }
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const fh = await open(tmp, "wx", opts.mode ?? 0o644);
  try {
    await fh.writeFile(data);
    if (opts.mode !== undefined) await fh.chmod(opts.mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  if (opts.mode !== undefined) await chmod(path, opts.mode);
}

/** Secrets (seeds, creds, keys) are always 0600 and never silently replaced. */
export async function writeSecretFile(path: string, data: string, force = false) {
  await writeFileAtomic(path, data, { mode: 0o600, exclusive: !force });
}
