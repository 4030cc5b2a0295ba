/** `zester ca`: the certificate authority for the NATS TLS listener (offline). */

import { readFile } from "node:fs/promises";
import { Command } from "commander";
import { certificateHosts, initCaDir, issueServerCertFiles } from "../ca/ca.js";
import { UsageError } from "./errors.js";
import { runProgram } from "./nats-auth.js";

export async function run(argv: string[]): Promise<number> {
  const program = new Command("zester ca").description("certificate authority for NATS TLS");
  program
    .command("init")
    .description("create an ECDSA P-256 CA: nats-ca.crt, nats-ca.key (0600)")
    .requiredOption("--dir <dir>", "output directory")
    .option("--force", "replace an existing CA (certificates it issued stop being trusted)", false)
    .action(async (opts: { dir: string; force: boolean }) => {
      const res = await initCaDir(opts.dir, { force: opts.force });
      for (const f of res.written) process.stdout.write(`wrote ${f}\n`);
    });
  program
    .command("issue")
    .description("issue a certificate from the CA in --dir")
    .argument("<kind>", "what to issue: nats-server")
    .requiredOption("--dir <dir>", "directory holding the CA")
    .option("--host <host...>", "DNS names / IPs for the certificate (localhost and loopback are added)", [])
    .option("--force", "replace an existing certificate", false)
    .action(async (kind: string, opts: { dir: string; host: string[]; force: boolean }) => {
      if (kind !== "nats-server") {
        throw new UsageError(`unknown certificate kind ${JSON.stringify(kind)}; supported: nats-server`);
      }
      const res = await issueServerCertFiles(opts.dir, opts.host, { force: opts.force });
      for (const f of res.written) process.stdout.write(`wrote ${f}\n`);
      const hosts = certificateHosts(await readFile(res.written[0]!, "utf8"));
      process.stdout.write(`hosts: ${hosts.join(", ")}\n`);
    });
  return runProgram(program, argv);
}
