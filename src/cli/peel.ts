/** `zester peel`: peel management. Offline part: issuing least-privilege peel creds. */

import { Command } from "commander";
import { issuePeelCredsFile } from "../auth/auth-dir.js";
import { isValidPeelId } from "../bus/names.js";
import { UsageError } from "./errors.js";
import { runProgram } from "./nats-auth.js";

export async function run(argv: string[]): Promise<number> {
  const program = new Command("zester peel").description("peel management");
  program
    .command("creds")
    .description("issue creds for one peel: only its own subjects and keys")
    .argument("<peel-id>", "peel id (A-Z a-z 0-9 _ -, max 128)")
    .requiredOption("--dir <dir>", "auth dir written by `zester nats-auth init`")
    .option("--out <file>", "output file (default <dir>/peels/<peel-id>.creds)")
    .option("--force", "overwrite an existing creds file", false)
    .action(async (peelId: string, opts: { dir: string; out?: string; force: boolean }) => {
      if (!isValidPeelId(peelId)) {
        throw new UsageError(
          `invalid peel id ${JSON.stringify(peelId)}: use 1-128 characters from A-Z a-z 0-9 _ -, ` +
            "starting with a letter or digit",
        );
      }
      const out = await issuePeelCredsFile(opts.dir, peelId, {
        ...(opts.out !== undefined ? { out: opts.out } : {}),
        force: opts.force,
      });
      process.stdout.write(`wrote ${out}\n`);
    });
  return runProgram(program, argv);
}
