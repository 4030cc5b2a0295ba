/**
 * `zester dev`: a whole fleet on this machine for trying Zester — a TLS, operator-mode
 * nats-server, a master and one peel (this machine) — set up from nothing in a local folder.
 * With `--once` it applies the states tree through the fleet, prints the result and tears
 * everything down; otherwise it keeps running until Ctrl-C.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createConnection } from "node:net";
import { join, resolve } from "node:path";
import { AUTH_FILES, initAuthDir, issuePeelCredsFile, peelCredsPath } from "../auth/auth-dir.js";
import { clusterNodes, MAX_CLUSTER_NODES } from "../auth/cluster-layout.js";
import { isValidPeelId } from "../bus/names.js";
import { ensureMasterCurveKey } from "../settings/keys.js";
import { errText } from "../util/errors.js";
import { statOrUndefined } from "../util/files.js";
import { UsageError } from "./errors.js";

const USAGE = `Usage: zester dev [--dir DIR] [--port N] [--states-dir DIR] [--settings-dir DIR]
                  [--reactor-dir DIR] [--peels N] [--id BASE] [--cluster N] [--once [FUN ...]]

Starts nats-server (TLS, operator JWTs), a master and N peels on this machine (default 3, named
BASE-1..BASE-N, BASE "dev"; one peel is named BASE), all set up in DIR (default ./.zester-dev;
reused when it exists). It applies the states tree (default examples/states, settings from
examples/settings) to every peel through the fleet, sends the operator event dev/hello that the
example reactor rules (default examples/reactor) react to, prints the results and the commands
to try next, and runs until Ctrl-C. --once runs FUN instead (default state.apply) and stops; the exit
code is the job's. --cluster N runs a JetStream cluster of N nats-servers instead of one
(client ports N consecutive from --port, routes from 6222; buckets and streams get R3 from 3
nodes on); DIR then holds nats-server-1..N.conf (docs/scale.md).
`;

interface DevOptions {
  dir: string;
  port: number;
  statesDir: string;
  settingsDir: string;
  reactorDir: string;
  id: string;
  peels: number;
  /** Nodes of a local JetStream cluster; 1 = a single server. */
  cluster: number;
  once?: string[];
}

function parse(argv: string[]): DevOptions | "help" {
  const o: DevOptions = {
    dir: resolve(".zester-dev"),
    port: 4222,
    statesDir: resolve("examples/states"),
    settingsDir: resolve("examples/settings"),
    reactorDir: resolve("examples/reactor"),
    id: "dev",
    peels: 3,
    cluster: 1,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === "--help" || a === "-h") return "help";
    else if (a === "--dir") o.dir = resolve(value());
    else if (a === "--port") {
      o.port = Number(value());
      if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535)
        throw new UsageError("--port must be 1-65535");
    } else if (a === "--states-dir") o.statesDir = resolve(value());
    else if (a === "--settings-dir") o.settingsDir = resolve(value());
    else if (a === "--reactor-dir") o.reactorDir = resolve(value());
    else if (a === "--id") o.id = value();
    else if (a === "--peels") {
      o.peels = Number(value());
      if (!Number.isInteger(o.peels) || o.peels < 1 || o.peels > 100)
        throw new UsageError("--peels must be 1-100");
    } else if (a === "--cluster") {
      o.cluster = Number(value());
      if (!Number.isInteger(o.cluster) || o.cluster < 1 || o.cluster > MAX_CLUSTER_NODES)
        throw new UsageError(`--cluster must be 1-${MAX_CLUSTER_NODES}`);
    } else if (a === "--once") {
      o.once = argv.slice(i + 1);
      break;
    } else throw new UsageError(`unknown option ${a}\n${USAGE}`);
  }
  if (!isValidPeelId(o.id)) throw new UsageError(`--id ${JSON.stringify(o.id)} is not a valid peel id`);
  return o;
}

function reachable(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createConnection({ port, host: "127.0.0.1" });
    s.setTimeout(500, () => {
      s.destroy();
      res(false);
    });
    s.on("data", (d) => {
      s.destroy();
      res(d.toString().startsWith("INFO "));
    });
    s.on("error", () => res(false));
  });
}

async function startServer(config: string, port: number): Promise<ChildProcess> {
  if (await reachable(port)) {
    throw new Error(`something already listens on 127.0.0.1:${port}; stop it or pass --port`);
  }
  const child = spawn("nats-server", ["-c", config], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const failed = new Promise<never>((_, reject) => {
    child.on("error", (e) =>
      reject(
        new Error(`cannot start nats-server (${e.message}); install it, e.g. apt-get install nats-server`),
      ),
    );
    child.on("exit", (code) => reject(new Error(`nats-server exited with ${code}:\n${err}`)));
  });
  failed.catch(() => {});
  const deadline = Date.now() + 15_000;
  while (!(await Promise.race([reachable(port), failed]))) {
    if (Date.now() > deadline) throw new Error(`nats-server did not come up on port ${port}:\n${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return child;
}

/** Until JetStream answers and every node has joined (so `auto` replicas sees the whole cluster). */
async function waitForJetStream(servers: string[], credsFile: string, authDir: string): Promise<void> {
  const [{ connect }, { jetstreamManager, StorageType }, { reportedClusterSize }] = await Promise.all([
    import("../bus/connect.js"),
    import("@nats-io/jetstream"),
    import("../bus/replicas.js"),
  ]);
  const nc = await connect({ servers, credsFile, authDir });
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const jsm = await jetstreamManager(nc);
        await jsm.getAccountInfo();
        if (reportedClusterSize(nc) < servers.length)
          throw new Error(`${reportedClusterSize(nc)} of ${servers.length} nodes have joined`);
        // Routes up is not enough: a replicated stream is refused ("no suitable peers for
        // placement") until every node has joined the JetStream meta group. Place one to be sure.
        await jsm.streams.add({
          name: "ZESTER_DEV_PROBE",
          subjects: ["zester.dev.probe"],
          num_replicas: servers.length,
          storage: StorageType.Memory,
        });
        await jsm.streams.delete("ZESTER_DEV_PROBE");
        return;
      } catch (err) {
        if (Date.now() > deadline)
          throw new Error(`the cluster's JetStream did not come up: ${errText(err)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  } finally {
    await nc.close();
  }
}

/** `base` alone for one peel, `base-1` … `base-N` for several. */
function peelIds(base: string, n: number): string[] {
  return n === 1 ? [base] : Array.from({ length: n }, (_, i) => `${base}-${i + 1}`);
}

export async function run(argv: string[]): Promise<number> {
  const o = parse(argv);
  if (o === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  const log = (m: string) => process.stderr.write(`dev: ${m}\n`);
  const cluster = o.cluster > 1 ? { nodes: o.cluster } : undefined;
  const nodes = cluster
    ? clusterNodes(cluster, o.port, "127.0.0.1").map((n) => ({
        config: join(o.dir, n.configFile),
        port: n.port,
      }))
    : [{ config: join(o.dir, AUTH_FILES.serverConfig), port: o.port }];
  if (!(await statOrUndefined(nodes[0]!.config))) {
    await initAuthDir({ dir: o.dir, port: o.port, listenHost: "127.0.0.1", ...(cluster ? { cluster } : {}) });
    await ensureMasterCurveKey(o.dir);
    const confs = cluster ? `nats-server-1..${o.cluster}.conf` : "nats-server.conf";
    log(`created operator, accounts, creds, CA and ${confs} in ${o.dir}`);
  }
  const ids = peelIds(o.id, o.peels);
  for (const id of ids) {
    if (!(await statOrUndefined(peelCredsPath(o.dir, id)))) await issuePeelCredsFile(o.dir, id);
  }

  const urls = nodes.map((n) => `tls://127.0.0.1:${n.port}`);
  const url = urls.join(",");
  const servers: ChildProcess[] = [];
  const stopServers = () => {
    for (const s of servers) s.kill("SIGTERM");
  };
  try {
    for (const n of nodes) servers.push(await startServer(n.config, n.port));
    // A cluster elects its JetStream meta leader after the routes are up: wait for it.
    if (cluster) await waitForJetStream(urls, join(o.dir, AUTH_FILES.masterCreds), o.dir);
  } catch (err) {
    stopServers();
    throw err;
  }
  const [{ Master }, { Peel }] = await Promise.all([
    import("../master/master.js"),
    import("../peel/peel.js"),
  ]);
  const quiet = o.once !== undefined;
  const silent = { info: () => {}, warn: () => {}, error: (m: string) => log(`peel: ${m}`) };
  const master = new Master({
    servers: url,
    credsFile: join(o.dir, AUTH_FILES.masterCreds),
    authDir: o.dir,
    statesDir: o.statesDir,
    settingsDir: o.settingsDir,
    reactorDir: o.reactorDir,
    log: quiet ? () => {} : (m: string) => log(`master: ${m}`),
  });
  const peels = ids.map(
    (id) =>
      new Peel({
        id,
        servers: url,
        credsFile: peelCredsPath(o.dir, id),
        authDir: o.dir,
        cacheDir: join(o.dir, "peels", id),
        logger: silent,
      }),
  );
  const stop = async () => {
    await Promise.allSettled(peels.map((p) => p.stop()));
    await master.stop().catch(() => {});
    stopServers();
  };
  try {
    await master.start();
    await Promise.all(peels.map((p) => p.start()));
    await master.publishStates();
    await master.publishSettings();
    await Promise.all(peels.map((p) => p.syncStates()));
    // The master learns about peels through the facts KV watch; wait for them before targeting.
    const deadline = Date.now() + 10_000;
    while (ids.some((id) => !master.fleet.peels().includes(id)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    const connect = ["--nats-url", url, "--auth-dir", o.dir];
    const { run: runTarget } = await import("./target.js");
    // `--once --format json` still means the default job, with that option.
    const once = o.once ?? [];
    const job = once[0] !== undefined && !once[0].startsWith("-") ? once : ["state.apply", ...once];
    const code = await runTarget(["*", ...job, ...connect]);
    if (o.once !== undefined) return code;
    const { demoReaction } = await import("../reactor/demo.js");
    const demo = await demoReaction(master.connection).catch(
      (err: unknown) => `reactor: could not send dev/hello: ${errText(err)}`,
    );
    process.stdout.write(`\n${demo}\n`);
    process.stdout.write(
      `\nZester dev fleet is up: nats-server ${url}${cluster ? ` (a ${o.cluster}-node cluster)` : ""}, a master, peels ${ids.join(", ")}\n` +
        `(states: ${o.statesDir}, settings: ${o.settingsDir}, reactor: ${o.reactorDir}). In another shell:\n\n` +
        `  export ZESTER_NATS_URL=${url} ZESTER_AUTH_DIR=${o.dir}\n` +
        `  node dist/bin/zester.js peel list\n` +
        `  node dist/bin/zester.js '*' test.ping\n` +
        `  node dist/bin/zester.js '${ids[0]}' state.apply --test\n` +
        `  node dist/bin/zester.js 'G@os_family:Debian' cmd.run 'uptime'\n` +
        `  node dist/bin/zester.js job list\n` +
        `  node dist/bin/zester.js event send dev/hello who=me && node dist/bin/zester.js reactor log\n` +
        `  node dist/bin/zester.js event watch --since 10m\n\nCtrl-C stops everything.\n`,
    );
    await new Promise<void>((res) => {
      process.once("SIGINT", res);
      process.once("SIGTERM", res);
    });
    return code;
  } finally {
    await stop();
  }
}
