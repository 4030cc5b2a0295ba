/**
 * `zester-master` as a child process (the built entry point), for tests that must kill a master
 * the way a crash does (SIGKILL: no clean-up, its heartbeat and leases left behind).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { ROOT, requireBuilt } from "./built.js";
import { waitFor } from "./wait.js";

export const ZESTER_MASTER_BIN = join(ROOT, "dist/bin/zester-master.js");

export interface MasterProcess {
  child: ChildProcess;
  log(): string;
  /** Sends `signal` and waits for the exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

export async function startMasterProcess(
  nats: { url: string | string[]; authDir: string },
  args: string[],
): Promise<MasterProcess> {
  requireBuilt(ZESTER_MASTER_BIN);
  const url = Array.isArray(nats.url) ? nats.url.join(",") : nats.url;
  const child = spawn(
    process.execPath,
    [ZESTER_MASTER_BIN, "--nats-url", url, "--auth-dir", nats.authDir, ...args],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  child.stderr?.on("data", (d: Buffer) => {
    log += d.toString("utf8");
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const killOnExit = () => child.kill("SIGKILL");
  process.on("exit", killOnExit);
  const kill = async (signal: NodeJS.Signals) => {
    process.off("exit", killOnExit);
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  try {
    await waitFor("zester-master to start", () => /running \(signing key/.test(log), {
      ms: 60_000,
      context: () => log,
      intervalMs: 100,
    });
  } catch (err) {
    await kill("SIGKILL");
    throw err;
  }
  return { child, log: () => log, kill };
}
