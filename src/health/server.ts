/**
 * The opt-in health listener of the master and the peel: `/healthz` (the process is alive),
 * `/readyz` (it can do its job: connected to NATS, ...) and `/metrics` (Prometheus text). Plain
 * HTTP meant for a local scraper or a load balancer's probe; it serves no data beyond counters.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { errText } from "../util/errors.js";
import type { Metrics } from "./metrics.js";

export interface Readiness {
  ready: boolean;
  /** Why not, when not ready: shown in the 503 body. */
  reason?: string;
}

export interface HealthServerOptions {
  host?: string;
  port: number;
  metrics: Metrics;
  ready: () => Readiness;
}

export interface HealthServer {
  /** The bound port (useful with port 0). */
  port: number;
  close(): Promise<void>;
}

/** `HOST:PORT`, `:PORT` or `PORT`; IPv6 hosts in brackets (`[::1]:9100`). */
export function parseListen(v: string): { host?: string; port: number } | undefined {
  const m = /^(?:(.*):)?(\d+)$/.exec(v.trim());
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535) return undefined;
  return m[1] ? { host: m[1].replace(/^\[|\]$/g, ""), port } : { port };
}

export async function startHealthServer(opts: HealthServerOptions): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (code: number, body: string, type = "text/plain; charset=utf-8") => {
      res.writeHead(code, { "content-type": type, "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return send(405, "method not allowed\n");
    }
    switch (path) {
      case "/healthz":
        return send(200, "ok\n");
      case "/readyz": {
        const r = opts.ready();
        return r.ready ? send(200, "ready\n") : send(503, `not ready: ${r.reason ?? "starting"}\n`);
      }
      case "/metrics":
        opts.metrics.render().then(
          (text) => send(200, text, "text/plain; version=0.0.4; charset=utf-8"),
          (err: unknown) => send(500, `metrics failed: ${errText(err)}\n`),
        );
        return;
      default:
        return send(404, "not found: try /healthz, /readyz or /metrics\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
