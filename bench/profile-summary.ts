/**
 * Summarises V8 CPU profiles (`node --cpu-prof`, e.g. the master's with ZESTER_BENCH_CPU_PROF):
 * self time by package or source file, and the hottest functions.
 *
 *   node dist/bench/profile-summary.js [--top N] [--by file|package] PROFILE.cpuprofile...
 *
 * Self time is where the CPU was when sampled; `(idle)` is the event loop waiting, `(program)`
 * and `(garbage collector)` are V8's own work.
 */
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Which bucket a source URL belongs to: an npm package, a file of this project, or node itself. */
export function bucketOf(url: string, by: "file" | "package"): string {
  if (url === "") return "(native / V8)";
  if (url.startsWith("node:")) return "node:*";
  const nm = url.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "/node_modules/".length).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const dist = url.indexOf("/dist/");
  const path = dist >= 0 ? url.slice(dist + "/dist/".length) : url;
  return by === "file" ? path : path.split("/").slice(0, 2).join("/");
}

export function summarise(p: CpuProfile, by: "file" | "package", top: number): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const buckets = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const f = n.callFrame;
    total += us;
    if (f.functionName === "(idle)") {
      idle += us;
      continue;
    }
    const special = f.functionName.startsWith("(") ? f.functionName : undefined;
    const bucket = special ?? bucketOf(f.url, by);
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + us);
    const fn = special ?? `${f.functionName || "(anonymous)"} ${bucketOf(f.url, "file")}:${f.lineNumber + 1}`;
    fns.set(fn, (fns.get(fn) ?? 0) + us);
  }
  const busy = total - idle;
  const ms = (us: number) => (us / 1000).toFixed(1);
  const pct = (us: number) => ((100 * us) / Math.max(1, busy)).toFixed(1);
  const lines = [
    `profile ${ms(p.endTime - p.startTime)} ms, sampled ${ms(total)} ms, busy ${ms(busy)} ms, idle ${ms(idle)} ms`,
    "",
    `self time by ${by}:`,
    ...[...buckets]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `  ${ms(v).padStart(9)} ms ${pct(v).padStart(5)}%  ${k}`),
    "",
    "hottest functions (self):",
    ...[...fns]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `  ${ms(v).padStart(9)} ms ${pct(v).padStart(5)}%  ${k}`),
  ];
  return lines.join("\n");
}

async function main(argv: string[]): Promise<number> {
  let top = 25;
  let by: "file" | "package" = "package";
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--top") top = Number(argv[++i]);
    else if (a === "--by") by = argv[++i] === "file" ? "file" : "package";
    else files.push(a);
  }
  if (files.length === 0) {
    process.stderr.write("usage: profile-summary [--top N] [--by file|package] PROFILE.cpuprofile...\n");
    return 1;
  }
  for (const f of files) {
    const p = JSON.parse(await readFile(f, "utf8")) as CpuProfile;
    process.stdout.write(`== ${f}\n${summarise(p, by, top)}\n\n`);
  }
  return 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
