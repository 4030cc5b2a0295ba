/**
 * `zester nats-auth init`: everything a NATS server and the Zester processes need to trust each
 * other, generated offline (no server is contacted).
 */

import { join } from "node:path";
import { Command, CommanderError } from "commander";
import { accountDir, addAccount, pushAccount } from "../auth/accounts.js";
import { AUTH_FILES, DEFAULT_NATS_PORT, initAuthDir } from "../auth/auth-dir.js";
import {
  type ClusterOptions,
  checkClusterOptions,
  clusterNodes,
  MAX_CLUSTER_NODES,
} from "../auth/cluster-layout.js";
import { ensureMasterCurveKey } from "../settings/keys.js";
import { errText } from "../util/errors.js";
import { UsageError } from "./errors.js";

export function parsePort(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 65535) {
    throw new UsageError(`invalid port ${JSON.stringify(value)}: expected an integer from 1 to 65535`);
  }
  return n;
}

/** Runs a commander program without letting it exit the process or print errors itself. */
export async function runProgram(program: Command, argv: string[]): Promise<number> {
  program.exitOverride();
  program.configureOutput({
    writeOut: (s) => process.stdout.write(s),
    writeErr: (s) => process.stderr.write(s),
    outputError: () => {},
  });
  const quiet = (cmds: readonly Command[]): void => {
    for (const sub of cmds) {
      sub.exitOverride();
      sub.configureOutput({ outputError: () => {} });
      quiet(sub.commands);
    }
  };
  quiet(program.commands);
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version") return 0;
      if (err.code === "commander.help") return 1;
      throw new UsageError(err.message.replace(/^error: /, ""), program.name());
    }
    throw err;
  }
}

interface InitFlags {
  dir: string;
  force: boolean;
  host: string[];
  port: number;
  cluster?: number;
  clusterHost: string[];
  clusterPort?: number;
  leaf?: string;
  leafPort: number;
  leafClientPort: number;
}

/** NATS' usual leaf node port. */
const DEFAULT_LEAF_PORT = 7422;

function parseNodes(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_CLUSTER_NODES) {
    throw new UsageError(
      `invalid --cluster ${JSON.stringify(value)}: expected a node count from 1 to ${MAX_CLUSTER_NODES}`,
    );
  }
  return n;
}

function clusterOf(o: InitFlags): ClusterOptions {
  const c: ClusterOptions = { nodes: o.cluster ?? 1 };
  if (o.clusterHost.length > 0) c.hosts = o.clusterHost;
  if (o.clusterPort !== undefined) c.clusterPort = o.clusterPort;
  try {
    checkClusterOptions(c);
  } catch (err) {
    throw new UsageError(errText(err));
  }
  return c;
}

export async function run(argv: string[]): Promise<number> {
  const program = new Command("zester nats-auth").description(
    "operator-mode NATS credentials, CA and server config (offline)",
  );
  program
    .command("init")
    .description("write operator, accounts, master/admin creds, CA, server cert and nats-server.conf")
    .requiredOption("--dir <dir>", "output directory (created 0700)")
    .option("--force", "overwrite existing keys and creds (the CA and server cert are kept)", false)
    .option("--host <host...>", "extra DNS names / IPs for the server certificate (repeatable)", [])
    .option("--port <port>", "client port in nats-server.conf", parsePort, DEFAULT_NATS_PORT)
    .option("--account <name...>", "also create these accounts (isolated deployments, see account add)", [])
    .option("--cluster <n>", "write nats-server-1..N.conf for a JetStream cluster of N nodes", parseNodes)
    .option("--cluster-host <host...>", "one address per cluster node (default: all on this machine)", [])
    .option("--cluster-port <port>", "route port (first of N when all nodes are local)", parsePort)
    .option(
      "--leaf <hub-host>",
      "also write nats-server-leaf.conf for an edge site's server, which reaches the hub at this address",
    )
    .option("--leaf-port <port>", "leaf node port the hub listens on", parsePort, DEFAULT_LEAF_PORT)
    .option("--leaf-client-port <port>", "client port of the edge server", parsePort, DEFAULT_NATS_PORT)
    .action(async (opts: InitFlags & { account: string[] }) => {
      for (const a of opts.account) accountDir(opts.dir, a); // bad names fail before anything is written
      const cluster = opts.cluster !== undefined ? clusterOf(opts) : undefined;
      if (cluster === undefined && (opts.clusterHost.length > 0 || opts.clusterPort !== undefined)) {
        throw new UsageError("--cluster-host and --cluster-port need --cluster N");
      }
      if (opts.leaf !== undefined && cluster !== undefined) {
        throw new UsageError(
          "--leaf is for a single hub server; with --cluster add the leafnodes block by hand (docs/scale.md)",
        );
      }
      const res = await initAuthDir({
        dir: opts.dir,
        force: opts.force,
        hosts: opts.host,
        port: opts.port,
        ...(cluster ? { cluster } : {}),
        ...(opts.leaf !== undefined
          ? { leaf: { port: opts.leafPort, hubHost: opts.leaf, clientPort: opts.leafClientPort } }
          : {}),
      });
      // The master's curve key seals settings secrets per peel; a fresh trust chain gets one too.
      const curve = await ensureMasterCurveKey(opts.dir, { force: opts.force });
      (curve.written ? res.written : res.kept).push(curve.seedPath);
      for (const a of opts.account) res.written.push(...(await addAccount(opts.dir, a)).written);
      for (const f of res.written) process.stdout.write(`wrote ${f}\n`);
      for (const f of res.kept) process.stdout.write(`kept  ${f} (already present)\n`);
      const start = cluster
        ? clusterNodes(cluster, opts.port)
            .map((n) => `  ${n.name} (${n.url}):  nats-server -c ${join(opts.dir, n.configFile)}\n`)
            .join("")
        : `  nats-server -c ${join(opts.dir, AUTH_FILES.serverConfig)}\n` +
          (opts.leaf !== undefined
            ? `  edge site (leaf node):  nats-server -c ${join(opts.dir, AUTH_FILES.leafServerConfig)}\n`
            : "");
      process.stdout.write(
        `\nStart the server${cluster ? "s (one per node; see docs/scale.md)" : ""}:\n${start}` +
          `Master creds:      ${join(opts.dir, AUTH_FILES.masterCreds)}\n` +
          `Admin creds:       ${join(opts.dir, AUTH_FILES.adminCreds)}\n` +
          `Peel creds:        zester peel creds <peel-id> --dir ${opts.dir}\n`,
      );
    });
  const account = program.command("account").description("accounts under the operator: isolated deployments");
  account
    .command("add <name>")
    .description("create an account with its own master, admin and peel creds, buckets and streams")
    .requiredOption("--dir <dir>", "the auth dir written by `zester nats-auth init`")
    .option("--push", "also push the account to the running server (needs --nats-url)", false)
    .option("--nats-url <url>", "server to push to (env ZESTER_NATS_URL)")
    .action(async (name: string, opts: { dir: string; push: boolean; natsUrl?: string }) => {
      const url = opts.natsUrl ?? process.env.ZESTER_NATS_URL;
      if (opts.push && !url) throw new UsageError("--push needs --nats-url (or ZESTER_NATS_URL)");
      const res = await addAccount(opts.dir, name);
      for (const f of res.written) process.stdout.write(`wrote ${f}\n`);
      if (opts.push && url) {
        await pushAccount(opts.dir, res.jwt, url);
        process.stdout.write(`pushed account ${name} (${res.publicKey}) to ${url}\n`);
      }
      process.stdout.write(
        `\nAccount ${name}: ${res.publicKey}\n` +
          (res.preloaded ? `Added to ${join(opts.dir, AUTH_FILES.serverConfig)}; ` : "") +
          (opts.push ? "" : "restart nats-server to load it (--push loads it into a running server).\n") +
          `Masters, CLIs and peel creds of this account use --auth-dir ${res.dir}\n` +
          `  (or ZESTER_AUTH_DIR=${res.dir}); peels: zester peel creds <id> --dir ${res.dir}\n`,
      );
    });
  return runProgram(program, argv);
}
