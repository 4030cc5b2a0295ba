/**
 * Benchmark plumbing: repeated timed runs of a command or a function, median and spread, and
 * Markdown tables. Machines here are noisy, so every figure is reported next to a baseline
 * measured in the same run.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";

export interface Sample {
  ms: number;
  /** Peak resident set size in KiB, when measurable. */
  rssKiB?: number;
}

export interface Stats {
  median: number;
  min: number;
  max: number;
  /** (p90 - p10) / median: a unitless spread. */
  spread: number;
  p99: number;
  n: number;
  rssKiB?: number;
}

export function stats(values: number[], rss: number[] = []): Stats {
  const s = [...values].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))]!;
  const median = q(0.5);
  const out: Stats = {
    median,
    min: s[0]!,
    max: s[s.length - 1]!,
    spread: median > 0 ? (q(0.9) - q(0.1)) / median : 0,
    p99: q(0.99),
    n: s.length,
  };
  if (rss.length > 0) out.rssKiB = Math.max(...rss);
  return out;
}

const GNU_TIME = "/usr/bin/time";

/** Runs a command to completion; wall time, and peak RSS through GNU time when it is installed. */
export function timeCommand(
  argv: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Sample> {
  const useTime = existsSync(GNU_TIME);
  const full = useTime ? [GNU_TIME, "-f", "__RSS__%M", ...argv] : argv;
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(full[0]!, full.slice(1), {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const m = /__RSS__(\d+)/.exec(stderr);
      if (code !== 0) {
        reject(new Error(`${argv.join(" ")} exited ${code}\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`));
        return;
      }
      resolve(m ? { ms, rssKiB: Number(m[1]) } : { ms });
    });
  });
}

/**
 * Warm-up runs are discarded; `prepare` runs before every measured run, untimed. With a
 * `budgetMs`, a slow tool (a peer taking a minute a run) stops after the run that crosses it,
 * and skips warm-up once one warm-up alone took longer than the budget.
 */
export async function repeat(
  runs: number,
  warmup: number,
  once: () => Promise<Sample>,
  prepare?: () => Promise<void>,
  budgetMs = Number.POSITIVE_INFINITY,
): Promise<Stats> {
  const t0 = performance.now();
  for (let i = 0; i < warmup && performance.now() - t0 < budgetMs; i++) {
    if (prepare) await prepare();
    await once();
  }
  const t1 = performance.now();
  const ms: number[] = [];
  const rss: number[] = [];
  for (let i = 0; i < runs && (i === 0 || performance.now() - t1 < budgetMs); i++) {
    if (prepare) await prepare();
    const s = await once();
    ms.push(s.ms);
    if (s.rssKiB !== undefined) rss.push(s.rssKiB);
  }
  return stats(ms, rss);
}

export async function timeFn(fn: () => Promise<unknown>): Promise<Sample> {
  const t0 = process.hrtime.bigint();
  await fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}

export function fmtMs(ms: number): string {
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.map(String).join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

export interface ScenarioResult {
  title: string;
  /** Markdown: the table(s) and a sentence on how to read them. */
  markdown: string;
}

export interface ScenarioOptions {
  runs: number;
  warmup: number;
  withPeers: boolean;
  /** How long the soak scenario runs (`--soak-minutes`). */
  soakMinutes?: number;
  /** Path to the built CLI entry (dist/bin/zester.js). */
  zesterBin: string;
}
