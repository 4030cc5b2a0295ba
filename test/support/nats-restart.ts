/**
 * A nats-server that can be stopped and started again on the same port, config and data dirs
 * (resolver + JetStream), to prove that something survives a server restart. Same setup as
 * startNats(): TLS, operator mode with the full resolver, made by initAuthDir.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AUTH_FILES, initAuthDir } from "../../src/auth/auth-dir.js";
import type { Role } from "../../src/auth/permissions.js";
import { CA_FILES } from "../../src/ca/ca.js";
import { credsFileIn, freePort, probeInfo } from "./nats.js";

export interface RestartableNats {
  url: string;
  port: number;
  authDir: string;
  caFile: string;
  output(): string;
  /** Stops the server (SIGTERM, then SIGKILL) and starts it again with the same files. */
  restart(): Promise<void>;
  /** SIGKILL (a crash: no clean shutdown of JetStream), then starts it again with the same files. */
  crash(): Promise<void>;
  /** Creds for a role, or a peel's least-privilege creds (issued on first use). */
  credsFile(who: Role | string): Promise<string>;
  /** Stops the server and leaves it down (an outage to work through) until start(). */
  halt(): Promise<void>;
  /** Starts a halted server again with the same files. */
  start(): Promise<void>;
  /** Stops the server and removes the auth dir. */
  stop(): Promise<void>;
}

export async function startRestartableNats(): Promise<RestartableNats> {
  const authDir = await mkdtemp(join(tmpdir(), "zester-nats-r-"));
  const port = await freePort();
  await initAuthDir({ dir: authDir, port, listenHost: "127.0.0.1" });
  let out = "";
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const killOnExit = () => child?.kill("SIGKILL");
  process.on("exit", killOnExit);

  const start = async () => {
    const c = spawn("nats-server", ["-c", join(authDir, AUTH_FILES.serverConfig)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = c;
    let gone = false;
    exited = new Promise<void>((resolve) => {
      c.on("exit", () => {
        gone = true;
        resolve();
      });
      c.on("error", (err) => {
        out += `spawn error: ${err.message}\n`;
        gone = true;
        resolve();
      });
    });
    c.stdout?.on("data", (d: Buffer) => {
      out += d.toString("utf8");
    });
    c.stderr?.on("data", (d: Buffer) => {
      out += d.toString("utf8");
    });
    const deadline = Date.now() + 15_000;
    while (!(await probeInfo(port))) {
      if (gone || Date.now() > deadline) throw new Error(`nats-server did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const halt = async (signal: NodeJS.Signals = "SIGTERM") => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill(signal);
    const timer = setTimeout(() => c.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };

  try {
    await start();
  } catch (err) {
    await halt();
    await rm(authDir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `tls://127.0.0.1:${port}`,
    port,
    authDir,
    caFile: join(authDir, CA_FILES.caCert),
    output: () => out,
    async restart() {
      await halt();
      await start();
    },
    async crash() {
      await halt("SIGKILL");
      await start();
    },
    credsFile: credsFileIn(authDir),
    halt: () => halt(),
    start,
    async stop() {
      await halt();
      process.off("exit", killOnExit);
      await rm(authDir, { recursive: true, force: true });
    },
  };
}
