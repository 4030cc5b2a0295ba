/**
 * footprint: what one node pays. (a) CLI start-up: `zester --version` and `zester local
 * test.ping` against `node -e 0`, the floor of any Node.js tool. (b) Idle memory after 15 s of a
 * real `zester-peel` and a real `zester-master` connected to a real TLS + operator-JWT
 * nats-server, against an idle bare `node` and a bare NATS client holding one TLS connection
 * with the same peel creds (the fleet host in `bus` mode with one connection).
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { issuePeelCredsFile } from "../../src/auth/auth-dir.js";
import { fleetPeelId } from "../fleet-host.js";
import {
  fmtMs,
  repeat,
  type ScenarioOptions,
  type ScenarioResult,
  type Stats,
  table,
  timeCommand,
} from "../lib.js";
import {
  benchAuth,
  Children,
  distBin,
  fmtMiB,
  type Memory,
  procMemory,
  repoRoot,
  startServer,
} from "./fan-out.js";

const IDLE_MS = 15_000;

export async function footprint(opts: ScenarioOptions): Promise<ScenarioResult> {
  const node = process.execPath;
  const work = await mkdtemp(join(tmpdir(), "zester-bench-footprint-"));
  const children = new Children();
  try {
    // (a) start-up, measured first while nothing else of ours runs.
    const startup: [string, Stats][] = [];
    const time = async (label: string, argv: string[]) =>
      startup.push([label, await repeat(opts.runs, opts.warmup, () => timeCommand(argv, { cwd: work }))]);
    await time("baseline: `node -e 0`", [node, "-e", "0"]);
    await time("`zester --version`", [node, distBin("zester"), "--version"]);
    await time("`zester local test.ping`", [node, distBin("zester"), "local", "test.ping"]);

    // (b) idle processes, all started together and left alone for the same 15 s.
    const auth = await benchAuth(join(work, "auth"));
    const server = await startServer(children, auth);
    const peelId = "footprint-peel";
    await issuePeelCredsFile(auth.dir, peelId);
    await mkdir(join(work, "facts"), { recursive: true });

    const bareNode = children.spawn("node idle", [node, "-e", "setInterval(() => {}, 1 << 30)"]);
    const bareClient = children.spawn("bare NATS client", [
      node,
      join(repoRoot, "dist", "bench", "fleet-host.js"),
      "--mode",
      "bus",
      "--url",
      auth.url,
      "--auth-dir",
      auth.dir,
      "--creds-dir",
      dirname(await issuePeelCredsFile(auth.dir, fleetPeelId("bare", 0))),
      "--work",
      work,
      "--count",
      "1",
      "--prefix",
      "bare",
    ]);
    const master = children.spawn("zester-master", [
      node,
      distBin("zester-master"),
      "--id",
      "footprint-master",
      "--nats-url",
      auth.url,
      "--auth-dir",
      auth.dir,
      "--states-dir",
      join(work, "no-states"),
    ]);
    const startPeel = (id: string, jit: "lean" | "full") =>
      children.spawn(
        `zester-peel (${jit})`,
        [
          node,
          distBin("zester-peel"),
          "--id",
          id,
          "--nats-url",
          auth.url,
          "--auth-dir",
          auth.dir,
          "--cache-dir",
          join(work, `peel-cache-${jit}`),
          "--facts-dir",
          join(work, "facts"),
        ],
        { env: { ...process.env, ZESTER_PEEL_JIT: jit } },
      );
    const peel = startPeel(peelId, "lean");
    const fullPeelId = `${peelId}-full`;
    await issuePeelCredsFile(auth.dir, fullPeelId);
    const fullPeel = startPeel(fullPeelId, "full");
    await Promise.all([
      bareClient.event("ready", 30_000),
      master.waitFor(/running \(signing key/, 30_000),
      peel.waitFor(/connected to /, 30_000),
      fullPeel.waitFor(/connected to /, 30_000),
    ]);
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const mem: [string, Memory][] = [
      ["baseline: idle `node`", await procMemory(bareNode.pid)],
      ["baseline: bare NATS client, one TLS connection", await procMemory(bareClient.pid)],
      ["`zester-peel` (default: `ZESTER_PEEL_JIT=lean`)", await procMemory(peel.pid)],
      ["`zester-peel` with `ZESTER_PEEL_JIT=full` (V8 defaults)", await procMemory(fullPeel.pid)],
      ["`zester-master` (no peels, empty states dir)", await procMemory(master.pid)],
      ["nats-server (these five clients)", await procMemory(server.pid)],
    ];

    const base = startup[0]![1];
    const startupRows = startup.map(([label, s]) => [
      label,
      fmtMs(s.median),
      fmtMs(s.p99),
      (s.median / base.median).toFixed(1),
      s.rssKiB !== undefined ? fmtMiB(s.rssKiB) : "n/a",
    ]);
    const nodeRss = mem[0]![1].rssKiB;
    const clientRss = mem[1]![1].rssKiB;
    const memRows = mem.map(([label, m], i) => [
      label,
      fmtMiB(m.rssKiB),
      fmtMiB(m.hwmKiB),
      i === 5 ? "-" : (m.rssKiB / nodeRss).toFixed(1),
      i === 5 ? "-" : (m.rssKiB / clientRss).toFixed(1),
    ]);
    const markdown = [
      table(["start-up", "median", "p99", "× `node -e 0`", "peak RSS"], startupRows),
      "",
      `${startup[0]![1].n} runs each after ${opts.warmup} warm-up runs; peak RSS from GNU time when installed.`,
      "",
      table(["idle after 15 s", "RSS", "peak RSS", "× idle node", "× bare NATS client"], memRows),
      "",
      "Read from /proc/<pid>/status of processes started together against one TLS, operator-JWT " +
        "nats-server and left idle for 15 s. The peel has published facts and a heartbeat; the " +
        "master has bootstrapped the buckets and watches facts and heartbeats. `lean` (the peel's " +
        "default) runs V8 with a 1 MiB young generation, `--optimize-for-size` and no optimising " +
        "compiler; `full` keeps V8's defaults.",
    ].join("\n");
    return { title: "Footprint: start-up and idle memory", markdown };
  } finally {
    await children.stopAll();
    await rm(work, { recursive: true, force: true });
  }
}
