/**
 * Last-known-good settings. A peel that cannot reach the bus (or whose new settings fail to
 * resolve) keeps enforcing with the last settings that did resolve. The snapshot holds opened
 * secrets, so it is 0600 and written atomically (a crash never leaves half a file).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { errText } from "../util/errors.js";
import { isENOENT, writeFileAtomic } from "../util/files.js";
import { NoSnapshotError } from "./errors.js";
import { isPlainMap } from "./merge.js";

export const SNAPSHOT_FILE = "settings-snapshot.json";

export interface SettingsSnapshot {
  settings: Record<string, unknown>;
  /** ISO 8601 time the snapshot was written. */
  savedAt: string;
}

export function snapshotPath(dir: string): string {
  return join(dir, SNAPSHOT_FILE);
}

export async function saveSnapshot(
  dir: string,
  settings: Record<string, unknown>,
  now = new Date(),
): Promise<string> {
  const path = snapshotPath(dir);
  const body = JSON.stringify({ v: 1, saved_at: now.toISOString(), settings });
  await writeFileAtomic(path, `${body}\n`, { mode: 0o600 });
  return path;
}

/** Throws NoSnapshotError when the peel never resolved its settings, Error when the file is damaged. */
export async function loadSnapshot(dir: string): Promise<SettingsSnapshot> {
  const path = snapshotPath(dir);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if (isENOENT(err)) {
      throw new NoSnapshotError(
        `no last-known-good settings (${path} does not exist): this peel has never resolved its settings; ` +
          "it needs one successful resolution while connected to a master",
      );
    }
    throw err;
  }
  let data: { v?: unknown; saved_at?: unknown; settings?: unknown };
  try {
    data = JSON.parse(text) as typeof data;
  } catch (err) {
    throw new Error(`settings snapshot ${path} is damaged: ${errText(err)}`);
  }
  if (data?.v !== 1 || !isPlainMap(data.settings) || typeof data.saved_at !== "string") {
    throw new Error(`settings snapshot ${path} has an unknown format`);
  }
  return { settings: data.settings, savedAt: data.saved_at };
}
