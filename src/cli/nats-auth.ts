/**
 * `zester nats-auth init`: everything a NATS server and the Zester processes need to trust each
 * other, generated offline (no server is contacted).
 */

import { join } from "node:path";
import { Command, CommanderError } from "commander";
import { AUTH_FILES, DEFAULT_NATS_PORT, initAuthDir } from "../auth/auth-dir.js";
import { ensureMasterCurveKey } from "../settings/keys.js";
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
  for (const sub of program.commands) {
    sub.exitOverride();
    sub.configureOutput({ outputError: () => {} });
  }
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
    .action(async (opts: { dir: string; force: boolean; host: string[]; port: number }) => {
      const res = await initAuthDir({ dir: opts.dir, force: opts.force, hosts: opts.host, port: opts.port });
      // The master's curve key seals settings secrets per peel; a fresh trust chain gets one too.
      const curve = await ensureMasterCurveKey(opts.dir, { force: opts.force });
      (curve.written ? res.written : res.kept).push(curve.seedPath);
      for (const f of res.written) process.stdout.write(`wrote ${f}\n`);
      for (const f of res.kept) process.stdout.write(`kept  ${f} (already present)\n`);
      const conf = join(opts.dir, AUTH_FILES.serverConfig);
      process.stdout.write(
        `\nStart the server:  nats-server -c ${conf}\n` +
          `Master creds:      ${join(opts.dir, AUTH_FILES.masterCreds)}\n` +
          `Admin creds:       ${join(opts.dir, AUTH_FILES.adminCreds)}\n` +
          `Peel creds:        zester peel creds <peel-id> --dir ${opts.dir}\n`,
      );
    });
  return runProgram(program, argv);
}
