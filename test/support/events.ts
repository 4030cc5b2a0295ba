/** Reading what reached the events stream, as the master sees it. */
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { AUTH_FILES } from "../../src/auth/auth-dir.js";
import { connect } from "../../src/bus/connect.js";
import { watchEvents, type ZesterEvent } from "../../src/events/index.js";

/** Where a test server listens and keeps its auth dir (StartedNats and RestartableNats both are). */
export interface TestServerAddress {
  url: string;
  caFile: string;
  authDir: string;
}

/** Runs `body` on a master connection that is closed afterwards. */
export async function asMaster<T>(
  nats: TestServerAddress,
  body: (nc: NatsConnection) => Promise<T>,
): Promise<T> {
  const nc = await connect({
    servers: nats.url,
    caFile: nats.caFile,
    credsFile: join(nats.authDir, AUTH_FILES.masterCreds),
  });
  try {
    return await body(nc);
  } finally {
    await nc.close();
  }
}

/** Every stored event matching `glob`, replayed from the start of the stream for `settleMs`. */
export async function storedEvents(
  nats: TestServerAddress,
  glob: string,
  settleMs = 1_000,
): Promise<ZesterEvent[]> {
  return asMaster(nats, async (nc) => {
    const out: ZesterEvent[] = [];
    const ac = new AbortController();
    const done = watchEvents(nc, {
      glob,
      since: { kind: "all" },
      signal: ac.signal,
      onEvent: (e) => {
        out.push(e.event);
        return true;
      },
    });
    await new Promise((r) => setTimeout(r, settleMs));
    ac.abort();
    await done.catch(() => {});
    return out;
  });
}
