/**
 * Where the nodes of a generated JetStream cluster listen and how they find each other. Two
 * shapes: one node per host (`hosts`, the same ports on each), or all nodes on this machine
 * (consecutive ports), which is what `zester dev --cluster` and the tests run.
 */
import { CA_FILES } from "../ca/files.js";
import type { ServerConfigInput } from "./server-config.js";

export const DEFAULT_CLUSTER_PORT = 6222;
export const DEFAULT_CLUSTER_NAME = "zester";
/** RAFT needs a majority: 3 nodes survive one loss, 5 survive two; more only cost latency. */
export const MAX_CLUSTER_NODES = 9;

export interface ClusterOptions {
  /** Number of nodes (1 to MAX_CLUSTER_NODES). */
  nodes: number;
  /** One address per node (DNS name or IP); absent = every node on this machine. */
  hosts?: readonly string[];
  /** Route port (the first one when every node runs on this machine). */
  clusterPort?: number;
  name?: string;
  /** Client and route port of each node, when all are local and the ports are picked elsewhere. */
  localPorts?: readonly { client: number; route: number }[];
}

export interface ClusterNode {
  /** `zester-nats-<i>`: the server_name, unique in the cluster. */
  name: string;
  /** Client URL of the node, for servers lists. */
  url: string;
  port: number;
  configFile: string;
  resolverDir: string;
  jetstreamDir: string;
  config: Pick<
    ServerConfigInput,
    "port" | "host" | "serverName" | "resolverDir" | "jetstreamDir" | "cluster"
  >;
}

export function clusterConfigFile(index: number): string {
  return `nats-server-${index}.conf`;
}

export function checkClusterOptions(c: ClusterOptions): void {
  if (!Number.isInteger(c.nodes) || c.nodes < 1 || c.nodes > MAX_CLUSTER_NODES) {
    throw new Error(`--cluster must be a node count from 1 to ${MAX_CLUSTER_NODES}, not ${c.nodes}`);
  }
  if (c.hosts && c.hosts.length > 0 && c.hosts.length !== c.nodes) {
    throw new Error(`--cluster ${c.nodes} needs ${c.nodes} --cluster-host values, got ${c.hosts.length}`);
  }
}

/** The nodes of `c`; `port` is the client port (the first one when all nodes are local). */
export function clusterNodes(c: ClusterOptions, port: number, listenHost?: string): ClusterNode[] {
  checkClusterOptions(c);
  const routePort = c.clusterPort ?? DEFAULT_CLUSTER_PORT;
  const local = !c.hosts || c.hosts.length === 0;
  const hostOf = (i: number) => (local ? (listenHost ?? "127.0.0.1") : c.hosts![i]!);
  const portOf = (i: number) => c.localPorts?.[i]?.client ?? (local ? port + i : port);
  const routePortOf = (i: number) => c.localPorts?.[i]?.route ?? (local ? routePort + i : routePort);
  const routes = Array.from({ length: c.nodes }, (_, i) => `nats-route://${hostOf(i)}:${routePortOf(i)}`);
  return Array.from({ length: c.nodes }, (_, i) => {
    const name = `zester-nats-${i + 1}`;
    const resolverDir = `resolver/${name}`;
    const jetstreamDir = `jetstream/${name}`;
    const host = listenHost;
    return {
      name,
      url: `tls://${hostOf(i)}:${portOf(i)}`,
      port: portOf(i),
      configFile: clusterConfigFile(i + 1),
      resolverDir,
      jetstreamDir,
      config: {
        port: portOf(i),
        ...(host !== undefined ? { host } : {}),
        serverName: name,
        resolverDir,
        jetstreamDir,
        cluster: {
          name: c.name ?? DEFAULT_CLUSTER_NAME,
          listen: local ? `${hostOf(i)}:${routePortOf(i)}` : `${listenHost ?? "0.0.0.0"}:${routePort}`,
          routes: routes.filter((_, j) => j !== i),
          caFile: CA_FILES.caCert,
        },
      },
    };
  });
}
