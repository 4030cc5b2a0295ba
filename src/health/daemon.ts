/** The daemons' health listener: metrics and readiness of one master or one peel, served over HTTP. */
import type { Master } from "../master/master.js";
import type { Peel } from "../peel/peel.js";
import { masterHealth } from "./master-metrics.js";
import { peelHealth } from "./peel-metrics.js";
import { startHealthServer } from "./server.js";

export interface ServedHealth {
  url: string;
  close(): Promise<void>;
}

function urlOf(host: string | undefined, port: number): string {
  const h = host === undefined || host === "" ? "0.0.0.0" : host.includes(":") ? `[${host}]` : host;
  return `http://${h}:${port}`;
}

/** Call after master.start(): the observer reads the master's connection and fleet view. */
export async function serveMasterHealth(
  master: Master,
  at: { host?: string; port: number },
): Promise<ServedHealth> {
  const h = await masterHealth(master);
  const s = await startHealthServer({ ...at, metrics: h.metrics, ready: h.ready });
  return {
    url: urlOf(at.host, s.port),
    close: async () => {
      h.stop();
      await s.close();
    },
  };
}

/** Call before peel.start(): the peel's events from its first connection on are counted. */
export async function servePeelHealth(
  peel: Peel,
  at: { host?: string; port: number },
): Promise<ServedHealth> {
  const h = peelHealth(peel);
  const s = await startHealthServer({ ...at, metrics: h.metrics, ready: h.ready });
  return {
    url: urlOf(at.host, s.port),
    close: async () => {
      h.detach();
      await s.close();
    },
  };
}
