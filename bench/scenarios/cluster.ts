/**
 * cluster: the fan-out job (test.ping, then state.apply of one `test.nop`, to `*`) on a 3-node
 * JetStream cluster with every bucket and stream at R3, against the same fleet on a single
 * server measured in the same run. Peels and the master get every node's URL and spread over
 * the nodes as the client library picks them. The ratio is what replication and routing cost.
 *
 * Size: 1,000 peels, or ZESTER_BENCH_PEELS / ZESTER_BENCH_MAX_PEELS (bench/README.md).
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { AUTH_FILES, initAuthDir } from "../../src/auth/auth-dir.js";
import { clusterNodes } from "../../src/auth/cluster-layout.js";
import { decode, encode } from "../../src/bus/codec.js";
import { connect } from "../../src/bus/connect.js";
import { subjects } from "../../src/bus/names.js";
import { JobStore } from "../../src/jobs/store.js";
import { errText } from "../../src/util/errors.js";
import { fmtMs, type ScenarioOptions, type ScenarioResult, stats, table } from "../lib.js";
import {
  type BenchAuth,
  benchAuth,
  buildsFromEnv,
  type Child,
  Children,
  distBin,
  ensurePeelCreds,
  type FanOutSample,
  fleetSizesFromEnv,
  freePort,
  hostsReady,
  spawnHosts,
  startServer,
  waitUntil,
  zesterJob,
} from "./fan-out.js";

interface Phase {
  label: string;
  ping: FanOutSample[];
  apply: FanOutSample[];
  startMs: number;
  /** `KV_jobs`' replica count as the server reports it (R3 expected on the cluster). */
  replicas?: number;
  error?: string;
}

/** An auth dir for a 3-node cluster on this machine; `url` lists every node. */
async function clusterAuth(dir: string): Promise<BenchAuth & { configs: string[]; ports: number[] }> {
  const localPorts: { client: number; route: number }[] = [];
  const taken = new Set<number>();
  while (localPorts.length < 3) {
    const client = await freePort();
    const route = await freePort();
    if (client === route || taken.has(client) || taken.has(route)) continue;
    taken.add(client).add(route);
    localPorts.push({ client, route });
  }
  const cluster = { nodes: 3, localPorts };
  await initAuthDir({ dir, listenHost: "127.0.0.1", cluster });
  const nodes = clusterNodes(cluster, 0, "127.0.0.1");
  return {
    dir,
    port: nodes[0]!.port,
    url: nodes.map((n) => n.url).join(","),
    caFile: join(dir, "nats-ca.crt"),
    configs: nodes.map((n) => join(dir, n.configFile)),
    ports: nodes.map((n) => n.port),
  };
}

async function startCluster(
  children: Children,
  auth: Awaited<ReturnType<typeof clusterAuth>>,
): Promise<Child[]> {
  const servers = auth.configs.map((c, i) => children.spawn(`nats-${i + 1}`, ["nats-server", "-c", c]));
  await Promise.all(servers.map((s) => s.waitFor(/Server is ready/, 30_000)));
  // The JetStream meta group elects a leader after the routes are up; the master needs it.
  const nc = await connect({
    servers: auth.url,
    credsFile: join(auth.dir, AUTH_FILES.masterCreds),
    caFile: auth.caFile,
  });
  try {
    await waitUntil("a JetStream meta leader", 60_000, async () => {
      await (await jetstreamManager(nc)).getAccountInfo();
      return true;
    });
  } finally {
    await nc.close();
  }
  return servers;
}

async function phase(
  label: string,
  n: number,
  opts: ScenarioOptions,
  auth: BenchAuth,
  servers: Child[],
  work: string,
  children: Children,
): Promise<Phase> {
  const log = (m: string) => process.stderr.write(`bench: cluster ${n} ${label}: ${m}\n`);
  const out: Phase = { label, ping: [], apply: [], startMs: Number.NaN };
  const jobTimeoutS = 60 + Math.ceil(n / 20);
  const startTimeout = 120_000 + n * 200;
  await rm(join(work, "peels"), { recursive: true, force: true });
  const master = children.spawn(`zester-master (${label})`, [
    process.execPath,
    distBin("zester-master"),
    "--id",
    "bench-master",
    "--nats-url",
    auth.url,
    "--auth-dir",
    auth.dir,
    "--states-dir",
    join(work, "states"),
  ]);
  const [build] = buildsFromEnv();
  let hosts: Child[] = [];
  const admin = await connect({
    servers: auth.url,
    credsFile: join(auth.dir, AUTH_FILES.adminCreds),
    caFile: auth.caFile,
  });
  try {
    await master.waitFor(/running \(signing key/, 60_000);
    hosts = spawnHosts(children, build!, "peels", auth, work, n);
    out.startMs = await hostsReady(hosts, startTimeout);
    log(`${n} peels connected in ${fmtMs(out.startMs)}`);
    const store = await JobStore.open(admin);
    await waitUntil(`the master to know all ${n} peels`, startTimeout, async () => {
      const m = await admin.request(subjects.targetResolve, encode({ target: "*" }), { timeout: 10_000 });
      return (decode<{ peels?: string[] }>(m.data).peels?.length ?? 0) === n ? true : undefined;
    });
    out.replicas = (await (await jetstreamManager(admin)).streams.info("KV_jobs")).config.num_replicas;
    for (const h of hosts) h.send("states");
    await Promise.all(hosts.map((h) => h.event("states", startTimeout)));
    const measure = async (fun: string) => {
      for (let i = 0; i < opts.warmup; i++) await zesterJob(admin, store, fun, n, jobTimeoutS);
      const samples: FanOutSample[] = [];
      for (let i = 0; i < opts.runs; i++) samples.push(await zesterJob(admin, store, fun, n, jobTimeoutS));
      return samples;
    };
    log("test.ping");
    out.ping = await measure("test.ping");
    log("state.apply");
    out.apply = await measure("state.apply");
  } catch (err) {
    out.error = errText(err).split("\n")[0];
    process.stderr.write(`bench: cluster ${n} ${label} failed: ${out.error}\n`);
  } finally {
    await admin.close().catch(() => {});
    await Promise.all(hosts.map((h) => h.stop(60_000, "stdin")));
    await master.stop();
    await Promise.all(servers.map((s) => s.stop()));
  }
  return out;
}

function median(samples: FanOutSample[], key: "allMs" | "doneMs"): number {
  const v = samples.map((s) => s[key]).filter((x): x is number => typeof x === "number");
  return v.length > 0 ? stats(v).median : Number.NaN;
}

export async function clusterFanOut(opts: ScenarioOptions): Promise<ScenarioResult> {
  const sizes = process.env.ZESTER_BENCH_PEELS
    ? fleetSizesFromEnv()
    : [Math.min(1_000, fleetSizesFromEnv().at(-1)!)];
  const work = await mkdtemp(join(tmpdir(), "zester-bench-cluster-"));
  const children = new Children();
  const rows: string[][] = [];
  try {
    const statesDir = join(work, "states");
    await mkdir(statesDir, { recursive: true });
    await writeFile(join(statesDir, "top.zy"), "base:\n  '*':\n    - bench\n");
    await writeFile(join(statesDir, "bench.zy"), "bench-nop:\n  test.nop: []\n");
    const single = await benchAuth(join(work, "single"));
    const clustered = await clusterAuth(join(work, "cluster"));
    for (const n of sizes) {
      await ensurePeelCreds(single.dir, n);
      await ensurePeelCreds(clustered.dir, n);
      const one = await phase(
        "single server",
        n,
        opts,
        single,
        [await startServer(children, single)],
        work,
        children,
      );
      const three = await phase(
        "3-node cluster, R3",
        n,
        opts,
        clustered,
        await startCluster(children, clustered),
        work,
        children,
      );
      if (three.replicas !== undefined && three.replicas < 3 && !three.error)
        three.error = `KV_jobs is R${three.replicas}, not R3`;
      for (const [what, key] of [
        ["test.ping", "ping"],
        ["state.apply", "apply"],
      ] as const) {
        const a = median(one[key], "allMs");
        const b = median(three[key], "allMs");
        rows.push([
          n.toLocaleString("en"),
          `\`${what}\``,
          one.error ? `failed: ${one.error}` : fmtMs(a),
          three.error ? `failed: ${three.error}` : fmtMs(b),
          Number.isFinite(a) && Number.isFinite(b) ? `${(b / a).toFixed(2)}×` : "-",
          `${fmtMs(median(one[key], "doneMs"))} / ${fmtMs(median(three[key], "doneMs"))}`,
          `${one[key].reduce((x, s) => x + s.failed, 0)} / ${three[key].reduce((x, s) => x + s.failed, 0)}`,
          `${fmtMs(one.startMs)} / ${fmtMs(three.startMs)}`,
          `R${one.replicas ?? "?"} / R${three.replicas ?? "?"}`,
        ]);
      }
    }
    return {
      title: `Job fan-out on a 3-node cluster (R3) vs one server, ${sizes.map((n) => n.toLocaleString("en")).join(" / ")} peels`,
      markdown: [
        table(
          [
            "peels",
            "job to `*`",
            "all returns, single server (median)",
            "all returns, 3-node R3 (median)",
            "× single server",
            "record finished (single / cluster)",
            "failed or missing returns (single / cluster)",
            "fleet start (single / cluster)",
            "KV_jobs replicas",
          ],
          rows,
        ),
        "",
        `Both measured in this run on this machine (all three nodes, the master and the fleet share ` +
          `its cores), ${opts.runs} runs after ${opts.warmup} warm-up each; the cluster's buckets ` +
          `and streams are R3 (the master's replicas: auto). Times as in fan-out: dispatch request ` +
          `to the last return seen through the \`job-returns\` watch.`,
      ].join("\n"),
    };
  } finally {
    await children.stopAll();
    await rm(work, { recursive: true, force: true });
  }
}
