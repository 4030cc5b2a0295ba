/** Beacon modules shipped with Zester: name → lazy loader (one file each in this folder). */
import type { BeaconModule } from "./types.js";

const LOADERS: Readonly<Record<string, () => Promise<{ beacon: BeaconModule }>>> = {
  disk: () => import("./disk.js"),
  inotify: () => import("./inotify.js"),
  load: () => import("./load.js"),
  memory: () => import("./memory.js"),
  pkg: () => import("./pkg.js"),
  service: () => import("./service.js"),
};

export const BEACON_MODULES: readonly string[] = Object.keys(LOADERS);

/** Salt's names for the same beacons. */
export const BEACON_ALIASES: Readonly<Record<string, string>> = {
  diskusage: "disk",
  memusage: "memory",
  file: "inotify",
};

export async function loadBeacon(name: string): Promise<BeaconModule> {
  const l = LOADERS[name];
  if (!l) throw new Error(`unknown beacon module "${name}"`);
  return (await l()).beacon;
}
