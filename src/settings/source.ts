/**
 * Where settings files come from. The master reads the operator's tree from disk, the peel reads
 * its synced cache, tests use temp dirs or maps: resolution only ever asks for one relative path.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { isENOENT } from "../util/files.js";

/** Returns the text of a file relative to the settings root, or undefined when it does not exist. */
export type SettingsFileReader = (relPath: string) => Promise<string | undefined>;

/** A directory path, a reader function, or an in-memory map of relative path → text. */
export type SettingsFiles = string | SettingsFileReader | Readonly<Record<string, string>>;

export const DEFAULT_SETTINGS_DIR = "/srv/zester/settings";
/** A settings tree's top file: Salt's name or Zester's (both at once is an error). */
export const TOP_FILES = ["top.sls", "top.zy"] as const;

/** Relative, forward-slash, no `..`: anything else could read outside the settings root. */
export function assertRelPath(relPath: string): string {
  const parts = relPath.split("/");
  if (
    relPath === "" ||
    isAbsolute(relPath) ||
    relPath.includes("\\") ||
    relPath.includes("\0") ||
    parts.some((p) => p === "" || p === "." || p === "..")
  ) {
    throw new Error(`invalid settings file path ${JSON.stringify(relPath)}`);
  }
  return relPath;
}

export function dirReader(dir: string): SettingsFileReader {
  const root = resolve(dir);
  return async (relPath) => {
    const full = join(root, assertRelPath(relPath));
    if (relative(root, full).startsWith(`..${sep}`)) throw new Error(`${relPath} is outside ${root}`);
    try {
      return await readFile(full, "utf8");
    } catch (err) {
      // A directory where a file was expected is "no such file" for ref lookup (common/ vs common.zy).
      if (isENOENT(err) || (err as NodeJS.ErrnoException).code === "EISDIR") return undefined;
      throw err;
    }
  };
}

export function toReader(files: SettingsFiles): SettingsFileReader {
  if (typeof files === "string") return dirReader(files);
  if (typeof files === "function") return files;
  const map = files;
  return async (relPath) => (Object.hasOwn(map, assertRelPath(relPath)) ? map[relPath] : undefined);
}

/**
 * Every regular file of a settings tree as relative path → text (hidden files and directories
 * skipped), sorted by path: what the master sanitizes and publishes.
 */
export async function readSettingsTree(dir: string): Promise<Record<string, string>> {
  const root = resolve(dir);
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    const entries = await readdir(rel === "" ? root : join(root, rel), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith(".")) continue;
      const child = rel === "" ? e.name : `${rel}/${e.name}`;
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        const st = await stat(join(root, child)).catch((err: unknown) => {
          // Not ENOENT to the caller: that would read as "the settings dir is missing" and
          // publish an empty tree.
          if (isENOENT(err)) throw new Error(`${join(root, child)} is a symlink to a missing file`);
          throw err;
        });
        if (st.isDirectory()) {
          // A linked directory could loop back into the tree; files may link, directories not.
          throw new Error(
            `${join(root, child)} is a symlink to a directory: settings trees may link files only`,
          );
        }
        isDir = false;
        isFile = st.isFile();
      }
      if (isDir) await walk(child);
      else if (isFile) out[child] = await readFile(join(root, child), "utf8");
    }
  };
  await walk("");
  return out;
}
