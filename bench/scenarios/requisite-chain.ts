/**
 * requisite-chain: chains of 100, 1,000 and 10,000 `test.nop` states, each requiring the previous,
 * compiled and run in-process (as the peel runs the engine). Baseline: the 100-state chain; a
 * linear planner keeps the 1,000/100 ratio near 10. Also: a second (no-change) apply of 200
 * file.managed + 20 file.directory states inside a long-running process.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { applyTarget } from "../../src/state/engine.js";
import { fmtMs, repeat, type ScenarioOptions, type ScenarioResult, table, timeFn } from "../lib.js";

function chain(n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    out.push(i === 0 ? `s0:\n  test.nop: []\n` : `s${i}:\n  test.nop:\n    - require:\n      - s${i - 1}\n`);
  }
  return out.join("");
}

function filesTree(root: string): string {
  const out: string[] = [];
  for (let d = 0; d < 20; d++)
    out.push(`dir_${d}:\n  file.directory:\n    - name: ${root}/dir_${d}\n    - mode: "0755"\n`);
  for (let i = 0; i < 200; i++) {
    out.push(
      `file_${i}:\n  file.managed:\n    - name: ${root}/file_${i}.conf\n    - mode: "0644"\n    - content: "key_${i} = value_${i}\\n"\n`,
    );
  }
  return out.join("");
}

export async function requisiteChain(opts: ScenarioOptions): Promise<ScenarioResult> {
  const work = await mkdtemp(join(tmpdir(), "zester-bench-chain-"));
  try {
    const sizes = [100, 1000, 10000];
    for (const n of sizes) await writeFile(join(work, `chain${n}.zy`), chain(n));
    const rows: (string | number)[][] = [];
    let base = 0;
    for (const n of sizes) {
      const runs = n >= 10000 ? Math.max(3, Math.ceil(opts.runs / 2)) : opts.runs;
      const s = await repeat(runs, opts.warmup, () =>
        timeFn(async () => {
          const rep = await applyTarget({ kind: "sls", refs: [`chain${n}`] }, { statesDir: work });
          if (rep.summary.failed !== 0 || rep.summary.total !== n)
            throw new Error(`chain${n}: unexpected result`);
        }),
      );
      if (n === 100) base = s.median;
      rows.push([
        n,
        fmtMs(s.median),
        `${((s.median * 1000) / n).toFixed(1)} µs`,
        `×${(s.median / base).toFixed(2)}`,
        `±${(s.spread * 100).toFixed(0)}%`,
      ]);
    }
    const root = join(work, "root");
    await mkdir(root);
    await writeFile(join(work, "files.zy"), filesTree(root));
    const cacheDir = join(work, "cache");
    const apply = (cached: boolean) =>
      applyTarget(
        { kind: "sls", refs: ["files"] },
        { statesDir: work, facts: async () => ({}), ...(cached ? { cacheDir } : {}) },
      );
    await apply(true);
    const secondApply = (cached: boolean) =>
      repeat(opts.runs, opts.warmup, () =>
        timeFn(async () => {
          const rep = await apply(cached);
          if (rep.summary.changed !== 0) throw new Error("second apply changed something");
        }),
      );
    const uncached = await secondApply(false);
    const cached = await secondApply(true);
    const pct = (x: number) => `±${(x * 100).toFixed(0)}%`;
    const md = [
      "Compile + run in one process; time per state and growth against the 100-state chain (linear: ×10 for 1,000, ×100 for 10,000).",
      "",
      table(["states", "median", "per state", "growth vs 100", "spread"], rows),
      "",
      `In-process second apply (no changes) of 200 file.managed + 20 file.directory, as the peel runs it: ` +
        `median ${fmtMs(cached.median)} with the compile cache (${pct(cached.spread)}), ` +
        `${fmtMs(uncached.median)} compiling from scratch (${pct(uncached.spread)}), ${cached.n} runs each.`,
    ];
    return { title: "requisite-chain", markdown: md.join("\n") };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
