/** `zester-master [options]` (also `zester master`): runs a Master until SIGINT or SIGTERM. */

import { Command } from "commander";
import { DEFAULT_STATES_DIR, Master } from "../master/master.js";
import { DEFAULT_SETTINGS_DIR } from "../settings/source.js";
import { addConnectOptions, type ConnectFlags, resolveConnect } from "./connect-options.js";
import { UsageError } from "./errors.js";
import { runProgram } from "./nats-auth.js";

interface DaemonOptions extends ConnectFlags {
  id?: string;
  statesDir?: string;
  publishInterval: string;
  unreachableAfter: string;
  defaultTimeout: string;
  settingsDir?: string;
  enrollListen?: string;
  enrollCert?: string;
  enrollKey?: string;
  enrollMaxPending?: string;
  enrollRate?: string;
}

/** `HOST:PORT`, `:PORT` or `PORT`. */
function listenAddress(v: string): { host?: string; port: number } {
  const m = /^(?:(.*):)?(\d+)$/.exec(v);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535)
    throw new UsageError(`--enroll-listen ${JSON.stringify(v)}: expected HOST:PORT or PORT`);
  return m[1] ? { host: m[1].replace(/^\[|\]$/g, ""), port } : { port };
}

function seconds(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${name} must be a positive number of seconds`);
  return n;
}

function count(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${name} must be a whole number ≥ 0`);
  return n;
}

function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
      resolve(sig);
    };
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
  });
}

export async function run(argv: string[]): Promise<number> {
  const program = addConnectOptions(
    new Command("zester-master")
      .description("Zester control plane: target resolution, job dispatch and tracking, state publishing")
      .option("--id <id>", "master id, unique per running master (default <hostname>-<pid>)")
      .option(
        "--states-dir <dir>",
        `states tree to publish (env ZESTER_STATES_DIR, default ${DEFAULT_STATES_DIR})`,
      )
      .option("--publish-interval <s>", "seconds between state publishes", "30")
      .option("--unreachable-after <s>", "seconds after which a silent, offline peel is unreachable", "10")
      .option("--default-timeout <s>", "job timeout when the request names none", "60")
      .option(
        "--settings-dir <dir>",
        `settings tree to publish (env ZESTER_SETTINGS_DIR, default ${DEFAULT_SETTINGS_DIR})`,
      )
      .option(
        "--enroll-listen <addr>",
        "serve peel enrollment over HTTPS on HOST:PORT (e.g. :8443); off by default",
      )
      .option(
        "--enroll-cert <file>",
        "PEM certificate for the enrollment listener (default: issued by the auth dir's CA)",
      )
      .option("--enroll-key <file>", "PEM key for --enroll-cert")
      .option("--enroll-max-pending <n>", "pending requests at which new ones get 429 (0: no cap)", "1000")
      .option(
        "--enroll-rate <n>",
        "challenge + enroll requests per minute per client address (0: no limit)",
        "20",
      ),
    "master",
  ).action(async (opts: DaemonOptions) => {
    const conn = resolveConnect(opts, "master");
    const master = new Master({
      ...(opts.id !== undefined ? { id: opts.id } : {}),
      servers: conn.servers,
      credsFile: conn.credsFile,
      ...(conn.caFile !== undefined ? { caFile: conn.caFile } : {}),
      authDir: conn.authDir,
      statesDir: opts.statesDir ?? (process.env.ZESTER_STATES_DIR || DEFAULT_STATES_DIR),
      publishIntervalMs: seconds("--publish-interval", opts.publishInterval) * 1000,
      unreachableAfterMs: seconds("--unreachable-after", opts.unreachableAfter) * 1000,
      defaultTimeoutS: seconds("--default-timeout", opts.defaultTimeout),
      settingsDir: opts.settingsDir ?? (process.env.ZESTER_SETTINGS_DIR || DEFAULT_SETTINGS_DIR),
      log: (m) => process.stderr.write(`${new Date().toISOString()} master: ${m}\n`),
      ...(opts.enrollListen !== undefined
        ? {
            enroll: {
              ...listenAddress(opts.enrollListen),
              ...(opts.enrollCert !== undefined ? { certFile: opts.enrollCert } : {}),
              ...(opts.enrollKey !== undefined ? { keyFile: opts.enrollKey } : {}),
              maxPending: count("--enroll-max-pending", opts.enrollMaxPending ?? "1000"),
              requestsPerMinute: count("--enroll-rate", opts.enrollRate ?? "20"),
            },
          }
        : {}),
    });
    await master.start();
    process.stderr.write(`zester-master ${master.id}: running (signing key ${master.publicKey})\n`);
    const sig = await untilSignal();
    process.stderr.write(`zester-master ${master.id}: ${sig}, stopping\n`);
    await master.stop();
  });
  return runProgram(program, argv);
}
