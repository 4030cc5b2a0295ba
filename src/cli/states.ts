/**
 * `zester states publish`: asks the masters to publish the states tree now instead of at their
 * next publish tick. Also home of the request/print helpers `zester settings publish` shares.
 */
import { errors } from "@nats-io/transport-node";
import { Command } from "commander";
import { decode } from "../bus/codec.js";
import type { FileTreePublishResult } from "../bus/file-tree.js";
import { subjects } from "../bus/names.js";
import type { SettingsPublishSummary } from "../master/settings.js";
import { addConnectOptions, type ConnectFlags, connectWith, explainRequestError } from "./connect-options.js";
import { UsageError } from "./errors.js";
import { parseFormat, printData } from "./job.js";
import { runProgram } from "./nats-auth.js";
import type { OutputFormat } from "./output.js";

/**
 * Same subjects as the master's STATES_PUBLISH_SUBJECT and SETTINGS_PUBLISH_SUBJECT, without
 * loading the master code into the CLI.
 */
export const STATES_PUBLISH_SUBJECT = subjects.admin("states.publish");
export const SETTINGS_PUBLISH_SUBJECT = subjects.admin("settings.publish");

/** Publishing a large tree means many KV writes; a minute-long wait would mean something is stuck. */
export const DEFAULT_PUBLISH_TIMEOUT_S = 30;

/** What the lease holder answers: its id and its publish result, or an error. */
export type PublishReply<R> = ({ master: string } & R & { error?: undefined }) | { error: string };

export type PublishOpts = ConnectFlags & { timeout?: string; format?: string };

export function parseTimeout(v: string | undefined): number {
  if (v === undefined) return DEFAULT_PUBLISH_TIMEOUT_S;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError("--timeout must be a positive number of seconds");
  return n;
}

export function addPublishOptions(cmd: Command): Command {
  return addConnectOptions(
    cmd
      .option("--timeout <s>", "seconds to wait for the publishing master", String(DEFAULT_PUBLISH_TIMEOUT_S))
      .option("--format <fmt>", "text, json or yaml", "text"),
  );
}

/**
 * Sends the publish request and returns the master's reply. Every master hears it but only the
 * lease holder answers, so silence and "no responders" both mean no master could publish.
 */
export async function requestPublish<R>(subject: string, opts: PublishOpts): Promise<PublishReply<R>> {
  const timeoutS = parseTimeout(opts.timeout);
  const nc = await connectWith(opts);
  try {
    const m = await nc.request(subject, undefined, { timeout: timeoutS * 1000 }).catch((err: unknown) => {
      throw explainPublishError(err, subject, timeoutS);
    });
    return decode<PublishReply<R>>(m.data);
  } finally {
    await nc.close();
  }
}

function explainPublishError(err: unknown, subject: string, timeoutS: number): Error {
  const noResponders = err instanceof errors.RequestError && err.isNoResponders();
  const timedOut = err instanceof errors.TimeoutError || (err as Error)?.cause instanceof errors.TimeoutError;
  if (!noResponders && !timedOut) return explainRequestError(err, subject);
  // Masters that are up but silent do not hold the lease: the holder may have just died.
  const hint = timedOut
    ? " (or the publisher lease is held by a master that stopped: another master takes over within about 40 s)"
    : "";
  return new Error(`no master answered on ${subject} within ${timeoutS} s: is zester-master running?${hint}`);
}

/** `<n> thing` / `<n> things`. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** One line saying what a file-tree publish did, e.g. for `states` or `settings`. */
export function describeTreePublish(what: string, master: string, r: FileTreePublishResult): string {
  if (r.published) {
    return (
      `${what}: published revision ${r.rev} (${plural(r.files, "file")}, ` +
      `${plural(r.blobsWritten, "blob")} written, ${r.blobsDeleted} deleted) by master ${master}`
    );
  }
  const live = r.rev > 0 ? `revision ${r.rev} (${plural(r.files, "file")})` : "no revision";
  if (r.reason === undefined || r.reason === "unchanged")
    return `${what}: unchanged at ${live} — master ${master}`;
  // Any other reason is the master refusing to publish, e.g. an empty or missing dir.
  return `${what}: not published: ${r.reason}; ${live} stays live — master ${master}`;
}

/**
 * Prints a reply in the chosen format; returns the exit code. Warnings go to stderr so json and
 * yaml on stdout stay parseable.
 */
export function printPublishReply<R extends FileTreePublishResult>(
  reply: PublishReply<R>,
  format: OutputFormat,
  text: (reply: { master: string } & R) => string,
  warnings: (reply: { master: string } & R) => string[] = () => [],
): number {
  if (format !== "text") printData(reply, format);
  if (reply.error !== undefined) {
    process.stderr.write(`zester: ${reply.error}\n`);
    return 1;
  }
  const ok = reply as { master: string } & R;
  if (format === "text") process.stdout.write(`${text(ok)}\n`);
  const warn = [...warnings(ok)];
  if (ok.replacedDamaged !== undefined) {
    warn.unshift(`the live revision was damaged (${ok.replacedDamaged}); the master replaced it`);
  }
  for (const w of warn) process.stderr.write(`zester: warning: ${w}\n`);
  return 0;
}

/** `zester settings publish`'s text: the tree, then the peels whose secrets were re-sealed. */
export function describeSettingsPublish(r: { master: string } & SettingsPublishSummary): string {
  // Nothing re-sealed is the normal case of an unchanged tree: not worth a clause.
  const sealed = !r.secretsSealed
    ? "; secrets not sealed"
    : r.sealed.length > 0
      ? `; secrets re-sealed for ${plural(r.sealed.length, "peel")}`
      : "";
  return `${describeTreePublish("settings", r.master, r)}${sealed}`;
}

export function settingsPublishWarnings(r: { master: string } & SettingsPublishSummary): string[] {
  if (r.secretsSealed) return [];
  return [
    `master ${r.master} has no curve key: settings went out without their !encrypted values, ` +
      "so peels cannot read them (run `zester settings keygen` on the master, then restart it)",
  ];
}

export async function run(argv: string[]): Promise<number> {
  const program = new Command("zester states").description("the states tree the masters publish to peels");
  let code = 0;

  addPublishOptions(
    program
      .command("publish")
      .description("ask the masters to publish the states dir now instead of at their next tick"),
  ).action(async (opts: PublishOpts) => {
    const format = parseFormat(opts.format);
    const reply = await requestPublish<FileTreePublishResult>(STATES_PUBLISH_SUBJECT, opts);
    code = printPublishReply(reply, format, (r) => describeTreePublish("states", r.master, r));
  });

  const rc = await runProgram(program, argv);
  return rc !== 0 ? rc : code;
}
