/** `zester peel`: peel management. `creds` is offline (issues least-privilege creds); `list` reads the fleet. */

import { Command } from "commander";
import { issuePeelCredsFile } from "../auth/auth-dir.js";
import { openKv } from "../bus/bootstrap.js";
import { isValidPeelId, PEEL_HEARTBEAT_TTL_MS } from "../bus/names.js";
import { addConnectOptions, type ConnectFlags, connectWith } from "./connect-options.js";
import { UsageError } from "./errors.js";
import { parseFormat, printData, table } from "./job.js";
import { runProgram } from "./nats-auth.js";

export interface PeelListEntry {
  id: string;
  os: string | null;
  online: boolean;
  /** When the last heartbeat was written (ISO), null when none is stored. */
  last_seen: string | null;
}

function osOf(facts: Record<string, unknown> | undefined): string | null {
  if (!facts) return null;
  const pick = facts.osprettyname ?? facts.osfullname ?? facts.distro ?? facts.os;
  return typeof pick === "string" ? pick : null;
}

/** Every peel with facts or a heartbeat; online = a heartbeat written within the heartbeat TTL. */
async function listPeels(flags: ConnectFlags): Promise<PeelListEntry[]> {
  const nc = await connectWith(flags);
  try {
    const [facts, beats] = await Promise.all([openKv(nc, "facts"), openKv(nc, "peel-heartbeat")]);
    const ids = new Set<string>();
    for await (const k of await facts.keys()) if (isValidPeelId(k)) ids.add(k);
    for await (const k of await beats.keys()) if (isValidPeelId(k)) ids.add(k);
    const now = Date.now();
    const out = await Promise.all(
      [...ids].sort().map(async (id): Promise<PeelListEntry> => {
        const [f, b] = await Promise.all([facts.get(id), beats.get(id)]);
        let parsed: Record<string, unknown> | undefined;
        if (f && f.operation === "PUT") {
          try {
            parsed = f.json<Record<string, unknown>>();
          } catch {
            parsed = undefined;
          }
        }
        const seen = b && b.operation === "PUT" ? b.created : undefined;
        return {
          id,
          os: osOf(parsed),
          online: seen !== undefined && now - seen.getTime() <= PEEL_HEARTBEAT_TTL_MS,
          last_seen: seen ? seen.toISOString() : null,
        };
      }),
    );
    return out;
  } finally {
    await nc.close();
  }
}

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

  addConnectOptions(
    program
      .command("list")
      .description("every known peel: id, OS, online (heartbeat within 30 s), last seen")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (opts: ConnectFlags & { format?: string }) => {
    const format = parseFormat(opts.format);
    const peels = await listPeels(opts);
    if (format !== "text") return printData(peels, format);
    process.stdout.write(
      table(
        ["ID", "OS", "ONLINE", "LAST SEEN"],
        peels.map((p) => [p.id, p.os ?? "-", p.online ? "yes" : "no", p.last_seen ?? "never"]),
      ),
    );
  });
  return runProgram(program, argv);
}
