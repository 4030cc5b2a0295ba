/**
 * `zester enroll`: the operator's view of peel enrollment. Every action is an admin request to a
 * master (the admin creds cannot write the enrollments bucket nor sign creds themselves).
 */
import { hostname, userInfo } from "node:os";
import { Command } from "commander";
import {
  type AdminOp,
  type AdminReply,
  type AdminRequest,
  type EnrollmentRecord,
  type KnownIdentity,
  knownText,
} from "../enroll/protocol.js";
import { addConnectOptions, type ConnectFlags, connectWith } from "./connect-options.js";
import { UsageError } from "./errors.js";
import { parseFormat, printData, table } from "./job.js";
import { runProgram } from "./nats-auth.js";

type Opts = ConnectFlags & { format?: string };

const STATUSES = ["pending", "approved", "rejected", "revoked", "expired"] as const;

/** `90s`, `15m`, `1h`, `2d` or plain seconds. */
export function parseTtl(s: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(s.trim());
  if (!m) throw new UsageError(`invalid --ttl ${JSON.stringify(s)}: use e.g. 90s, 15m, 1h, 2d`);
  const n = Number(m[1]);
  const mult = { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "" | "s" | "m" | "h" | "d"];
  if (n <= 0) throw new UsageError("--ttl must be positive");
  return n * mult;
}

function who(): string {
  let user = "unknown";
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (containers): the host name still says where the decision came from.
  }
  return `${user}@${hostname()}`;
}

async function ask(opts: ConnectFlags, op: AdminOp, req: AdminRequest): Promise<AdminReply> {
  const { enrollAdmin } = await import("../enroll/admin.js");
  const nc = await connectWith(opts);
  try {
    return await enrollAdmin(nc, op, req);
  } finally {
    await nc.close();
  }
}

function note(r: EnrollmentRecord): string {
  if (r.replaces) return `replaces key ${r.replaces.public_key.slice(0, 12)}… (${r.replaces.status})`;
  if (r.replaces_known) return `replaces ${knownNote(r.replaces_known)}`;
  return r.reason ?? "";
}

/** Short form of knownText for the list's last column. */
function knownNote(k: KnownIdentity): string {
  const key = k.public_key ? ` key ${k.public_key.slice(0, 12)}…` : "";
  return k.via === "creds"
    ? `creds-issued${key}${k.revoked_at ? " (revoked)" : ""}`
    : "a peel known by its facts";
}

function printRecord(r: EnrollmentRecord): void {
  const rows: [string, string | undefined][] = [
    ["peel", r.peel_id],
    ["status", r.status],
    ["request", r.request_id],
    ["public key", r.public_key],
    ["curve key", r.curve_key],
    ["requested", r.requested_at],
    ["from", r.remote],
    ["approved", r.approved_at],
    ["rejected", r.rejected_at],
    ["revoked", r.revoked_at],
    ["expired", r.expired_at],
    ["decided by", r.approver],
    ["revoked by", r.revoked_by],
    ["reason", r.reason],
    ["replaces", r.replaces ? `${r.replaces.public_key} (${r.replaces.status})` : undefined],
    ["replaces", r.replaces_known ? knownText(r.replaces_known) : undefined],
  ];
  for (const [k, v] of rows) if (v !== undefined) process.stdout.write(`${`${k}:`.padEnd(12)} ${v}\n`);
}

function finish(reply: AdminReply, verb: string, format: string | undefined): void {
  const f = parseFormat(format);
  if (f !== "text") printData(reply, f);
  else for (const p of reply.peels ?? []) process.stdout.write(`${verb} ${p}\n`);
  if (!reply.ok) throw new Error(reply.error ?? `${verb} failed`);
}

export async function run(argv: string[]): Promise<number> {
  const program = new Command("zester enroll").description("peel enrollment: approve, reject, revoke");

  addConnectOptions(
    program
      .command("list")
      .description("enrollment records: peel, status, request id, key")
      .option("--status <status>", `only ${STATUSES.join("|")}`)
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (opts: Opts & { status?: string }) => {
    const format = parseFormat(opts.format);
    if (opts.status !== undefined && !(STATUSES as readonly string[]).includes(opts.status)) {
      throw new UsageError(`--status must be one of ${STATUSES.join(", ")}`);
    }
    const reply = await ask(opts, "list", {
      ...(opts.status !== undefined ? { status: opts.status as EnrollmentRecord["status"] } : {}),
    });
    const records = reply.records ?? [];
    if (format !== "text") return printData(records, format);
    process.stdout.write(
      table(
        ["PEEL", "STATUS", "REQUEST", "PUBLIC KEY", "REQUESTED", "NOTE"],
        records.map((r) => [r.peel_id, r.status, r.request_id, r.public_key, r.requested_at, note(r)]),
      ),
    );
  });

  addConnectOptions(
    program
      .command("show")
      .description("one enrollment, by request id or peel id")
      .argument("<id>", "request id or peel id")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (id: string, opts: Opts) => {
    const format = parseFormat(opts.format);
    const reply = await ask(opts, "show", { id });
    if (format !== "text") return printData(reply.record, format);
    if (reply.record) printRecord(reply.record);
  });

  addConnectOptions(
    program
      .command("approve")
      .description("approve a pending request (issues the peel's creds; a replacement revokes the old key)")
      .argument("[id]", "request id or peel id")
      .option("--all", "approve every pending request", false)
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (id: string | undefined, opts: Opts & { all: boolean }) => {
    if ((id === undefined) === !opts.all) throw new UsageError("give a request id or peel id, or --all");
    const reply = await ask(opts, "approve", opts.all ? { all: true, by: who() } : { id, by: who() });
    if (opts.all && (reply.peels ?? []).length === 0 && parseFormat(opts.format) === "text") {
      process.stdout.write("no pending requests\n");
    }
    finish(reply, "approved", opts.format);
  });

  addConnectOptions(
    program
      .command("reject")
      .description("reject a pending request (a rejected replacement keeps the enrolled key)")
      .argument("<id>", "request id or peel id")
      .option("--reason <text>", "recorded with the decision")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (id: string, opts: Opts & { reason?: string }) => {
    const reply = await ask(opts, "reject", {
      id,
      by: who(),
      ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
    });
    finish(reply, "rejected", opts.format);
  });

  addConnectOptions(
    program
      .command("revoke")
      .description("revoke a peel's key: the server drops its connections and refuses it from now on")
      .argument("<id>", "peel id or request id")
      .option("--reason <text>", "recorded with the decision")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (id: string, opts: Opts & { reason?: string }) => {
    const reply = await ask(opts, "revoke", {
      id,
      by: who(),
      ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
    });
    finish(reply, "revoked", opts.format);
  });

  addConnectOptions(
    program
      .command("token")
      .description("a one-time token that approves one enrollment automatically")
      .option("--peel <id>", "only this peel id may use it")
      .option("--ttl <duration>", "lifetime: 90s, 15m, 1h, 2d", "1h")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (opts: Opts & { peel?: string; ttl: string }) => {
    const format = parseFormat(opts.format);
    const reply = await ask(opts, "token", {
      ttl_s: parseTtl(opts.ttl),
      by: who(),
      ...(opts.peel !== undefined ? { peel: opts.peel } : {}),
    });
    if (format !== "text") return printData({ token: reply.token, expires_at: reply.expires_at }, format);
    process.stdout.write(`${reply.token}\n`);
    process.stderr.write(
      `one-time token, valid until ${reply.expires_at}${opts.peel ? ` for peel ${opts.peel}` : ""}; ` +
        "shown once, only its hash is stored\n",
    );
  });

  return runProgram(program, argv);
}
