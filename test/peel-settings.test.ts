/**
 * The settings-files layout (src/settings/bus.ts) and the peel's side of settings, against a real
 * nats-server: publishing, verified fetching, sealed blobs, and the ways a run must fail rather
 * than run with wrong or empty values.
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import { createCurve, type KeyPair } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPairFromCreds } from "../src/auth/signing.js";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import { connect } from "../src/bus/connect.js";
import { peelInboxPrefix } from "../src/bus/names.js";
import type { PeelReturn } from "../src/jobs/wire.js";
import { Peel } from "../src/peel/peel.js";
import {
  fetchSettingsTree,
  getOwnSecrets,
  publishSettingsTree,
  putPeelSecrets,
  SettingsIntegrityError,
  type SettingsRevision,
  settingsBlobKey,
} from "../src/settings/bus.js";
import { encryptValue, sealForPeel } from "../src/settings/crypto.js";
import { prepareSettingsTree, sealSettingsForPeel } from "../src/settings/pipeline.js";
import { returnOf, testCommand } from "./support/commands.js";
import { type StartedNats, startNats } from "./support/nats.js";

const ID = "app-01";
const SECRET = "pg-Pa55-for-app-01";

let nats: StartedNats;
let master: NatsConnection;
let signer: ReturnType<typeof keyPairFromCreds>;
let work: string;
let masterCurve: KeyPair;
let files: KV;
let peel: Peel;

const sha = (s: string | Uint8Array) => createHash("sha256").update(s).digest("hex");

async function revisionOf(kv: KV): Promise<{ rev: number; seq: number }> {
  const e = (await kv.get("revision"))!;
  return { rev: decode<SettingsRevision>(e.value).rev, seq: e.revision };
}

function run(fun: string, args: unknown[] = []): Promise<PeelReturn & Record<string, unknown>> {
  return returnOf(master, testCommand(signer, ID, fun, args));
}

/** Prepares `dir` with the test master key, publishes it and seals app-01's blob. */
async function publish(dir: string): Promise<void> {
  const prepared = await prepareSettingsTree(dir, masterCurve);
  await publishSettingsTree(master, prepared.files, { master: "test" });
  const blob = await sealSettingsForPeel(prepared, masterCurve, {
    id: ID,
    facts: await peel.currentFacts(),
    curvePub: peel.curvePub!,
  });
  await putPeelSecrets(master, ID, blob);
}

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-peel-settings-"));
  const creds = await nats.credsFile("master");
  master = await connect({ servers: nats.url, caFile: nats.caFile, credsFile: creds });
  await bootstrap(master);
  signer = keyPairFromCreds(await readFile(creds, "utf8"));
  masterCurve = createCurve();
  files = await openKv(master, "settings-files");
}, 60_000);

afterAll(async () => {
  await peel?.stop();
  await master?.close();
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("settings-files layout", () => {
  it("publishes blobs, manifest, then revision; writes nothing when unchanged; never wipes", async () => {
    const first = await publishSettingsTree(master, { "top.zy": "base: {}\n", "a.zy": "x: 1\n" });
    expect(first).toMatchObject({ published: true, rev: 1, files: 2, blobsWritten: 2, blobsDeleted: 0 });
    const keys: string[] = [];
    for await (const k of await files.keys()) keys.push(k);
    expect(keys.sort()).toEqual(
      [settingsBlobKey(sha("x: 1\n")), settingsBlobKey(sha("base: {}\n")), "manifest", "revision"].sort(),
    );
    const rev1 = await revisionOf(files);

    expect(await publishSettingsTree(files, { "top.zy": "base: {}\n", "a.zy": "x: 1\n" })).toMatchObject({
      published: false,
      rev: 1,
      reason: "unchanged",
      blobsWritten: 0,
    });
    expect(await revisionOf(files)).toEqual(rev1);

    const logs: string[] = [];
    expect(await publishSettingsTree(files, {}, { log: (m) => logs.push(m) })).toMatchObject({
      published: false,
      rev: 1,
      files: 2,
    });
    expect(logs.join()).toMatch(/empty; keeping published settings revision 1 \(2 files\)/);
    expect(await revisionOf(files)).toEqual(rev1);

    const second = await publishSettingsTree(files, { "top.zy": "base: {}\n", "a.zy": "x: 2\n" });
    expect(second).toMatchObject({ published: true, rev: 2, blobsWritten: 1, blobsDeleted: 1 });
    expect((await files.get(settingsBlobKey(sha("x: 1\n"))))?.operation).toBe("PURGE");
    const got = await fetchSettingsTree(files);
    expect(got).toMatchObject({ rev: 2, files: { "top.zy": "base: {}\n", "a.zy": "x: 2\n" } });
    // Same revision again: the previous result comes back as is.
    expect(await fetchSettingsTree(files, { previous: got })).toBe(got);
  });

  it("fetching refuses an altered blob or manifest", async () => {
    await files.put(settingsBlobKey(sha("x: 2\n")), new TextEncoder().encode("x: 666\n"));
    await expect(fetchSettingsTree(files)).rejects.toThrow(SettingsIntegrityError);
    await expect(fetchSettingsTree(files)).rejects.toThrow(/a\.zy has sha256 .* the manifest says/);
    await files.put(settingsBlobKey(sha("x: 2\n")), new TextEncoder().encode("x: 2\n"));
    expect((await fetchSettingsTree(files)).files["a.zy"]).toBe("x: 2\n");

    const man = (await files.get("manifest"))!.value;
    const m = decode<{ files: Record<string, unknown> }>(man);
    await files.put("manifest", encode({ ...m, files: { ...m.files, "../etc/passwd": m.files["a.zy"] } }));
    await expect(fetchSettingsTree(files)).rejects.toThrow(/manifest sha256 .* does not match/);
    // The next publish replaces the damaged revision instead of calling it unchanged.
    const logs: string[] = [];
    const again = await publishSettingsTree(
      files,
      { "top.zy": "base: {}\n", "a.zy": "x: 2\n" },
      { log: (l) => logs.push(l) },
    );
    expect(again).toMatchObject({ published: true, rev: 3 });
    expect(logs.join()).toMatch(/damaged/);
    expect((await fetchSettingsTree(files)).files).toEqual({ "top.zy": "base: {}\n", "a.zy": "x: 2\n" });
  });

  it("putPeelSecrets writes only when the bytes change; the peel reads only its own key", async () => {
    const secrets = await openKv(master, "secrets");
    expect(await putPeelSecrets(secrets, "other-01", '{"a":1}')).toBe(true);
    expect(await putPeelSecrets(secrets, "other-01", '{"a":1}')).toBe(false);
    expect(await putPeelSecrets(master, "other-01", '{"a":2}')).toBe(true);
    const nc = await connect({
      servers: nats.url,
      caFile: nats.caFile,
      credsFile: await nats.credsFile("other-01"),
      inboxPrefix: peelInboxPrefix("other-01"),
      reconnect: false,
    });
    try {
      const own = await openKv(nc, "secrets");
      expect(await getOwnSecrets(own, "other-01")).toBe('{"a":2}');
      await expect(getOwnSecrets(own, ID)).rejects.toThrow(/[Pp]ermission/);
    } finally {
      await nc.close();
    }
  });
});

describe("the peel's settings", () => {
  let treeDir: string;
  let target: string;
  const logs: string[] = [];

  beforeAll(async () => {
    treeDir = join(work, "tree");
    target = join(work, "target");
    await mkdir(treeDir, { recursive: true });
    // A states tree for the peel: one file written from a setting and a secret.
    const states = join(work, "states-src");
    await mkdir(states, { recursive: true });
    const { StatePublisher } = await import("../src/master/state-publisher.js");
    await writeFile(
      join(states, "conf.zy"),
      [
        "conf:",
        "  file.managed:",
        `    - name: ${target}/app.conf`,
        '    - content: "{{ settings.app.name }}:{{ pillar.app.password }}"',
        "    - makedirs: true",
        "",
      ].join("\n"),
    );
    await new StatePublisher(await openKv(master, "state-files"), states, "test").publish();
    peel = new Peel({
      id: ID,
      servers: nats.url,
      credsFile: await nats.credsFile(ID),
      caFile: nats.caFile,
      cacheDir: join(work, "cache"),
      customFactsDir: join(work, "no-facts"),
      trustedMasters: new Set([signer.getPublicKey()]),
      masterCurvePub: masterCurve.getPublicKey(),
      factsIntervalMs: 3_600_000,
      heartbeatMs: 3_600_000,
      logger: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
    });
    const synced = new Promise((r) => peel.once("states", r));
    await peel.start();
    await peel.waitConnected();
    await synced;
  });

  it("publishes its curve public key as the curve_pub fact and keeps the seed 0600", async () => {
    const facts = await openKv(master, "facts");
    const e = await facts.get(ID);
    expect(decode<Record<string, unknown>>(e!.value).curve_pub).toBe(peel.curvePub);
    expect((await stat(join(work, "cache", "curve.nk"))).mode & 0o777).toBe(0o600);
  });

  it("resolves, masks, saves a 0600 snapshot, and answers settings.refresh", async () => {
    await writeFile(join(treeDir, "top.zy"), "base:\n  '*':\n    - app\n");
    await writeFile(
      join(treeDir, "app.zy"),
      `app:\n  name: "{{ id }}"\n  password: !encrypted ${encryptValue(SECRET, masterCurve.getPublicKey())}\n`,
    );
    await publish(treeDir);
    const refresh = await run("settings.refresh");
    expect(refresh).toMatchObject({
      success: true,
      settings_source: "bus",
      return: { source: "bus", keys: 1 },
    });
    const ret = await run("state.apply", ["conf"]);
    expect(ret, JSON.stringify(ret)).toMatchObject({ success: true, settings_source: "bus" });
    expect(await readFile(join(target, "app.conf"), "utf8")).toBe(`${ID}:${SECRET}\n`);
    expect(JSON.stringify(ret)).not.toContain(SECRET);
    expect(await run("pillar.items")).toMatchObject({ return: { app: { name: ID, password: "****" } } });
    expect(await run("settings.get", ["app:nope", "fallback"])).toMatchObject({ return: "fallback" });

    const snap = join(work, "cache", "settings-snapshot.json");
    expect((await stat(snap)).mode & 0o777).toBe(0o600);
    expect((await stat(join(work, "cache", "settings-secrets.json"))).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(snap, "utf8")).settings.app.password).toBe(SECRET);
  });

  it("fails the run (no snapshot fallback) on an unresolved placeholder", async () => {
    // The master sealed nothing that matches: the secret is missing, not empty.
    await (await openKv(master, "secrets")).put(ID, sealForPeel(masterCurve, peel.curvePub!, {}));
    const ret = await run("state.apply", ["conf"]);
    expect(ret.success).toBe(false);
    expect(ret.error).toMatch(/settings could not be resolved: 1 settings value references? a secret/);
    expect(ret.error).toMatch(/app\.password: ZESTER_SECRET\[/);
    expect(ret.results).toBeUndefined();
    expect(ret.settings_source).toBeUndefined();
  });

  it("fails the run on a blob from an untrusted master key", async () => {
    const rogue = createCurve();
    await (await openKv(master, "secrets")).put(ID, sealForPeel(rogue, peel.curvePub!, { x: "y" }));
    const ret = await run("state.apply", ["conf"]);
    expect(ret.success).toBe(false);
    expect(ret.error).toMatch(/not a trusted master key/);
    expect(ret.error).toMatch(/app\.password/);
  });

  it("fails the run on a tampered manifest even with a snapshot at hand", async () => {
    await publish(treeDir);
    expect((await run("state.apply", ["conf"])).success).toBe(true);
    const cur = decode<SettingsRevision>((await files.get("revision"))!.value);
    await files.put("revision", encode({ ...cur, manifest_sha256: "0".repeat(64) }));
    const ret = await run("state.apply", ["conf"]);
    expect(ret.success).toBe(false);
    expect(ret.error).toMatch(/manifest sha256 .* does not match/);
    // A good revision again: back to normal.
    await files.put("revision", encode(cur));
    expect((await run("settings.items")).success).toBe(true);
    for (const line of logs) expect(line).not.toContain(SECRET);
  });
});

describe("a master without its curve key", () => {
  it("publishes the settings without secrets, seals nothing, and says so once", async () => {
    const { FleetView } = await import("../src/master/fleet-view.js");
    const { SettingsPublisher } = await import("../src/master/settings.js");
    const dir = join(work, "no-key-tree");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "top.zy"), "base:\n  '*':\n    - s\n");
    await writeFile(
      join(dir, "s.zy"),
      `token: !encrypted ${encryptValue("tok-123", masterCurve.getPublicKey())}\nplain: 1\n`,
    );
    const fleet = new FleetView();
    fleet.index.upsert(ID, { id: ID, curve_pub: peel.curvePub });
    const logs: string[] = [];
    const secrets = await openKv(master, "secrets");
    const before = (await secrets.get(ID))?.revision;
    const pub = new SettingsPublisher({
      files,
      secrets,
      dir,
      masterId: "keyless",
      masterCurve: undefined,
      masterCurvePath: "/etc/zester/auth/master-curve.nk",
      fleet,
      log: (m) => logs.push(m),
    });
    const res = await pub.publish();
    expect(res).toMatchObject({ published: true, secretsSealed: false, sealed: [] });
    expect(await pub.publish()).toMatchObject({ published: false, reason: "unchanged" });
    expect(logs.filter((l) => /refusing to publish secrets: no master curve key at/.test(l))).toHaveLength(1);
    const tree = await fetchSettingsTree(files);
    expect(tree.files["s.zy"]).toMatch(/^token: "?ZESTER_SECRET\[/);
    expect(tree.files["s.zy"]).not.toContain("ENC[");
    expect((await secrets.get(ID))?.revision).toBe(before);
  });
});
