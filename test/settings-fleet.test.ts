/**
 * Settings and sealed secrets end to end: a real nats-server, a real Master publishing a
 * settings tree with `!encrypted` values, real Peels resolving their own settings in states.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import { connect } from "../src/bus/connect.js";
import { peelInboxPrefix, subjects } from "../src/bus/names.js";
import { JobStore } from "../src/jobs/store.js";
import type { DispatchReply, PeelReturn } from "../src/jobs/wire.js";
import { type Master, SETTINGS_PUBLISH_SUBJECT, type SettingsPublishSummary } from "../src/master/index.js";
import { Peel } from "../src/peel/peel.js";
import { encryptValue, openPeelSecrets } from "../src/settings/crypto.js";
import { SecretError } from "../src/settings/errors.js";
import { ensurePeelCurveKey, writeMasterCurveKey } from "../src/settings/keys.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

const SECRET_ONE = "S3cret-one-7f3a";
const SECRET_TWO = "S3cret-two-91bc";

let nats: StartedNats;
let work: string;
let settingsDir: string;
let target: string;
let masterPub: string;
let master: Master;
let admin: NatsConnection;
let masterNc: NatsConnection;
let store: JobStore;
const peels = new Map<string, Peel>();
const logs: string[] = [];

const logger = {
  info: (m: string) => logs.push(m),
  warn: (m: string) => logs.push(m),
  error: (m: string) => logs.push(m),
};

async function writeSettings(secret: string, user: string, otherRole: string): Promise<void> {
  await writeFile(join(settingsDir, "top.zy"), "base:\n  'web-01':\n    - web\n  'web-02':\n    - other\n");
  await writeFile(
    join(settingsDir, "web.zy"),
    `role: web\ndb:\n  user: ${user}\n  password: !encrypted ${encryptValue(secret, masterPub)}\n`,
  );
  await writeFile(join(settingsDir, "other.zy"), `role: ${otherRole}\n`);
}

async function startPeel(id: string): Promise<Peel> {
  const p = new Peel({
    id,
    servers: nats.url,
    credsFile: await nats.credsFile(id),
    caFile: nats.caFile,
    // The trusted master curve key comes from <authDir>/master-curve.pub.
    authDir: nats.authDir,
    cacheDir: join(work, id, "cache"),
    customFactsDir: join(work, "no-facts"),
    trustedMasters: new Set([master.publicKey]),
    heartbeatMs: 2_000,
    factsIntervalMs: 3_600_000,
    // Generous: a fetch slower than this falls back to the snapshot, and a run on a loaded machine
    // would then apply the settings from before a publish (the tests expect fresh ones). The
    // snapshot test stops the server, which fails the fetch at once whatever the timeout.
    settingsFetchTimeoutMs: 20_000,
    logger,
  });
  peels.set(id, p);
  await p.start();
  await p.waitConnected();
  return p;
}

async function dispatch(peel: string, fun: string, args: unknown[] = []): Promise<PeelReturn> {
  const reply = await admin.request(
    subjects.dispatch,
    encode({ target: peel, fun, args, kwargs: {}, timeout_s: 30 }),
    { timeout: 10_000 },
  );
  const d = decode<DispatchReply>(reply.data);
  expect(d.error, d.error).toBeUndefined();
  return waitFor(`${fun} return from ${peel}`, async () => (await store.returnsOf(d.jid!, [peel])).get(peel));
}

async function requestSettingsPublish(): Promise<SettingsPublishSummary> {
  const r = await admin.request(SETTINGS_PUBLISH_SUBJECT, encode({}), { timeout: 10_000 });
  return decode<SettingsPublishSummary>(r.data);
}

async function allValues(kv: KV): Promise<string[]> {
  const out: string[] = [];
  for await (const k of await kv.keys()) {
    const e = await kv.get(k);
    if (e && e.operation === "PUT") out.push(`${k}=${new TextDecoder().decode(e.value)}`);
  }
  return out;
}

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-settings-fleet-"));
  settingsDir = join(work, "settings");
  target = join(work, "target");
  const statesDir = join(work, "states");
  await mkdir(settingsDir, { recursive: true });
  await mkdir(statesDir, { recursive: true });
  await writeFile(
    join(statesDir, "app.zy"),
    [
      "db_conf:",
      "  file.managed:",
      `    - name: ${target}/{{ facts.id }}-db.conf`,
      '    - content: "password={{ settings.db.password }} user={{ pillar.db.user }}"',
      "    - makedirs: true",
      "",
    ].join("\n"),
  );
  masterPub = (await writeMasterCurveKey(nats.authDir)).publicKey;
  await writeSettings(SECRET_ONE, "app", "db");

  master = await startTestMaster(nats, {
    id: "master-s",
    statesDir,
    settingsDir,
    publishIntervalMs: 3_600_000,
    log: (m) => logs.push(`master: ${m}`),
  });
  masterNc = await nats.connectAs("master");
  admin = await nats.connectAs("admin");
  store = await JobStore.open(admin);

  for (const id of ["web-01", "web-02"]) {
    const p = await startPeel(id);
    await waitFor(`${id} to sync states`, async () => (await p.states.currentRev()) !== undefined);
  }
  // The master seals once it has seen web-01's curve_pub fact.
  const secrets = await openKv(masterNc, "secrets");
  await waitFor("web-01's sealed secrets", async () => (await secrets.get("web-01"))?.operation === "PUT");
}, 90_000);

afterAll(async () => {
  for (const p of peels.values()) await p.stop().catch(() => {});
  await master?.stop();
  await admin?.close().catch(() => {});
  await masterNc?.close().catch(() => {});
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("settings and secrets through a real master and real peels", () => {
  let firstReturn: PeelReturn;

  it("a peel publishes its curve key as a fact and reads its own settings and secret in a state", async () => {
    const facts = decode<Record<string, unknown>>(
      (await (await openKv(masterNc, "facts")).get("web-01"))!.value,
    );
    expect(facts.curve_pub).toBe(peels.get("web-01")!.curvePub);
    expect(facts.curve_pub).toMatch(/^X[A-Z2-7]{55}$/);

    firstReturn = await dispatch("web-01", "state.apply", ["app"]);
    expect(firstReturn, JSON.stringify(firstReturn)).toMatchObject({
      success: true,
      settings_source: "bus",
      summary: { total: 1, changed: 1 },
    });
    expect(await readFile(join(target, "web-01-db.conf"), "utf8")).toBe(`password=${SECRET_ONE} user=app\n`);
    // The diff and changes carried the content: masked, not removed.
    const json = JSON.stringify(firstReturn);
    expect(json).not.toContain(SECRET_ONE);
    expect(json).toContain("password=****");

    const get = await dispatch("web-01", "settings.get", ["db:password"]);
    expect(get).toMatchObject({ success: true, return: "****" });
    expect(await dispatch("web-01", "pillar.get", ["db:user"])).toMatchObject({
      success: true,
      return: "app",
    });
    expect((await dispatch("web-01", "settings.keys")).return).toEqual(["db", "role"]);
    const shown = await dispatch("web-01", "state.show_sls", ["app"]);
    expect(shown.success).toBe(true);
    expect(JSON.stringify(shown.return)).toContain("password=****");
    expect(JSON.stringify(shown)).not.toContain(SECRET_ONE);

    // web-02's settings hold no secret; its run resolves without one.
    expect(await dispatch("web-02", "settings.items")).toMatchObject({
      success: true,
      return: { role: "db" },
    });
  });

  it("another peel can neither read web-01's secrets key nor open its blob", async () => {
    const nc2 = await connect({
      servers: nats.url,
      credsFile: await nats.credsFile("web-02"),
      caFile: nats.caFile,
      inboxPrefix: peelInboxPrefix("web-02"),
      reconnect: false,
    });
    try {
      const kv2 = await new Kvm(nc2).open("secrets", { allow_direct: true, timeout: 2_000 });
      const err = (await kv2.get("web-01").then(
        () => undefined,
        (e: unknown) => e,
      )) as { name?: string; message?: string; cause?: { name?: string } } | undefined;
      expect(err).toBeDefined();
      expect(err?.cause?.name ?? err?.name).toBe("PermissionViolationError");
      // Its own key reads fine (and holds nothing: it needs no secret).
      expect(await kv2.get("web-02")).toBeNull();
    } finally {
      await nc2.close();
    }
    const blob = (await (await openKv(masterNc, "secrets")).get("web-01"))!.value;
    const web02Curve = await ensurePeelCurveKey(join(work, "web-02", "cache"));
    expect(() => openPeelSecrets(web02Curve, masterPub, blob)).toThrow(SecretError);
    const web01Curve = await ensurePeelCurveKey(join(work, "web-01", "cache"));
    expect(Object.values(openPeelSecrets(web01Curve, masterPub, blob))).toEqual([SECRET_ONE]);
  });

  it("the plaintext is in no KV value: settings-files, secrets, job-returns", async () => {
    const values = [
      ...(await allValues(await openKv(masterNc, "settings-files"))),
      ...(await allValues(await openKv(masterNc, "secrets"))),
      ...(await allValues(await openKv(masterNc, "job-returns"))),
    ];
    expect(values.some((v) => v.startsWith("revision="))).toBe(true);
    expect(values.some((v) => v.startsWith("web-01={"))).toBe(true);
    expect(values.some((v) => v.includes(firstReturn.jid))).toBe(true);
    for (const v of values) {
      expect(v).not.toContain(SECRET_ONE);
      // Neither the master's ciphertext nor the plaintext: placeholders only.
      expect(v).not.toContain("ENC[nkey,");
    }
    expect(values.join("\n")).toContain("ZESTER_SECRET[");
  });

  it("I@role:web targeting follows a settings change", async () => {
    await master.settingsSettled();
    await waitFor(
      "I@role:web on web-01",
      () => master.fleet.resolve("I@role:web").join() === "web-01" || undefined,
    );
    const before = await admin.request(subjects.targetResolve, encode({ target: "I@role:db" }), {
      timeout: 5_000,
    });
    expect(decode<{ peels?: string[] }>(before.data).peels).toEqual(["web-02"]);

    await writeSettings(SECRET_ONE, "app", "web");
    const res = await requestSettingsPublish();
    expect(res).toMatchObject({ published: true, secretsSealed: true, sealed: [] });
    await waitFor(
      "I@role:web on both",
      () => master.fleet.resolve("I@role:web").join() === "web-01,web-02" || undefined,
    );
    expect(master.fleet.resolve("I@role:db")).toEqual([]);
    // Republishing the same tree writes nothing.
    expect(await requestSettingsPublish()).toMatchObject({
      published: false,
      reason: "unchanged",
      sealed: [],
    });
  });

  it("a settings change (new secret value) reaches the peel on its next run", async () => {
    await writeSettings(SECRET_TWO, "app2", "web");
    const res = await requestSettingsPublish();
    expect(res).toMatchObject({ published: true, sealed: ["web-01"] });
    const ret = await dispatch("web-01", "state.apply", ["app"]);
    expect(ret, JSON.stringify(ret)).toMatchObject({ success: true, summary: { changed: 1 } });
    expect(await readFile(join(target, "web-01-db.conf"), "utf8")).toBe(`password=${SECRET_TWO} user=app2\n`);
    const json = JSON.stringify(ret);
    // The diff shows the old and the new value: both masked.
    expect(json).not.toContain(SECRET_ONE);
    expect(json).not.toContain(SECRET_TWO);
    for (const line of logs) {
      expect(line).not.toContain(SECRET_ONE);
      expect(line).not.toContain(SECRET_TWO);
    }
  });

  it("uses the snapshot while the server is down; a peel that never resolved fails clearly", async () => {
    const web01 = peels.get("web-01")!;
    const snap = join(work, "web-01", "cache", "settings-snapshot.json");
    expect(existsSync(snap)).toBe(true);
    const fresh = new Peel({
      id: "web-03",
      servers: nats.url,
      credsFile: await nats.credsFile("web-03"),
      caFile: nats.caFile,
      cacheDir: join(work, "web-03", "cache"),
      customFactsDir: join(work, "no-facts"),
      trustedMasters: new Set([master.publicKey]),
      masterCurvePub: masterPub,
      connectRetryMs: 60_000,
      logger,
    });
    peels.set("web-03", fresh);

    await master.stop();
    const down = new Promise<void>((r) => web01.once("disconnected", () => r()));
    await nats.stop();
    await down;

    await rm(join(target, "web-01-db.conf"));
    const ret = await web01.applyLocal({ sls: ["app"] });
    expect(ret, JSON.stringify(ret)).toMatchObject({
      success: true,
      settings_source: "snapshot",
      settings_warning: expect.stringMatching(
        /not connected to NATS; using the last-known-good settings saved at/,
      ),
    });
    expect(await readFile(join(target, "web-01-db.conf"), "utf8")).toBe(`password=${SECRET_TWO} user=app2\n`);
    expect(JSON.stringify(ret)).not.toContain(SECRET_TWO);

    await fresh.start();
    expect(fresh.connected).toBe(false);
    const failed = await fresh.applyLocal({ sls: ["app"] });
    expect(failed.success).toBe(false);
    expect(failed.error).toMatch(
      /settings could not be resolved: not connected to NATS, and no last-known-good settings/,
    );
    expect(failed.error).toMatch(/never resolved its settings/);
  });
});
