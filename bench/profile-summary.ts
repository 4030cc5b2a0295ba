/**
 * Summarises V8 CPU profiles (`node --cpu-prof`, e.g. the master's with ZESTER_BENCH_CPU_PROF):
 * self time by package or source file, and the hottest functions.
 *
 *   node dist/bench/profile-summary.js [--top N] [--by file|package|phase] PROFILE.cpuprofile...
 *
 * `phase` charges each sample to the first frame, from the leaf up, that belongs to a known
 * phase of a Zester process (module loading, fact collection, render + compile, check + apply,
 * output); what matches none stays `node runtime` or `other`. That is how bench/README.md says
 * what a `zester local` run is made of.
 *
 * Self time is where the CPU was when sampled; `(idle)` is the event loop waiting, `(program)`
 * and `(garbage collector)` are V8's own work.
 */
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";

/** Phases by source URL, tried in order on each frame from the leaf up. */
const PHASES: [string, RegExp][] = [
  ["module loading (resolve, read, compile)", /^node:internal\/modules\//],
  ["fact collection", /\/src\/facts\//],
  [
    "render + compile (templates, YAML, requisites)",
    /\/src\/(template|settings)\/|\/src\/state\/(compile|sls|sls-context|top|graph|select|nodegroups|cache|diagnostics)\.js/,
  ],
  [
    "check + apply (modules, scheduler)",
    /\/src\/(modules|revert)\/|\/src\/state\/(runner|schedule|order|engine|exec|result)\.js/,
  ],
  ["output", /\/src\/cli\/(output|highstate|nested|paint)\.js/],
  ["CLI, config", /\/src\/(cli|config)\//],
];

function phaseOf(stack: ProfileNode[]): string {
  for (const n of stack) {
    const f = n.callFrame;
    if (f.functionName === "(garbage collector)") return "V8: garbage collector";
    for (const [name, re] of PHASES) if (re.test(f.url)) return name;
  }
  const leaf = stack[0]?.callFrame;
  if (leaf?.functionName === "(program)") return "V8: (program)";
  return leaf?.url.startsWith("node:") || leaf?.url === "" ? "node runtime, other" : "other";
}

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

export function summarise(p: CpuProfile, by: "file" | "package" | "phase", top: number): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stackOf = (id: number): ProfileNode[] => {
    const out: ProfileNode[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) out.push(byId.get(cur)!);
    return out;
  };
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
    const bucket = by === "phase" ? phaseOf(stackOf(id)) : (special ?? bucketOf(f.url, by));
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
  let by: "file" | "package" | "phase" = "package";
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--top") top = Number(argv[++i]);
    else if (a === "--by") {
      const v = argv[++i];
      by = v === "file" || v === "phase" ? v : "package";
    } else files.push(a);
  }
  if (files.length === 0) {
    process.stderr.write(
      "usage: profile-summary [--top N] [--by file|package|phase] PROFILE.cpuprofile...\n",
    );
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
