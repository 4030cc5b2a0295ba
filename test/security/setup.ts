/**
 * The deployment the attack suite attacks: one real nats-server (TLS, operator mode), buckets and
 * streams as a master bootstraps them, a master connection, and an attacker peel `mallory`
 * beside its victim `bob`. Every attempt prints one line, so a CI log reads as the list of what
 * was tried and how it was refused.
 */
import { jetstream } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { bootstrap } from "../../src/bus/bootstrap.js";
import { connect } from "../../src/bus/connect.js";
import { peelInboxPrefix } from "../../src/bus/names.js";
import { type StartedNats, startNats } from "../support/nats.js";

export const ATTACKER = "mallory";
export const VICTIM = "bob";

export interface Deployment {
  nats: StartedNats;
  master: NatsConnection;
  attacker: NatsConnection;
  stop(): Promise<void>;
}

export async function startDeployment(): Promise<Deployment> {
  const nats = await startNats();
  const conns: NatsConnection[] = [];
  try {
    const master = await nats.connectAs("master");
    conns.push(master);
    await bootstrap(master);
    const attacker = await connectPeel(nats, ATTACKER);
    conns.push(attacker);
    return {
      nats,
      master,
      attacker,
      async stop() {
        for (const nc of conns) await nc.close().catch(() => {});
        await nats.stop();
      },
    };
  } catch (err) {
    for (const nc of conns) await nc.close().catch(() => {});
    await nats.stop();
    throw err;
  }
}

export async function connectPeel(nats: StartedNats, id: string): Promise<NatsConnection> {
  return connect({
    servers: nats.url,
    caFile: nats.caFile,
    credsFile: await nats.credsFile(id),
    inboxPrefix: peelInboxPrefix(id),
    reconnect: false,
  });
}

/** Prints the outcome of one attempt: `attack <what>: refused (<how>)`. */
export function report(what: string, outcome: string): void {
  process.stdout.write(`attack ${what}: ${outcome}\n`);
}

/** Runs `attempt`; resolves with the error it failed with (or undefined when it succeeded). */
export async function failureOf(attempt: () => Promise<unknown>): Promise<Error | undefined> {
  try {
    await attempt();
    return undefined;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/** A JetStream publish as a client would send it, with headers the attacker picks. */
export function jsPublish(
  nc: NatsConnection,
  subject: string,
  data: Uint8Array | string,
  hdrs: Record<string, string> = {},
  timeoutMs = 3000,
): Promise<unknown> {
  const h = headers();
  for (const [k, v] of Object.entries(hdrs)) h.set(k, v);
  return jetstream(nc, { timeout: timeoutMs }).publish(subject, data, { headers: h });
}
