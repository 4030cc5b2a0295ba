/**
 * soak: one real `zester-peel` and one real `zester-master` against a real TLS + operator-JWT
 * nats-server for a fixed time (`--soak-minutes`, default 20), a job every 10 s (alternately
 * `test.ping` and a `state.apply` of a small tree: a templated file, a directory, a guarded
 * command), RSS of every process sampled every 30 s. Reported: start, max and end RSS and the
 * slope (least squares, MiB per hour) over the whole run and over its second half, which leaves
 * out V8's heap growing to its working size. A leak shows as a slope that does not flatten.
 *
 * Not part of the default set (it runs for minutes by design): `npm run bench -- soak`.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AUTH_FILES, issuePeelCredsFile } from "../../src/auth/auth-dir.js";
import { decode, encode } from "../../src/bus/codec.js";
import { connect } from "../../src/bus/connect.js";
import { subjects } from "../../src/bus/names.js";
import { JobStore } from "../../src/jobs/store.js";
import type { DispatchReply, DispatchRequest } from "../../src/jobs/wire.js";
import { errText } from "../../src/util/errors.js";
import { type ScenarioOptions, type ScenarioResult, table } from "../lib.js";
import { benchAuth, Children, distBin, fmtMiB, procMemory, startServer } from "./fan-out.js";

const JOB_EVERY_MS = 10_000;
const SAMPLE_EVERY_MS = 30_000;
export const DEFAULT_SOAK_MINUTES = 20;

/** Least-squares slope of y over x. */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return Number.NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}

interface Sample {
  /** Hours since the first sample. */
  h: number;
  rss: Record<string, number>;
}

async function waitFinished(store: JobStore, jid: string, ms: number): Promise<string> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const cur = await store.get(jid).catch(() => undefined);
    if (cur && cur.record.status !== "running") return cur.record.status;
    await new Promise((r) => setTimeout(r, 200));
  }
  return "still running";
}

export async function soak(opts: ScenarioOptions): Promise<ScenarioResult> {
  const minutes = opts.soakMinutes ?? DEFAULT_SOAK_MINUTES;
  const work = await mkdtemp(join(tmpdir(), "zester-bench-soak-"));
  const children = new Children();
  const log = (m: string) => process.stderr.write(`bench: soak: ${m}\n`);
  try {
    const auth = await benchAuth(join(work, "auth"));
    const server = await startServer(children, auth);
    const peelId = "soak-peel";
    await issuePeelCredsFile(auth.dir, peelId);
    const states = join(work, "states");
    const target = join(work, "managed");
    await mkdir(states, { recursive: true });
    await mkdir(join(work, "facts"), { recursive: true });
    await writeFile(join(states, "top.zy"), "base:\n  '*':\n    - soak\n");
    await writeFile(
      join(states, "soak.zy"),
      [
        `soak-dir:\n  file.directory:\n    - name: ${target}\n`,
        `soak-file:\n  file.managed:\n    - name: ${target}/conf\n    - contents: "cpus={{ grains['num_cpus'] }}"\n    - require:\n      - file: soak-dir\n`,
        `soak-guarded:\n  cmd.run:\n    - name: "true"\n    - unless: "test -d ${target}"\n`,
      ].join("\n"),
    );
    const master = children.spawn("zester-master", [
      process.execPath,
      distBin("zester-master"),
      "--id",
      "soak-master",
      "--nats-url",
      auth.url,
      "--auth-dir",
      auth.dir,
      "--states-dir",
      states,
    ]);
    await master.waitFor(/running \(signing key/, 30_000);
    const peel = children.spawn("zester-peel", [
      process.execPath,
      distBin("zester-peel"),
      "--id",
      peelId,
      "--nats-url",
      auth.url,
      "--auth-dir",
      auth.dir,
      "--cache-dir",
      join(work, "peel-cache"),
      "--facts-dir",
      join(work, "facts"),
    ]);
    await peel.waitFor(/connected to /, 30_000);
    const admin = await connect({
      servers: auth.url,
      credsFile: join(auth.dir, AUTH_FILES.adminCreds),
      caFile: auth.caFile,
    });
    const store = await JobStore.open(admin);
    const pids = { "zester-peel": peel.pid, "zester-master": master.pid, "nats-server": server.pid };
    const samples: Sample[] = [];
    const jobs: Record<string, number> = {};
    const t0 = Date.now();
    const end = t0 + minutes * 60_000;
    const sample = async () => {
      const rss: Record<string, number> = {};
      for (const [k, pid] of Object.entries(pids)) rss[k] = (await procMemory(pid)).rssKiB / 1024;
      samples.push({ h: (Date.now() - t0) / 3_600_000, rss });
    };
    await sample();
    let nextSample = t0 + SAMPLE_EVERY_MS;
    let n = 0;
    try {
      while (Date.now() < end) {
        const fun = n++ % 2 === 0 ? "test.ping" : "state.apply";
        const req: DispatchRequest = {
          target: peelId,
          fun,
          args: [],
          kwargs: {},
          test: false,
          timeout_s: 30,
        };
        const started = Date.now();
        let status: string;
        try {
          const m = await admin.request(subjects.dispatch, encode(req), { timeout: 15_000 });
          const reply = decode<DispatchReply>(m.data);
          status = reply.jid ? await waitFinished(store, reply.jid, 40_000) : `refused: ${reply.error}`;
        } catch (err) {
          status = `dispatch failed: ${errText(err)}`;
        }
        const key = `${fun} ${status}`;
        jobs[key] = (jobs[key] ?? 0) + 1;
        while (Date.now() >= nextSample) {
          await sample();
          nextSample += SAMPLE_EVERY_MS;
          const last = samples[samples.length - 1]!;
          log(
            `${((Date.now() - t0) / 60_000).toFixed(1)} min: ${Object.entries(last.rss)
              .map(([k, v]) => `${k} ${v.toFixed(1)} MiB`)
              .join(", ")}`,
          );
        }
        await new Promise((r) => setTimeout(r, Math.max(0, started + JOB_EVERY_MS - Date.now())));
      }
      await sample();
    } finally {
      await admin.close().catch(() => {});
    }
    const half = samples.filter((s) => s.h >= samples[samples.length - 1]!.h / 2);
    const rows = Object.keys(pids).map((k) => {
      const ys = samples.map((s) => s.rss[k]!);
      const slopeOf = (ss: Sample[]) =>
        slope(
          ss.map((s) => s.h),
          ss.map((s) => s.rss[k]!),
        );
      return [
        `\`${k}\``,
        fmtMiB(ys[0]! * 1024),
        fmtMiB(Math.max(...ys) * 1024),
        fmtMiB(ys[ys.length - 1]! * 1024),
        `${slopeOf(samples).toFixed(1)} MiB/h`,
        `${slopeOf(half).toFixed(1)} MiB/h`,
      ];
    });
    const ran = Object.entries(jobs)
      .sort()
      .map(([k, v]) => `${v} × ${k}`)
      .join(", ");
    const markdown = [
      table(["process", "RSS at start", "max", "at end", "slope (whole run)", "slope (second half)"], rows),
      "",
      `${minutes} min, a job to the peel every ${JOB_EVERY_MS / 1000} s (${ran}), RSS (/proc/<pid>/status VmRSS) ` +
        `sampled every ${SAMPLE_EVERY_MS / 1000} s: ${samples.length} samples. The slope is a least-squares fit; ` +
        "the second half leaves out the heaps growing to their working size.",
    ].join("\n");
    return { title: `Soak: one peel and one master for ${minutes} min`, markdown };
  } finally {
    await children.stopAll();
    await rm(work, { recursive: true, force: true });
  }
}
