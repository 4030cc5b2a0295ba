/**
 * How many copies JetStream keeps of every bucket and stream. `auto` follows the server: R1 on a
 * single server, R3 once it reports a cluster of three or more nodes. An explicit count is a
 * decision the operator made, so bootstrap also moves existing streams to it (the R1 → R3 move of
 * docs/scale.md); `auto` never changes what exists, it only reports the difference.
 */
import type { JetStreamManager, StreamInfo } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";

export type ReplicasSetting = number | "auto";

/** JetStream keeps at most 5 replicas; an even count buys nothing over the odd one below it. */
export const MAX_REPLICAS = 5;

/** Parses a flag, env or file value: `auto` or 1-5. */
export function parseReplicas(value: string | number): ReplicasSetting {
  if (value === "auto") return "auto";
  const n = typeof value === "number" ? value : /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_REPLICAS) {
    throw new Error(
      `invalid replicas ${JSON.stringify(value)}: expected auto or a count from 1 to ${MAX_REPLICAS}`,
    );
  }
  return n;
}

/**
 * Nodes in the cluster of the server this connection reached, as it told the client on connect:
 * 1 without a cluster, else the client URLs it gossips (its own included). A node that is down
 * at that moment is not counted.
 */
export function reportedClusterSize(nc: NatsConnection): number {
  const info = nc.info;
  if (!info?.cluster) return 1;
  return Math.max(1, new Set(info.connect_urls ?? []).size);
}

export function resolveReplicas(setting: ReplicasSetting, nc: NatsConnection): number {
  if (setting !== "auto") return setting;
  return reportedClusterSize(nc) >= 3 ? 3 : 1;
}

export interface ReplicaChange {
  stream: string;
  from: number;
  to: number;
}

/** Moves one existing stream to `replicas` copies; undefined when it already has them. */
export async function moveReplicas(
  jsm: JetStreamManager,
  info: StreamInfo,
  replicas: number,
): Promise<ReplicaChange | undefined> {
  const from = info.config.num_replicas ?? 1;
  if (from === replicas) return undefined;
  await jsm.streams.update(info.config.name, { num_replicas: replicas });
  return { stream: info.config.name, from, to: replicas };
}

/** Log lines for what bootstrap did or found about replicas. */
export function describeReplicas(r: {
  replicas: number;
  moved: readonly ReplicaChange[];
  mismatched: readonly ReplicaChange[];
}): string[] {
  const lines = r.moved.map((m) => `moved ${m.stream} from R${m.from} to R${m.to}`);
  if (r.mismatched.length > 0) {
    const list = r.mismatched.map((m) => `${m.stream} R${m.from}`).join(", ");
    lines.push(
      `warning: ${r.mismatched.length} stream(s) differ from R${r.replicas} (${list}); ` +
        `start a master with --replicas ${r.replicas} to move them (docs/scale.md)`,
    );
  }
  return lines;
}
