/**
 * The `disk` family: disk usage as an execution function (`disk.usage`).
 */
import { run } from "../util/exec.js";
import { failure, optString } from "./support.js";
import type { ModuleFamily } from "./types.js";

export interface DiskUsage {
  filesystem: string;
  "1K-blocks": number;
  used: number;
  available: number;
  capacity: string;
  mountpoint: string;
}

/** Parses POSIX `df -P -k` output, keyed by mount point (Salt's shape). */
export function parseDf(text: string): Record<string, DiskUsage> {
  const out: Record<string, DiskUsage> = {};
  for (const line of text.split("\n").slice(1)) {
    const m = /^(.*?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+%|-)\s+(\/.*)$/.exec(line);
    if (!m) continue;
    out[m[6]!] = {
      filesystem: m[1]!,
      "1K-blocks": Number(m[2]),
      used: Number(m[3]),
      available: Number(m[4]),
      capacity: m[5]!,
      mountpoint: m[6]!,
    };
  }
  return out;
}

export const family: ModuleFamily = {
  name: "disk",
  doc: "Disk information.",
  states: {},
  exec: {
    usage: {
      doc: "Usage of every mounted filesystem (or the one holding `path`): {mountpoint: {filesystem, 1K-blocks, used, available, capacity, mountpoint}}.",
      params: { path: { type: "string", doc: "Only the filesystem that holds this path." } },
      positional: ["path"],
      readOnly: true,
      run: async (params) => {
        const path = optString(params.path);
        const r = await run(["df", "-P", "-k", ...(path ? ["--", path] : [])], { env: { LC_ALL: "C" } });
        // df exits 1 when some filesystem is unreadable but still prints the others.
        const parsed = parseDf(r.stdout);
        if (r.retcode !== 0 && Object.keys(parsed).length === 0) throw new Error(failure("df", r));
        return parsed;
      },
    },
  },
};
