import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { createCurve } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { connect } from "../src/bus/connect.js";
import { peelInboxPrefix } from "../src/bus/names.js";
import { encryptValue, openPeelSecrets, sealForPeel } from "../src/settings/crypto.js";
import { SecretError } from "../src/settings/errors.js";
import { prepareSettingsTree, resolvePeelSettings, sealSettingsForPeel } from "../src/settings/pipeline.js";
import { type StartedNats, startNats } from "./support/nats.js";

let nats: StartedNats;
let treeDir: string | undefined;
const conns: NatsConnection[] = [];

async function as(who: string): Promise<NatsConnection> {
  const nc = await connect({
    servers: nats.url,
    caFile: nats.caFile,
    credsFile: await nats.credsFile(who),
    ...(who.startsWith("web-") ? { inboxPrefix: peelInboxPrefix(who) } : {}),
    reconnect: false,
  });
  conns.push(nc);
  return nc;
}

beforeAll(async () => {
  nats = await startNats();
  await bootstrap(await as("master"));
}, 60_000);
afterAll(async () => {
  for (const nc of conns) await nc.close().catch(() => {});
  if (treeDir) await rm(treeDir, { recursive: true, force: true });
  await nats?.stop();
});

describe("sealed secrets in the secrets bucket (real nats-server)", () => {
  it("only web-01 can read its key, and only web-01's curve key can open the blob", async () => {
    const masterCurve = createCurve();
    const web01 = createCurve();
    const web02 = createCurve();
    const blob = sealForPeel(masterCurve, web01.getPublicKey(), { abc: "hunter2-db" });

    const master = await as("master");
    await (await openKv(master, "secrets")).put("web-01", blob);

    // web-01 reads its own key with its own creds and opens it.
    const peel1 = await as("web-01");
    const entry = await (await openKv(peel1, "secrets")).get("web-01");
    expect(entry).not.toBeNull();
    const got = new TextDecoder().decode(entry!.value);
    expect(got).toBe(blob);
    expect(openPeelSecrets(web01, masterCurve.getPublicKey(), got)).toEqual({ abc: "hunter2-db" });

    // web-02's creds are refused web-01's key by the server.
    const peel2 = await as("web-02");
    const kv2 = await new Kvm(peel2).open("secrets", { allow_direct: true, timeout: 2000 });
    const err = await kv2.get("web-01").then(
      () => undefined,
      (e: unknown) => e as { name?: string; message?: string; cause?: { name?: string } },
    );
    expect(err).toBeDefined();
    expect(err?.cause?.name ?? err?.name).toBe("PermissionViolationError");
    expect(err?.message).toContain("$JS.API.DIRECT.GET.KV_secrets.$KV.secrets.web-01");

    // Even holding the bytes, web-02's curve key cannot open web-01's blob.
    let openErr: unknown;
    try {
      openPeelSecrets(web02, masterCurve.getPublicKey(), got);
    } catch (e) {
      openErr = e;
    }
    expect(openErr).toBeInstanceOf(SecretError);
  });

  it("the whole pipeline through KV: prepare, seal per peel, fetch with peel creds, resolve", async () => {
    const masterCurve = createCurve();
    treeDir = await mkdtemp(join(tmpdir(), "zester-settings-nats-"));
    await mkdir(join(treeDir, "web"), { recursive: true });
    const enc = encryptValue("pg-secret-42", masterCurve.getPublicKey());
    await writeFile(join(treeDir, "top.zy"), "base:\n  'web-*':\n    - web\n");
    await writeFile(
      join(treeDir, "web/init.zy"),
      `db:\n  password: !encrypted ${enc}\n  url: "pg://{{ id }}"\n`,
    );
    const prepared = await prepareSettingsTree(treeDir, masterCurve);

    const master = await as("master");
    const files = await openKv(master, "settings-files");
    for (const [path, text] of Object.entries(prepared.files)) await files.put(path, text);
    const web01 = createCurve();
    const blob = await sealSettingsForPeel(prepared, masterCurve, {
      id: "web-01",
      facts: { role: "webserver" },
      curvePub: web01.getPublicKey(),
    });
    await (await openKv(master, "secrets")).put("web-01", blob);

    const peel = await as("web-01");
    const pfiles = await openKv(peel, "settings-files");
    const fetched = await (await openKv(peel, "secrets")).get("web-01");
    const read = async (rel: string) => {
      const e = await pfiles.get(rel);
      return e && e.operation === "PUT" ? new TextDecoder().decode(e.value) : undefined;
    };
    expect(await read("web/init.zy")).not.toContain("ENC[");
    const res = await resolvePeelSettings({
      files: read,
      facts: { role: "webserver" },
      peelId: "web-01",
      peelCurve: web01,
      masterCurvePub: masterCurve.getPublicKey(),
      blob: fetched!.value,
    });
    expect(res.settings).toEqual({ db: { password: "pg-secret-42", url: "pg://web-01" } });
    expect(Object.values(res.secrets)).toEqual(["pg-secret-42"]);
  });
});
