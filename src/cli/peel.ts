/** `zester peel`: peel management. `creds` is offline (issues least-privilege creds); `list` reads the fleet. */

import { Command } from "commander";
import { issuePeelCredsFile } from "../auth/auth-dir.js";
import { BASKET_SCOPES, type BasketScope } from "../auth/permissions.js";
import { openKv } from "../bus/bootstrap.js";
import { isValidPeelId, PEEL_HEARTBEAT_TTL_MS } from "../bus/names.js";
import type { PeelLastRun } from "../jobs/wire.js";
import { suggestion } from "../util/suggest.js";
import { addConnectOptions, type ConnectFlags, connectWith } from "./connect-options.js";
import { UsageError } from "./errors.js";
import { parseFormat, printData, table } from "./job.js";
import { runProgram } from "./nats-auth.js";

export interface PeelListEntry {
  id: string;
  /** The machine's FQDN (else hostname) from its facts: what a default id was made from. */
  host: string | null;
  os: string | null;
  online: boolean;
  /**
   * When the peel was last heard of (ISO): its heartbeat, or once that has expired (30 s after
   * it went quiet), its last facts write. Null when neither is stored.
   */
  last_seen: string | null;
  last_seen_from: "heartbeat" | "facts" | null;
  /** The peel's last finished state run, from its heartbeat; null when it carries none. */
  last_run: PeelLastRun | null;
}

function osOf(facts: Record<string, unknown> | undefined): string | null {
  if (!facts) return null;
  const pick = facts.osprettyname ?? facts.osfullname ?? facts.distro ?? facts.os;
  return typeof pick === "string" ? pick : null;
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;

/**
 * The heartbeat's `last_run` when it has the documented shape, else null: the key is written by
 * the peel itself, so the list never trusts more than it can check.
 */
export function lastRunOf(hb: unknown): PeelLastRun | null {
  if (!hb || typeof hb !== "object") return null;
  const r = (hb as { last_run?: unknown }).last_run;
  if (!r || typeof r !== "object") return null;
  const v = r as Record<string, unknown>;
  const ok =
    typeof v.jid === "string" &&
    (v.origin === "job" || v.origin === "schedule") &&
    typeof v.fun === "string" &&
    typeof v.test === "boolean" &&
    typeof v.finished_at === "string" &&
    typeof v.success === "boolean" &&
    isCount(v.changed) &&
    isCount(v.failed) &&
    isCount(v.total) &&
    isCount(v.pending) &&
    (v.error === undefined || typeof v.error === "string");
  return ok ? (r as PeelLastRun) : null;
}

/** `12s`, `5m`, `3h`, `2d`: enough to see at a glance how old a run is. */
export function ageText(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** Peel-written text on the operator's terminal: no control characters, bounded width. */
function clean(text: string, max: number): string {
  const t = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/**
 * The LAST RUN cell: `ok 12m ago`, `1 changed 3m ago`, `2 failed 1h ago`, `error: no state tree…
 * 5m ago`; test runs: `no drift 5m ago`, `drift: 1 would change 5m ago`. Failures win over
 * changes. `-` for an offline peel (its heartbeat says nothing current) or one with no run.
 */
export function lastRunText(p: Pick<PeelListEntry, "online" | "last_run">, now = Date.now()): string {
  const r = p.last_run;
  if (!p.online || !r) return "-";
  let what: string;
  if (r.failed > 0) what = `${r.failed} failed${r.test ? " (test)" : ""}`;
  else if (!r.success) what = `error${r.test ? " (test)" : ""}: ${clean(r.error ?? "failed", 40)}`;
  else if (r.test) what = r.pending > 0 ? `drift: ${r.pending} would change` : "no drift";
  else what = r.changed > 0 ? `${r.changed} changed` : "ok";
  const at = Date.parse(r.finished_at);
  return Number.isNaN(at) ? what : `${what} ${ageText(now - at)} ago`;
}

/** `3m ago`, or `2h ago (facts)` when only the facts write tells when the peel was last heard of. */
export function lastSeenText(
  p: Pick<PeelListEntry, "last_seen" | "last_seen_from">,
  now = Date.now(),
): string {
  if (p.last_seen === null) return "never";
  const at = Date.parse(p.last_seen);
  const age = Number.isNaN(at) ? p.last_seen : `${ageText(now - at)} ago`;
  return p.last_seen_from === "facts" ? `${age} (facts)` : age;
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
        const factsAt = f && f.operation === "PUT" ? f.created : undefined;
        const lastSeen = seen ?? factsAt;
        let hb: unknown;
        if (seen) {
          try {
            hb = b?.json<unknown>();
          } catch {
            hb = undefined;
          }
        }
        const host = parsed?.fqdn ?? parsed?.hostname;
        return {
          id,
          host: typeof host === "string" ? host : null,
          os: osOf(parsed),
          online: seen !== undefined && now - seen.getTime() <= PEEL_HEARTBEAT_TTL_MS,
          last_seen: lastSeen ? lastSeen.toISOString() : null,
          last_seen_from: seen ? "heartbeat" : factsAt ? "facts" : null,
          last_run: lastRunOf(hb),
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
    .option("--basket-scope <scope>", "basket entries it may read: account (all, default) or own", "account")
    .action(
      async (peelId: string, opts: { dir: string; out?: string; force: boolean; basketScope: string }) => {
        if (!(BASKET_SCOPES as readonly string[]).includes(opts.basketScope)) {
          throw new UsageError(
            `--basket-scope must be one of ${BASKET_SCOPES.join(", ")}${suggestion(opts.basketScope, BASKET_SCOPES)}`,
          );
        }
        if (!isValidPeelId(peelId)) {
          throw new UsageError(
            `invalid peel id ${JSON.stringify(peelId)}: use 1-128 characters from A-Z a-z 0-9 _ -, ` +
              "starting with a letter or digit",
          );
        }
        const out = await issuePeelCredsFile(opts.dir, peelId, {
          ...(opts.out !== undefined ? { out: opts.out } : {}),
          force: opts.force,
          basketScope: opts.basketScope as BasketScope,
        });
        process.stdout.write(`wrote ${out}\n`);
      },
    );

  addConnectOptions(
    program
      .command("list")
      .description(
        "every known peel: id, OS, online (heartbeat within 30 s), last seen, last state run (`-` when offline)",
      )
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (opts: ConnectFlags & { format?: string }) => {
    const format = parseFormat(opts.format);
    const peels = await listPeels(opts);
    if (format !== "text") return printData(peels, format);
    const now = Date.now();
    process.stdout.write(
      table(
        ["ID", "HOST", "OS", "ONLINE", "LAST SEEN", "LAST RUN"],
        peels.map((p) => [
          p.id,
          p.host === null ? "-" : clean(p.host, 64),
          p.os === null || p.os === undefined ? "-" : clean(p.os, 60),
          p.online ? "yes" : "no",
          lastSeenText(p, now),
          lastRunText(p, now),
        ]),
      ),
    );
  });
  return runProgram(program, argv);
}
