/**
 * A real JetStream cluster for tests: N nats-server processes on this machine, routed to each
 * other over TLS, with one operator, one account set and one full resolver each, as written by
 * `initAuthDir({ cluster })` (the files `zester nats-auth init --cluster N` writes). Nodes can be
 * killed (SIGKILL, a crash) and started again on the same files.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { initAuthDir } from "../../src/auth/auth-dir.js";
import { type ClusterNode, clusterNodes } from "../../src/auth/cluster-layout.js";
import type { Role } from "../../src/auth/permissions.js";
import { connect } from "../../src/bus/connect.js";
import { peelInboxPrefix } from "../../src/bus/names.js";
import { CA_FILES } from "../../src/ca/ca.js";
import { credsFileIn, freePort, launch, type Proc, type StartedNats } from "./nats.js";
import { waitFor } from "./wait.js";

export interface StartedCluster extends Omit<StartedNats, "url" | "port"> {
  /** Every node's client URL, for a servers list. */
  urls: string[];
  /** The same list as `url` for code that takes `string | string[]`. */
  url: string[];
  nodes: ClusterNode[];
  /** SIGKILL one node (0-based), as a crash or a lost host would. */
  kill(index: number): Promise<void>;
  /** Starts a killed node again with its files (JetStream data and resolver kept). */
  revive(index: number): Promise<void>;
  /** Resolves once JetStream answers through a fresh connection (a meta leader is elected). */
  jetStreamReady(timeoutMs?: number): Promise<void>;
}

export async function startNatsCluster(n = 3): Promise<StartedCluster> {
  const authDir = await mkdtemp(join(tmpdir(), "zester-cluster-"));
  const procs: (Proc | undefined)[] = [];
  try {
    const localPorts: { client: number; route: number }[] = [];
    const taken = new Set<number>();
    while (localPorts.length < n) {
      const client = await freePort();
      const route = await freePort();
      if (client === route || taken.has(client) || taken.has(route)) continue;
      taken.add(client).add(route);
      localPorts.push({ client, route });
    }
    const cluster = { nodes: n, localPorts };
    await initAuthDir({ dir: authDir, listenHost: "127.0.0.1", cluster });
    const nodes = clusterNodes(cluster, 0, "127.0.0.1");
    const start = async (i: number) => {
      const node = nodes[i]!;
      procs[i] = await launch(["-c", join(authDir, node.configFile)], node.port);
    };
    await Promise.all(nodes.map((_, i) => start(i)));
    const urls = nodes.map((x) => x.url);
    const caFile = join(authDir, CA_FILES.caCert);
    const credsFile = credsFileIn(authDir);
    const connectAs = async (who: Role | string): Promise<NatsConnection> => {
      const peel = who !== "master" && who !== "admin";
      return connect({
        servers: urls,
        caFile,
        credsFile: await credsFile(who),
        ...(peel ? { inboxPrefix: peelInboxPrefix(who) } : {}),
      });
    };
    const jetStreamReady = async (timeoutMs = 30_000) => {
      const nc = await connectAs("master");
      try {
        await waitFor(
          "a JetStream meta leader",
          async () => {
            await (await jetstreamManager(nc)).getAccountInfo();
            return true;
          },
          { ms: timeoutMs, intervalMs: 250, ignoreErrors: true },
        );
      } finally {
        await nc.close();
      }
    };
    await jetStreamReady();
    return {
      urls,
      url: urls,
      nodes,
      authDir,
      caFile,
      credsFile,
      connectAs,
      jetStreamReady,
      output: () => procs.map((p, i) => `--- ${nodes[i]!.name}\n${p?.output() ?? "(down)"}`).join("\n"),
      async kill(i) {
        const p = procs[i];
        if (!p) return;
        p.child.kill("SIGKILL");
        await p.stop();
        procs[i] = undefined;
      },
      async revive(i) {
        if (!procs[i]) await start(i);
      },
      async stop() {
        await Promise.all(procs.map((p) => p?.stop()));
        await rm(authDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await Promise.all(procs.map((p) => p?.stop()));
    await rm(authDir, { recursive: true, force: true });
    throw err;
  }
}
