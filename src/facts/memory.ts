import * as nodeOs from "node:os";
import { readTextOrUndefined } from "./read.js";

const MIB = 1024 * 1024;

/** /proc/meminfo values in bytes (the file reports kB). */
export function parseMeminfo(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = /^([\w()]+):\s+(\d+)(?:\s+kB)?/.exec(line);
    if (m) out[m[1]!] = Number(m[2]) * (line.trimEnd().endsWith("kB") ? 1024 : 1);
  }
  return out;
}

/** Memory and swap. Detail in bytes; `mem_total` / `swap_total` in MiB as Salt reports them. */
export async function collectMemory(): Promise<Record<string, unknown>> {
  const info = parseMeminfo((await readTextOrUndefined("/proc/meminfo")) ?? "");
  const total = info.MemTotal ?? nodeOs.totalmem();
  const available = info.MemAvailable ?? nodeOs.freemem();
  const swapTotal = info.SwapTotal ?? 0;
  const swapFree = info.SwapFree ?? 0;
  return {
    mem_total: Math.floor(total / MIB),
    swap_total: Math.floor(swapTotal / MIB),
    memory: { total, available, swap_total: swapTotal, swap_free: swapFree },
  };
}
