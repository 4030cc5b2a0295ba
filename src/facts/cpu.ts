import * as nodeOs from "node:os";
import { readTextOrUndefined } from "./read.js";

/** The first "key : value" line for any of the keys in /proc/cpuinfo text. */
function cpuinfoField(text: string, keys: readonly string[]): string | undefined {
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    if (keys.includes(line.slice(0, colon).trim())) return line.slice(colon + 1).trim();
  }
  return undefined;
}

/** CPU count, model and feature flags. */
export async function collectCpu(): Promise<Record<string, unknown>> {
  const cpus = nodeOs.cpus();
  const cpuinfo = (await readTextOrUndefined("/proc/cpuinfo")) ?? "";
  // x86 says "flags"; ARM says "Features".
  const flagText = cpuinfoField(cpuinfo, ["flags", "Features"]);
  const flags = flagText ? flagText.split(/\s+/).filter(Boolean) : [];
  // ARM kernels often leave os.cpus()[].model empty; fall back to what cpuinfo offers.
  const model =
    cpus[0]?.model?.trim() || cpuinfoField(cpuinfo, ["model name", "Model", "Hardware", "cpu model"]) || "";
  const vendor = cpuinfoField(cpuinfo, ["vendor_id", "CPU implementer"]);
  const cpu: Record<string, unknown> = {
    count: cpus.length,
    model,
    flags,
  };
  if (vendor) cpu.vendor = vendor;
  if (cpus[0]?.speed) cpu.mhz = cpus[0].speed;
  return {
    cpu_count: cpus.length,
    // Salt's name, so existing `grains['num_cpus']` templates keep working.
    num_cpus: cpus.length,
    cpu_model: model,
    cpu_flags: flags,
    cpu,
  };
}
