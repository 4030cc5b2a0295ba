/**
 * Real nats-server instances for tests: random port, temp dir, TLS and operator-mode JWTs made
 * by Zester's own auth and CA code. Every server is killed on stop() and, as a last resort, when
 * the test process exits, so a failing test never leaks a server.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { AUTH_FILES, initAuthDir, issuePeelCredsFile, peelCredsPath } from "../../src/auth/auth-dir.js";
import type { Role } from "../../src/auth/permissions.js";
import { connect } from "../../src/bus/connect.js";
import { peelInboxPrefix } from "../../src/bus/names.js";
import { CA_FILES } from "../../src/ca/ca.js";
import { statOrUndefined } from "../../src/util/files.js";

export interface StartedNats {
  /** `tls://127.0.0.1:<port>` */
  url: string;
  port: number;
  authDir: string;
  caFile: string;
  /** Creds for a role, or least-privilege creds for a peel id (issued on first use). */
  credsFile(who: Role | string): Promise<string>;
  /** A TLS connection with that role's or peel's creds (peels get their own inbox prefix). */
  connectAs(who: Role | string): Promise<NatsConnection>;
  /** Everything the server printed so far (for assertions and failure messages). */
  output(): string;
  stop(): Promise<void>;
}

export interface StartedPlainNats {
  /** `nats://127.0.0.1:<port>` */
  url: string;
  port: number;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr && typeof addr === "object") resolve(addr.port);
        else reject(new Error("no port assigned"));
      });
    });
  });
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/** The first of `count` consecutive free ports (for servers that take "N consecutive from --port"). */
export async function freePortRun(count: number): Promise<number> {
  for (;;) {
    const first = await freePort();
    if (first + count > 65536) continue;
    let all = true;
    for (let p = first + 1; p < first + count && all; p++) all = await bindable(p);
    if (all) return first;
  }
}

/** Resolves once the server answers a TCP connection with its INFO line. */
export function probeInfo(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host: "127.0.0.1" });
    let buf = "";
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.on("data", (d) => {
      buf += d.toString("utf8");
      if (buf.includes("\r\n")) done(buf.startsWith("INFO "));
    });
    sock.on("error", () => done(false));
  });
}

export interface Proc {
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

export async function launch(args: string[], port: number, cleanupDir?: string): Promise<Proc> {
  const child = spawn("nats-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString("utf8");
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString("utf8");
  });
  let exited = false;
  const exitedP = new Promise<void>((resolve) => {
    child.on("exit", () => {
      exited = true;
      resolve();
    });
    child.on("error", (err) => {
      out += `spawn error: ${err.message}\n`;
      exited = true;
      resolve();
    });
  });
  const killOnExit = () => {
    if (!exited) child.kill("SIGKILL");
  };
  process.on("exit", killOnExit);
  // A worker killed by a signal runs no exit handlers. This watchdog holds a pipe from us; when
  // the pipe closes because we died, it kills the server.
  const watchdog = spawn("sh", ["-c", `read _; kill -9 ${child.pid} 2>/dev/null`], {
    stdio: ["pipe", "ignore", "ignore"],
  });
  watchdog.on("error", () => {});
  watchdog.unref();
  (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();

  const stop = async () => {
    process.off("exit", killOnExit);
    watchdog.kill("SIGTERM");
    if (!exited) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exitedP;
      clearTimeout(timer);
    }
    if (cleanupDir) await rm(cleanupDir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 15_000;
  while (!(await probeInfo(port))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`nats-server did not start (args: ${args.join(" ")}):\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, output: () => out, stop };
}

/** Creds for a role, or least-privilege creds for a peel id issued from `authDir` on first use. */
export function credsFileIn(authDir: string): (who: Role | string) => Promise<string> {
  return async (who) => {
    if (who === "master") return join(authDir, AUTH_FILES.masterCreds);
    if (who === "admin") return join(authDir, AUTH_FILES.adminCreds);
    const path = peelCredsPath(authDir, who);
    if (await statOrUndefined(path)) return path;
    return issuePeelCredsFile(authDir, who);
  };
}

/** A TLS, operator-mode, JetStream-enabled nats-server configured by `initAuthDir`. */
export async function startNats(): Promise<StartedNats> {
  const authDir = await mkdtemp(join(tmpdir(), "zester-nats-"));
  try {
    const port = await freePort();
    await initAuthDir({ dir: authDir, port, listenHost: "127.0.0.1" });
    const proc = await launch(["-c", join(authDir, AUTH_FILES.serverConfig)], port, authDir);
    const credsFile = credsFileIn(authDir);

    return {
      url: `tls://127.0.0.1:${port}`,
      port,
      authDir,
      caFile: join(authDir, CA_FILES.caCert),
      output: proc.output,
      stop: proc.stop,
      async connectAs(who) {
        const creds = await credsFile(who);
        const peel = who !== "master" && who !== "admin";
        return connect({
          servers: `tls://127.0.0.1:${port}`,
          caFile: join(authDir, CA_FILES.caCert),
          credsFile: creds,
          ...(peel ? { inboxPrefix: peelInboxPrefix(who) } : {}),
        });
      },
      credsFile,
    };
  } catch (err) {
    await rm(authDir, { recursive: true, force: true });
    throw err;
  }
}

/** A plaintext server without auth: only for proving that Zester refuses it. */
export async function startPlainNats(): Promise<StartedPlainNats> {
  const port = await freePort();
  const proc = await launch(["-a", "127.0.0.1", "-p", String(port)], port);
  return { url: `nats://127.0.0.1:${port}`, port, stop: proc.stop };
}

export interface Tls12OnlyServer {
  url: string;
  /** The CA that signed its certificate (so only the TLS version is wrong). */
  caFile: string;
  stop(): Promise<void>;
}

/**
 * A server that speaks just enough NATS (INFO, then a TLS upgrade) to reach the handshake, and
 * offers only TLS 1.2: what an old or downgraded server looks like to a client.
 */
export async function startTls12OnlyServer(): Promise<Tls12OnlyServer> {
  const { createCa, issueServerCert, normaliseHosts } = await import("../../src/ca/ca.js");
  const { TLSSocket } = await import("node:tls");
  const { writeFile } = await import("node:fs/promises");
  const dir = await mkdtemp(join(tmpdir(), "zester-tls12-"));
  const ca = await createCa();
  const cert = await issueServerCert(ca, normaliseHosts([]));
  const caFile = join(dir, "ca.crt");
  await writeFile(caFile, ca.certPem);
  const srv = createServer((sock) => {
    sock.on("error", () => {});
    sock.write(
      'INFO {"server_id":"x","version":"2.9.10","proto":1,"tls_required":true,"max_payload":1048576}\r\n',
    );
    const t = new TLSSocket(sock, {
      isServer: true,
      key: cert.keyPem,
      cert: cert.certPem,
      minVersion: "TLSv1.2",
      maxVersion: "TLSv1.2",
    });
    t.on("error", () => {});
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  return {
    url: `tls://127.0.0.1:${port}`,
    caFile,
    stop: async () => {
      srv.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
