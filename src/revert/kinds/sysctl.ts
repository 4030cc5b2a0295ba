/** Kernel parameters: the live value under /proc/sys (the config file is a `file` resource). */
import { readFile, writeFile } from "node:fs/promises";
import { unchanged } from "../../modules/support.js";
import { procPath } from "../../modules/sysctl.js";
import type { Plan } from "../../modules/types.js";
import type { Observed } from "../record.js";
import type { RevertKind } from "./kind.js";

async function live(name: string): Promise<string> {
  return (await readFile(procPath(name), "utf8")).trim().split(/\s+/).join(" ");
}

async function restoreSysctl(name: string, want: string): Promise<Plan> {
  const now = await live(name);
  if (now === want) return unchanged(`${name} is ${want}, as before the run`);
  return {
    changes: { name, value: { old: now, new: want } },
    comment: `${name} set back to ${want}`,
    apply: async () => {
      await writeFile(procPath(name), want);
      const got = await live(name);
      if (got !== want)
        return { result: false, comment: `The kernel did not accept ${name} = ${want} (it reads ${got})` };
      return undefined;
    },
  };
}

export const sysctlKind: RevertKind = {
  observe: async (ref) => ({ value: await live(ref.key) }),
  capture: async (ref) => ({ state: { value: await live(ref.key) } }),
  restore: (ref, pre) => restoreSysctl(ref.key, String((pre.state as { value: Observed }).value)),
};
