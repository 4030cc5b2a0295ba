/**
 * drift-repair: `watch_drift: true` on 1,000 file.managed states, one real Peel in this process,
 * offline (its cache and settings snapshot prepared as a connected peel leaves them; no NATS),
 * exactly the path a peel takes through a control-plane outage.
 *
 * 1. Edit → repaired: a file is overwritten by hand; the time until its managed content is back
 *    on disk (read every 2 ms). Baseline: the scheduled alternative, one no-change enforcement
 *    run of the same 1,000 states (what a peel without watch_drift would need, at best, to notice
 *    and fix it, before counting its interval).
 * 2. Idle CPU: CPU time (user + system) of this process over 10 s while the peel watches the
 *    1,000 files, against the same peel applying the same tree without watch_drift.
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StateManifest, StateRevision } from "../../src/jobs/wire.js";
import { Peel } from "../../src/peel/peel.js";
import { StateTreeCache } from "../../src/peel/state-cache.js";
import { saveSnapshot } from "../../src/settings/snapshot.js";
import { fmtMs, repeat, type ScenarioOptions, type ScenarioResult, table, timeFn } from "../lib.js";

const FILES = 1000;
const IDLE_MS = 10_000;
const enc = new TextEncoder();
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function tree(root: string, watch: boolean): string {
  const out: string[] = [];
  for (let i = 0; i < FILES; i++) {
    out.push(
      `f${i}:\n  file.managed:\n    - name: ${root}/f${i}.conf\n    - contents: "key_${i} = value_${i}"\n${watch ? "    - watch_drift: true\n" : ""}`,
    );
  }
  return out.join("");
}

/** A peel cache holding `files` as revision 1, as a sync from a master would leave it. */
async function seedCache(cacheDir: string, files: Record<string, string>): Promise<void> {
  const blobs = new Map<string, Uint8Array>();
  const manifest: StateManifest = {
    rev: 1,
    files: {},
    published_at: new Date().toISOString(),
    master: "bench",
  };
  for (const [path, text] of Object.entries(files)) {
    const data = enc.encode(text);
    const h = sha(data);
    manifest.files[path] = { sha256: h, size: data.length, mode: 0o644 };
    blobs.set(`blob.${h}`, data);
  }
  const m = enc.encode(JSON.stringify({ ...manifest, v: 1 }));
  blobs.set("manifest", m);
  const revision: StateRevision = { rev: 1, manifest_sha256: sha(m) };
  await new StateTreeCache(join(cacheDir, "states")).sync(async (k) => blobs.get(k), revision);
  await saveSnapshot(cacheDir, {});
}

async function offlinePeel(
  work: string,
  name: string,
  watch: boolean,
): Promise<{ peel: Peel; root: string }> {
  const root = join(work, name, "root");
  const cacheDir = join(work, name, "cache");
  await mkdir(root, { recursive: true });
  await seedCache(cacheDir, { "files.zy": tree(root, watch) });
  const quiet = { info: () => {}, warn: () => {}, error: () => {} };
  const peel = new Peel({
    id: `bench-${name}`,
    // Nothing listens there: the peel works from its cache, as through an outage.
    servers: "tls://127.0.0.1:9",
    credsFile: join(work, "none.creds"),
    cacheDir,
    customFactsDir: join(work, "no-facts"),
    trustedMasters: new Set(),
    connectRetryMs: 3_600_000,
    logger: quiet,
  });
  await peel.start();
  const first = await peel.applyLocal({ sls: ["files"] });
  if (!first.success || first.summary?.changed !== FILES)
    throw new Error(`first apply: ${first.error ?? "unexpected result"}`);
  return { peel, root };
}

async function cpuOver(ms: number): Promise<number> {
  const c0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, ms));
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

export async function driftRepair(opts: ScenarioOptions): Promise<ScenarioResult> {
  const work = await mkdtemp(join(tmpdir(), "zester-bench-drift-"));
  const peels: Peel[] = [];
  try {
    const plain = await offlinePeel(work, "plain", false);
    peels.push(plain.peel);
    const enforce = await repeat(opts.runs, opts.warmup, () =>
      timeFn(async () => {
        const r = await plain.peel.applyLocal({ sls: ["files"] });
        if (!r.success || r.summary?.changed !== 0) throw new Error("no-change run changed something");
      }),
    );
    const idlePlain = await cpuOver(IDLE_MS);
    await plain.peel.stop();

    const watched = await offlinePeel(work, "watched", true);
    peels.push(watched.peel);
    // Give the watcher its fingerprints of the first run.
    await new Promise((r) => setTimeout(r, 1_000));
    let n = 0;
    const repairs = await repeat(opts.runs, opts.warmup, () =>
      timeFn(async () => {
        const i = (n++ * 37) % FILES;
        const path = join(watched.root, `f${i}.conf`);
        const want = `key_${i} = value_${i}\n`;
        await writeFile(path, `edited by hand ${n}\n`);
        const deadline = performance.now() + 10_000;
        while ((await readFile(path, "utf8")) !== want) {
          if (performance.now() > deadline) throw new Error(`${path} was not repaired within 10 s`);
          await new Promise((r) => setTimeout(r, 2));
        }
        // Let the repair run finish before the next edit.
        await new Promise((r) => setTimeout(r, 300));
      }),
    );
    const idleWatched = await cpuOver(IDLE_MS);
    const repairOnly = repairs.median - 300;
    const markdown = [
      table(
        ["", "median", "p99 (over runs)", "× baseline"],
        [
          [
            "baseline: no-change enforcement run of the 1,000 states",
            fmtMs(enforce.median),
            fmtMs(enforce.p99),
            "×1.00",
          ],
          [
            "edit → file repaired (watch_drift, offline)",
            fmtMs(repairOnly),
            fmtMs(repairs.p99 - 300),
            `×${(repairOnly / enforce.median).toFixed(2)}`,
          ],
        ],
      ),
      "",
      table(
        ["idle peel, 10 s", "CPU time", "CPU %", "× baseline"],
        [
          [
            "baseline: 1,000 managed files, not watched",
            fmtMs(idlePlain),
            `${((idlePlain / IDLE_MS) * 100).toFixed(2)}%`,
            "×1.00",
          ],
          [
            "1,000 files watched (watch_drift)",
            fmtMs(idleWatched),
            `${((idleWatched / IDLE_MS) * 100).toFixed(2)}%`,
            `×${(idleWatched / Math.max(idlePlain, 0.001)).toFixed(2)}`,
          ],
        ],
      ),
      "",
      `Goal: edit → repaired under 1 s. The repair re-runs one state (plus what reacts to it) from the cache; ${opts.runs} runs after ${opts.warmup} warm-up.`,
    ].join("\n");
    return { title: "drift-repair: watch_drift on 1,000 files (offline peel)", markdown };
  } finally {
    for (const p of peels) await p.stop().catch(() => {});
    await rm(work, { recursive: true, force: true });
  }
}
