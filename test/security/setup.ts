/**
 * The deployment the attack suite attacks: one real nats-server (TLS, operator mode), buckets and
 * streams as a master bootstraps them, a master connection, and an attacker peel `mallory`
 * beside its victim `bob`. Every attempt prints one line, so a CI log reads as the list of what
 * was tried and how it was refused.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import type { KeyPair } from "@nats-io/nkeys";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { keyPairFromCreds } from "../../src/auth/signing.js";
import { bootstrap } from "../../src/bus/bootstrap.js";
import { connect } from "../../src/bus/connect.js";
import { peelInboxPrefix } from "../../src/bus/names.js";
import type { Master } from "../../src/master/master.js";
import { Peel } from "../../src/peel/peel.js";
import { encryptValue } from "../../src/settings/crypto.js";
import { writeMasterCurveKey } from "../../src/settings/keys.js";
import { startTestMaster } from "../support/master.js";
import { type StartedNats, startNats } from "../support/nats.js";

export const ATTACKER = "mallory";
export const VICTIM = "bob";

export interface Deployment {
  nats: StartedNats;
  /** A raw master-creds connection (for planting and checking data). */
  master: NatsConnection;
  /** Signs commands as the deployment's master does. */
  signer: KeyPair;
  /** A running Master (dispatch, job tracking) and the victim's running Peel. */
  zesterMaster: Master;
  victim: Peel;
  /** What the victim peel logged. */
  victimLog: string[];
  /** What the running Master logged. */
  masterLog: string[];
  attacker: NatsConnection;
  /** The operator's CLI connection (admin creds). */
  admin: NatsConnection;
  masterCurvePub: string;
  /** The master's settings tree (writeSettingsTree rewrites it). */
  settingsDir: string;
  work: string;
  stop(): Promise<void>;
}

export const VICTIM_SECRET = "victim-db-password";
export const ENROLLED = "carol";
export const ENROLLED_SECRET = "carol-db-password";

/** Secrets only by id: the tree the deployment runs with. */
export const GOOD_TOP = `base:\n  '${VICTIM}':\n    - victim\n  '${ENROLLED}':\n    - enrolled\n  '*':\n    - common\n`;

/** The settings tree with `top` as top.zy; `db.zy` holds a secret nobody should get by claiming a fact. */
export async function writeSettingsTree(dir: string, masterCurvePub: string, top: string): Promise<void> {
  const secret = (v: string) => `!encrypted ${encryptValue(v, masterCurvePub)}`;
  await writeFile(join(dir, "top.zy"), top);
  await writeFile(join(dir, "victim.zy"), `db:\n  password: ${secret(VICTIM_SECRET)}\n`);
  await writeFile(join(dir, "enrolled.zy"), `db:\n  password: ${secret(ENROLLED_SECRET)}\n`);
  await writeFile(join(dir, "db.zy"), `db:\n  password: ${secret("the-db-role-password")}\n`);
  await writeFile(join(dir, "common.zy"), "motd: hello\n");
}

export async function startDeployment(): Promise<Deployment> {
  const nats = await startNats();
  const work = await mkdtemp(join(tmpdir(), "zester-attacks-"));
  const stops: (() => Promise<unknown>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
    await nats.stop();
    await rm(work, { recursive: true, force: true });
  };
  try {
    const master = await nats.connectAs("master");
    stops.push(() => master.close());
    await bootstrap(master);
    const signer = keyPairFromCreds(await readFile(await nats.credsFile("master"), "utf8"));
    const masterCurvePub = (await writeMasterCurveKey(nats.authDir)).publicKey;
    const settingsDir = join(work, "settings");
    await mkdir(join(work, "states"));
    await mkdir(settingsDir);
    await writeFile(
      join(work, "states", "app.zy"),
      `app_conf:\n  file.managed:\n    - name: ${work}/out/{{ facts.id }}.conf\n    - content: "pw={{ settings.db.password }}"\n    - makedirs: true\n`,
    );
    await writeSettingsTree(settingsDir, masterCurvePub, GOOD_TOP);
    const masterLog: string[] = [];
    const zesterMaster = await startTestMaster(nats, {
      log: (line) => masterLog.push(line),
      statesDir: join(work, "states"),
      settingsDir,
      publishIntervalMs: 3_600_000,
      enroll: { host: "127.0.0.1", port: 0 },
    });
    stops.push(() => zesterMaster.stop());
    const victimLog: string[] = [];
    const victim = new Peel({
      id: VICTIM,
      servers: nats.url,
      credsFile: await nats.credsFile(VICTIM),
      caFile: nats.caFile,
      authDir: nats.authDir,
      cacheDir: join(work, "cache-victim"),
      customFactsDir: join(work, "facts-victim"),
      factsIntervalMs: 3_600_000,
      heartbeatMs: 3_600_000,
      logger: {
        info: (m) => victimLog.push(`INFO ${m}`),
        warn: (m) => victimLog.push(`WARN ${m}`),
        error: (m) => victimLog.push(`ERROR ${m}`),
      },
    });
    stops.push(() => victim.stop());
    await victim.start();
    await victim.waitConnected(10_000);
    const attacker = await connectPeel(nats, ATTACKER);
    stops.push(() => attacker.close());
    const admin = await nats.connectAs("admin");
    stops.push(() => admin.close());
    return {
      nats,
      master,
      admin,
      signer,
      zesterMaster,
      masterCurvePub,
      settingsDir,
      victim,
      victimLog,
      masterLog,
      attacker,
      work,
      stop,
    };
  } catch (err) {
    await stop();
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

/**
 * Has the server deliver the attacker's stored `$KV.facts.<attacker>` onto `subject`, both ways a
 * peel can: a push consumer with that deliver subject, and a direct get with it as reply-to.
 */
export async function relayOwnFacts(
  nc: NatsConnection,
  attacker: string,
  subject: string,
  name: string,
): Promise<void> {
  const filter = `$KV.facts.${attacker}`;
  const created = await nc.request(
    `$JS.API.CONSUMER.CREATE.KV_facts.${name}.${filter}`,
    JSON.stringify({
      stream_name: "KV_facts",
      config: {
        name,
        deliver_subject: subject,
        ack_policy: "none",
        deliver_policy: "last",
        filter_subject: filter,
      },
    }),
    { timeout: 3000 },
  );
  if (!created.string().includes("consumer_create_response") || created.string().includes('"error"')) {
    throw new Error(`consumer create failed: ${created.string()}`);
  }
  nc.publish(`$JS.API.DIRECT.GET.KV_facts.${filter}`, "", { reply: subject });
  await nc.flush();
}

/** Permission violations the server reported on `nc`, as `<operation> <subject>`. */
export function trackViolations(nc: NatsConnection): string[] {
  const seen: string[] = [];
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error" && s.error.name === "PermissionViolationError") {
        const e = s.error as unknown as { operation: string; subject: string };
        seen.push(`${e.operation} ${e.subject}`);
      }
    }
  })().catch(() => {});
  return seen;
}

/**
 * Publishes (or, with `subscribe`, subscribes) as the attacker and waits for the server's
 * refusal: resolves with "refused (permission violation)" or "ACCEPTED".
 */
export async function attempt(
  nc: NatsConnection,
  violations: string[],
  op: "publish" | "subscription",
  subject: string,
  data: Uint8Array | string = "{}",
): Promise<string> {
  const before = violations.length;
  if (op === "publish") nc.publish(subject, data);
  else nc.subscribe(subject, { max: 1 });
  await nc.flush().catch(() => {});
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    if (violations.slice(before).some((v) => v === `${op} ${subject}`))
      return "refused (permission violation)";
    await new Promise((r) => setTimeout(r, 20));
  }
  return "ACCEPTED";
}
