/**
 * `zester settings ...`: offline tooling for the settings tree, and `publish`, which asks the
 * masters to publish it now. Secret values are read from stdin only: a value on the command line
 * would end up in shell history and `ps` output.
 */
import { Command } from "commander";
import { DEFAULT_AUTH_DIR } from "../bus/connect.js";
import type { SettingsPublishSummary } from "../master/settings.js";
import { encryptValue } from "../settings/crypto.js";
import {
  assertCurvePublicKey,
  loadMasterCurve,
  loadMasterCurvePub,
  writeMasterCurveKey,
} from "../settings/keys.js";
import { openExtractedSecrets, sanitizeSettingsTree } from "../settings/sanitize.js";
import { DEFAULT_SETTINGS_DIR, readSettingsTree } from "../settings/source.js";
import { ENCRYPTED_TAG } from "../settings/yaml-tag.js";
import { addConnectOptions } from "./connect-options.js";
import { UsageError } from "./errors.js";
import { runProgram } from "./nats-auth.js";
import type { PublishOpts } from "./states.js";

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(typeof c === "string" ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString("utf8");
}

export async function run(argv: string[]): Promise<number> {
  const program = new Command("zester settings").description(
    "settings tree tooling: secrets, checks, publishing",
  );
  let code = 0;

  program
    .command("encrypt")
    .description("encrypt a value read from stdin for the master; prints `!encrypted ENC[nkey,...]`")
    .option("--recipient <pub>", "the master's curve public key (X...)")
    .option("--auth-dir <dir>", "read the master's curve public key from this auth dir", DEFAULT_AUTH_DIR)
    .option("--keep-newline", "keep a trailing newline (by default one is removed, as `echo` adds it)", false)
    .allowExcessArguments(true)
    .action(async (opts: { recipient?: string; authDir: string; keepNewline: boolean }, cmd: Command) => {
      if (cmd.args.length > 0) {
        throw new UsageError(
          "zester settings encrypt: the value is read from stdin, never from the command line " +
            "(it would stay in shell history); e.g. `zester settings encrypt < secret.txt`",
        );
      }
      const recipient =
        opts.recipient !== undefined
          ? assertCurvePublicKey(opts.recipient.trim(), "--recipient")
          : await loadMasterCurvePub(opts.authDir);
      if (process.stdin.isTTY) process.stderr.write("Type the secret, then Ctrl-D:\n");
      let value = await readStdin();
      if (!opts.keepNewline) value = value.replace(/\r?\n$/, "");
      if (value === "") throw new UsageError("zester settings encrypt: empty value on stdin");
      process.stdout.write(`${ENCRYPTED_TAG} ${encryptValue(value, recipient)}\n`);
    });

  program
    .command("keygen")
    .description("create the master's curve key (master-curve.nk 0600, master-curve.pub)")
    .option("--dir <dir>", "auth dir to write into", DEFAULT_AUTH_DIR)
    .option("--force", "replace an existing key (every existing !encrypted value becomes unreadable)", false)
    .action(async (opts: { dir: string; force: boolean }) => {
      const res = await writeMasterCurveKey(opts.dir, { force: opts.force });
      process.stdout.write(`wrote ${res.seedPath}\nwrote ${res.pubPath}\n${res.publicKey}\n`);
    });

  program
    .command("check")
    .description("sanitize a settings tree and open every !encrypted value with the master's key")
    .option("--dir <dir>", "settings tree", DEFAULT_SETTINGS_DIR)
    .option("--auth-dir <dir>", "auth dir holding master-curve.nk", DEFAULT_AUTH_DIR)
    .action(async (opts: { dir: string; authDir: string }) => {
      const tree = sanitizeSettingsTree(await readSettingsTree(opts.dir));
      const n = Object.keys(tree.secrets).length;
      if (n > 0) openExtractedSecrets(await loadMasterCurve(opts.authDir), tree.secrets);
      process.stdout.write(
        `${Object.keys(tree.files).length} files, ${n} encrypted value${n === 1 ? "" : "s"}: ok\n`,
      );
    });

  addConnectOptions(
    program
      .command("publish")
      .description("ask the masters to publish the settings tree (and re-seal secrets) now")
      .option("--timeout <s>", "seconds to wait for the publishing master", "30")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (opts: PublishOpts) => {
    // Loaded here: the offline subcommands should not pay for the NATS client at start-up.
    const [p, { parseFormat }] = await Promise.all([import("./states.js"), import("./job.js")]);
    const format = parseFormat(opts.format);
    const reply = await p.requestPublish<SettingsPublishSummary>(p.SETTINGS_PUBLISH_SUBJECT, opts);
    code = p.printPublishReply(reply, format, p.describeSettingsPublish, p.settingsPublishWarnings);
  });

  const rc = await runProgram(program, argv);
  return rc !== 0 ? rc : code;
}
