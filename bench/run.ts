/**
 * `npm run bench [-- <scenario...>] [--runs N] [--warmup N] [--with-peers] [--soak-minutes M] [--save]`
 * Runs each scenario, prints Markdown, and with --save writes bench/RESULTS.md. Scenarios in
 * OPT_IN (the soak runs for minutes by design) run only when named.
 */
import { writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { ScenarioOptions, ScenarioResult } from "./lib.js";

const here = dirname(fileURLToPath(import.meta.url));
// Compiled to dist/bench/run.js; the repository root is two levels up.
const repoRoot = resolve(here, "..", "..");

const SCENARIOS: Record<string, () => Promise<(o: ScenarioOptions) => Promise<ScenarioResult>>> = {
  "local-apply": async () => (await import("./scenarios/local-apply.js")).localApply,
  "requisite-chain": async () => (await import("./scenarios/requisite-chain.js")).requisiteChain,
  targeting: async () => (await import("./scenarios/targeting.js")).targeting,
  "fan-out": async () => (await import("./scenarios/fan-out.js")).fanOut,
  cluster: async () => (await import("./scenarios/cluster.js")).clusterFanOut,
  footprint: async () => (await import("./scenarios/footprint.js")).footprint,
  "drift-repair": async () => (await import("./scenarios/drift-repair.js")).driftRepair,
  reactor: async () => (await import("./scenarios/reactor.js")).reactorBench,
  soak: async () => (await import("./scenarios/soak.js")).soak,
};

const OPT_IN = new Set(["soak"]);

async function main(argv: string[]): Promise<number> {
  const names: string[] = [];
  const opts: ScenarioOptions = {
    runs: 7,
    warmup: 2,
    withPeers: false,
    zesterBin: join(repoRoot, "dist", "bin", "zester.js"),
  };
  let save = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--runs") opts.runs = Number(argv[++i]);
    else if (a === "--warmup") opts.warmup = Number(argv[++i]);
    else if (a === "--with-peers") opts.withPeers = true;
    else if (a === "--soak-minutes") opts.soakMinutes = Number(argv[++i]);
    else if (a === "--save") save = true;
    else if (a.startsWith("-")) {
      process.stderr.write(`bench: unknown option ${a}\n`);
      return 1;
    } else if (!SCENARIOS[a]) {
      process.stderr.write(`bench: unknown scenario ${a}; known: ${Object.keys(SCENARIOS).join(", ")}\n`);
      return 1;
    } else names.push(a);
  }
  if (!Number.isInteger(opts.runs) || opts.runs < 1 || !Number.isInteger(opts.warmup) || opts.warmup < 0) {
    process.stderr.write("bench: --runs must be ≥ 1 and --warmup ≥ 0\n");
    return 1;
  }
  if (opts.soakMinutes !== undefined && !(opts.soakMinutes > 0)) {
    process.stderr.write("bench: --soak-minutes must be a positive number\n");
    return 1;
  }
  const selected = names.length > 0 ? names : Object.keys(SCENARIOS).filter((n) => !OPT_IN.has(n));
  const parts: string[] = [
    "# Zester benchmarks",
    "",
    `Measured ${new Date().toISOString()} on ${process.platform}/${process.arch}, Node ${process.version}, by \`npm run bench\`.`,
  ];
  for (const name of selected) {
    process.stderr.write(`bench: ${name}...\n`);
    const scenario = await SCENARIOS[name]!();
    const res = await scenario(opts);
    parts.push("", `## ${res.title}`, "", res.markdown);
  }
  const md = `${parts.join("\n")}\n`;
  process.stdout.write(md);
  if (save) await writeFile(join(repoRoot, "bench", "RESULTS.md"), md);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
