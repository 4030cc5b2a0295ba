/**
 * `disk` (Salt's `diskusage`): mount points over a usage threshold, `{"/": "90%", "/var": 80}`.
 * An event every interval while a mount is over its threshold. Data: `{mount, usage_percent,
 * threshold}`. Usage is df's: used / (used + available to unprivileged users).
 */
import { statfs } from "node:fs/promises";
import { type BeaconData, type BeaconModule, percent } from "./types.js";

export async function usagePercent(mount: string): Promise<number> {
  const s = await statfs(mount);
  const used = s.blocks - s.bfree;
  const total = used + s.bavail;
  return total === 0 ? 0 : Math.ceil((used / total) * 1000) / 10;
}

export const beacon: BeaconModule = {
  doc: "Mount points over a usage threshold: `{/: 90%}`; data {mount, usage_percent, threshold}.",
  // Mount points are the keys: any absolute path.
  keys: [],
  create(options) {
    const mounts = Object.entries(options).map(([mount, t]) => {
      if (!mount.startsWith("/"))
        throw new Error(`unknown option "${mount}" (mount points are absolute paths)`);
      const threshold = percent(t);
      if (threshold === undefined)
        throw new Error(`${mount}: threshold ${JSON.stringify(t)} is not a percentage (90%)`);
      return { mount, threshold };
    });
    if (mounts.length === 0) throw new Error("name at least one mount point and its threshold ({/: 90%})");
    return {
      async poll() {
        const out: BeaconData[] = [];
        for (const m of mounts) {
          const usage = await usagePercent(m.mount);
          if (usage >= m.threshold)
            out.push({ mount: m.mount, usage_percent: usage, threshold: m.threshold });
        }
        return out;
      },
    };
  },
};
