import { access } from "node:fs/promises";
import { isENOENT } from "../util/files.js";

// Facts read many small files; only ENOENT means absent (other errors fail the collector).
export { readTextOrUndefined } from "../util/files.js";

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
