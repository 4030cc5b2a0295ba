/**
 * Commands kept for peels that were offline when a job was sent (`--queue <ttl>`): the
 * `peel-queue` bucket holds one key per peel, `<peel>`, with the signed commands waiting for it.
 * Only masters write it (CAS, so two masters never lose each other's entries); a peel reads only
 * its own key (direct get, src/auth/permissions.ts) when it connects, and runs what it has not
 * run yet. The commands keep their master signature and carry `queue_until`, so the peel checks
 * them exactly as a live command (src/auth/signing.ts verifyCommand).
 */
import type { KV } from "@nats-io/kv";
import { decode, encode } from "../bus/codec.js";
import { isWrongLastSequence } from "../bus/errors.js";
import type { Command } from "./wire.js";

export interface PeelQueue {
  commands: Command[];
}

function isMissing(e: { operation: string } | null): boolean {
  return e === null || e.operation !== "PUT";
}

/** The commands kept for `peel` (unverified: the peel verifies each before it runs it). */
export async function readPeelQueue(kv: KV, peel: string): Promise<Command[]> {
  const e = await kv.get(peel);
  if (!e || isMissing(e)) return [];
  const q = decode<Partial<PeelQueue>>(e.value);
  return Array.isArray(q.commands) ? q.commands : [];
}

/**
 * Read-modify-write of one peel's queue with CAS, retried on conflict; expired entries are
 * dropped on every write. An empty queue deletes the key.
 */
async function change(kv: KV, peel: string, mutate: (cmds: Command[]) => Command[]): Promise<void> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const e = await kv.get(peel);
    const present = e !== null && !isMissing(e);
    const cur = present ? (decode<Partial<PeelQueue>>(e.value).commands ?? []) : [];
    const now = Date.now();
    const next = mutate(cur).filter((c) => (c.queue_until ?? 0) > now);
    if (next.length === cur.length && next.every((c, i) => c.jid === cur[i]?.jid)) return;
    try {
      if (next.length === 0) {
        if (present) await kv.delete(peel, { previousSeq: e.revision });
      } else if (present) {
        await kv.update(peel, encode({ commands: next }), e.revision);
      } else {
        await kv.create(peel, encode({ commands: next }));
      }
      return;
    } catch (err) {
      if (!isWrongLastSequence(err)) throw err;
    }
  }
  throw new Error(`queue of ${peel}: too many concurrent updates`);
}

/** Keeps `cmd` for its peel (once per job id). */
export function enqueueCommand(kv: KV, cmd: Command): Promise<void> {
  return change(kv, cmd.peel, (cmds) => (cmds.some((c) => c.jid === cmd.jid) ? cmds : [...cmds, cmd]));
}

/** Drops the command of job `jid` from `peel`'s queue (it was taken, or it expired). */
export function dequeueCommand(kv: KV, peel: string, jid: string): Promise<void> {
  return change(kv, peel, (cmds) => cmds.filter((c) => c.jid !== jid));
}

/**
 * The `peel_queue` fact of a peel whose creds cannot read its queue key: creds issued before
 * `--queue` existed lack that permission (src/auth/permissions.ts). A master seeing it does not
 * keep commands for the peel (it could never read them) and says why in the job record.
 */
export const PEEL_QUEUE_DENIED = "denied";

/** How an operator gives a peel the queue permission: new creds, the old ones lack it. */
export function queueCredsFix(peel: string): string {
  return (
    `re-issue its creds with \`zester peel creds ${peel} --dir <auth-dir> --force\` (an enrolled peel: ` +
    "remove its creds file and restart it with --enroll-replace), then restart the peel"
  );
}

/** The peel's one log line when its creds cannot read its queue. */
export function queueDeniedMessage(peel: string, credsFile: string): string {
  return (
    `cannot read the commands queued for this peel: its creds (${credsFile}) do not allow the ` +
    `peel-queue bucket (issued before --queue existed), so jobs sent with --queue never reach it; ` +
    queueCredsFix(peel)
  );
}

/** The job record's note for a peel a master did not queue because of PEEL_QUEUE_DENIED. */
export function notQueuedNote(peel: string): string {
  return `not queued: its creds cannot read the peel-queue bucket (issued before --queue); ${queueCredsFix(peel)}`;
}
