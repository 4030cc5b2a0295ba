import { access, readFile } from "node:fs/promises";
import { isENOENT } from "../util/files.js";

/** Reads a text file; undefined only when it does not exist (other errors fail the collector). */
export async function readTextIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if (isENOENT(err)) return undefined;
    throw err;
  }
}

/** Whether a path exists. Used for cheap presence probes (binaries, marker files). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch (err) {
    if (isENOENT(err)) return false;
    // Present but not accessible still means present.
    return true;
  }
}
