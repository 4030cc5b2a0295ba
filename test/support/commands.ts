/**
 * Signed commands as a master sends them, for peel tests that run without a master: build one,
 * or send one and wait for the peel's return on its return subject.
 */
import type { KeyPair } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { signCommand } from "../../src/auth/signing.js";
import { decode, encode } from "../../src/bus/codec.js";
import { subjects } from "../../src/bus/names.js";
import { newKsuid } from "../../src/jobs/ksuid.js";
import type { Command, PeelReturn } from "../../src/jobs/wire.js";

/** A fresh, signed command for `peel` (60 s timeout unless `timeoutS` says otherwise). */
export function testCommand(
  signer: KeyPair,
  peel: string,
  fun: string,
  args: unknown[] = [],
  kwargs: Record<string, unknown> = {},
  timeoutS = 60,
): Command {
  return signCommand(signer, {
    jid: newKsuid(),
    fun,
    args,
    kwargs,
    test: false,
    peel,
    ts: Date.now(),
    timeout_s: timeoutS,
  });
}

/** Publishes `cmd` to its peel and resolves with the return the peel publishes for it. */
export async function returnOf<R extends PeelReturn = PeelReturn>(
  nc: NatsConnection,
  cmd: Command,
): Promise<R> {
  const sub = nc.subscribe(subjects.jobReturn(cmd.jid, cmd.peel), { max: 1 });
  await nc.flush();
  nc.publish(subjects.cmd(cmd.peel), encode(cmd));
  for await (const m of sub) return decode<R>(m.data);
  throw new Error(`no return for ${cmd.fun} (${cmd.jid})`);
}
