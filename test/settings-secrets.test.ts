import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createCurve } from "@nats-io/nkeys";
import { afterEach, describe, expect, it } from "vitest";
import { decryptValue, encryptValue, openPeelSecrets, sealForPeel } from "../src/settings/crypto.js";
import { NoSnapshotError, SecretError, SettingsError } from "../src/settings/errors.js";
import { includeClosure, resolveTemplateName } from "../src/settings/includes.js";
import {
  ensurePeelCurveKey,
  loadMasterCurve,
  loadMasterCurvePub,
  MASTER_CURVE_FILES,
  peelCurveKeyPath,
  writeMasterCurveKey,
} from "../src/settings/keys.js";
import { prepareSettingsTree, resolvePeelSettings, sealSettingsForPeel } from "../src/settings/pipeline.js";
import {
  MASK,
  maskSecrets,
  placeholder,
  secretMasker,
  substituteSecrets,
} from "../src/settings/placeholders.js";
import { peelSecretIds, resolveSettings } from "../src/settings/resolve.js";
import { openExtractedSecrets, sanitizeSettingsTree } from "../src/settings/sanitize.js";
import { loadSnapshot, saveSnapshot, snapshotPath } from "../src/settings/snapshot.js";
import { readSettingsTree } from "../src/settings/source.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "zester-secrets-"));
  dirs.push(d);
  return d;
}
async function writeTree(dir: string, files: Record<string, string>) {
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), text);
  }
}
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}

const DB_PASSWORD = "s3cr3t-Db-PaSS!";
const API_KEY = "api-KEY-0123456789";
const CERT_KEY = "-----BEGIN KEY-----\nabc\n-----END KEY-----";

describe("encrypted values (operator → master)", () => {
  it("round-trips through the master's curve key and fails loudly for any other key", () => {
    const master = createCurve();
    const enc = encryptValue(DB_PASSWORD, master.getPublicKey());
    expect(enc).toMatch(/^ENC\[nkey,[A-Za-z0-9+/=]+\]$/);
    expect(enc).not.toContain(DB_PASSWORD);
    expect(encryptValue(DB_PASSWORD, master.getPublicKey())).not.toBe(enc);
    expect(decryptValue(master, enc)).toBe(DB_PASSWORD);
    const other = createCurve();
    const err = thrown(() => decryptValue(other, enc));
    expect(err).toBeInstanceOf(SecretError);
    expect((err as Error).message).toContain("does not open");
    // One flipped byte in the box: an error, never an empty string.
    const raw = Buffer.from(enc.slice("ENC[nkey,".length, -1), "base64");
    raw.writeUInt8(raw.readUInt8(raw.length - 5) ^ 1, raw.length - 5);
    const tampered = `ENC[nkey,${raw.toString("base64")}]`;
    expect(thrown(() => decryptValue(master, tampered))).toBeInstanceOf(SecretError);
    expect(thrown(() => decryptValue(master, "ENC[nkey,AAAA]"))).toBeInstanceOf(SecretError);
  });
});

describe("master and peel curve keys", () => {
  it("keygen writes a 0600 seed and a public key, refuses to overwrite without force", async () => {
    const dir = await tempDir();
    const res = await writeMasterCurveKey(dir);
    expect((await stat(res.seedPath)).mode & 0o777).toBe(0o600);
    expect(res.seedPath).toBe(join(dir, MASTER_CURVE_FILES.seed));
    expect(await loadMasterCurvePub(dir)).toBe(res.publicKey);
    expect((await loadMasterCurve(dir)).getPublicKey()).toBe(res.publicKey);
    await expect(writeMasterCurveKey(dir)).rejects.toThrow(/already exists/);
    const again = await writeMasterCurveKey(dir, { force: true });
    expect(again.publicKey).not.toBe(res.publicKey);
    await expect(loadMasterCurve(join(dir, "missing"))).rejects.toThrow(/settings keygen/);
  });

  it("a peel key is generated once (0600) and reused", async () => {
    const cache = join(await tempDir(), "cache");
    const a = await ensurePeelCurveKey(cache);
    const b = await ensurePeelCurveKey(cache);
    expect(b.getPublicKey()).toBe(a.getPublicKey());
    expect((await stat(peelCurveKeyPath(cache))).mode & 0o777).toBe(0o600);
  });
});

describe("sealed per-peel blobs (master → peel)", () => {
  const master = createCurve();
  const peel = createCurve();
  const otherPeel = createCurve();
  const secrets = { aaa: DB_PASSWORD, bbb: API_KEY };

  it("opens for the recipient with the trusted master key", () => {
    const blob = sealForPeel(master, peel.getPublicKey(), secrets);
    expect(blob).not.toContain(DB_PASSWORD);
    expect(openPeelSecrets(peel, master.getPublicKey(), blob)).toEqual(secrets);
    expect(openPeelSecrets(peel, [createCurve().getPublicKey(), master.getPublicKey()], blob)).toEqual(
      secrets,
    );
  });

  it("another peel's key cannot open it", () => {
    const blob = sealForPeel(master, peel.getPublicKey(), secrets);
    const err = thrown(() => openPeelSecrets(otherPeel, master.getPublicKey(), blob));
    expect(err).toBeInstanceOf(SecretError);
    // Even with the envelope's recipient rewritten, the box does not open.
    const env = JSON.parse(blob) as { to: string };
    env.to = otherPeel.getPublicKey();
    expect(
      thrown(() => openPeelSecrets(otherPeel, master.getPublicKey(), JSON.stringify(env))),
    ).toBeInstanceOf(SecretError);
  });

  it("a blob not sealed by a trusted master is refused", () => {
    const forger = createCurve();
    const blob = sealForPeel(forger, peel.getPublicKey(), secrets);
    const err = thrown(() => openPeelSecrets(peel, master.getPublicKey(), blob));
    expect((err as Error).message).toContain("not a trusted master key");
    const env = JSON.parse(blob) as { from: string };
    env.from = master.getPublicKey();
    expect(thrown(() => openPeelSecrets(peel, master.getPublicKey(), JSON.stringify(env)))).toBeInstanceOf(
      SecretError,
    );
  });

  it("tampering is an error, never an empty value", () => {
    const blob = sealForPeel(master, peel.getPublicKey(), secrets);
    const env = JSON.parse(blob) as { data: string };
    const bytes = Buffer.from(env.data, "base64");
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0x40, bytes.length - 1);
    const tampered = JSON.stringify({ ...env, data: bytes.toString("base64") });
    const err = thrown(() => openPeelSecrets(peel, master.getPublicKey(), tampered));
    expect(err).toBeInstanceOf(SecretError);
    expect((err as Error).message).toContain("failed to open");
    expect(thrown(() => openPeelSecrets(peel, master.getPublicKey(), blob.slice(0, 40)))).toBeInstanceOf(
      SecretError,
    );
    expect(thrown(() => openPeelSecrets(peel, master.getPublicKey(), "{}"))).toBeInstanceOf(SecretError);
  });
});

describe("placeholders", () => {
  it("substitutes whole values, values inside strings, list items and keys", () => {
    const tree = {
      db: { password: placeholder("p1"), url: `postgres://app:${placeholder("p1")}@db/app` },
      keys: [placeholder("k1"), "plain"],
      [`key-${placeholder("k1")}`]: 1,
    };
    expect(substituteSecrets(tree, { p1: DB_PASSWORD, k1: API_KEY })).toEqual({
      db: { password: DB_PASSWORD, url: `postgres://app:${DB_PASSWORD}@db/app` },
      keys: [API_KEY, "plain"],
      [`key-${API_KEY}`]: 1,
    });
  });

  it("an unresolved placeholder is an error naming every key path", () => {
    const tree = {
      db: { password: placeholder("p1"), url: `x:${placeholder("zz")}@y` },
      l: [placeholder("zz")],
    };
    const err = thrown(() => substituteSecrets(tree, { p1: "x" })) as SecretError;
    expect(err).toBeInstanceOf(SecretError);
    expect(err.keyPaths).toEqual(["db.url", "l[0]"]);
    expect(err.message).toContain("db.url");
    const none = thrown(() => substituteSecrets(tree, undefined)) as SecretError;
    expect(none.keyPaths).toEqual(["db.password", "db.url", "l[0]"]);
    expect(none.message).toContain("no sealed secrets were delivered");
  });

  it("masks plaintexts everywhere, including JSON-escaped multi-line secrets", () => {
    const out = {
      comment: `connected with ${DB_PASSWORD} ok`,
      nested: [{ stdout: `key=${API_KEY}` }, 3, null],
      json: JSON.stringify({ key: CERT_KEY }),
      [DB_PASSWORD]: true,
    };
    const masked = maskSecrets(out, { a: DB_PASSWORD, b: API_KEY, c: CERT_KEY, empty: "" });
    const text = JSON.stringify(masked);
    for (const s of [DB_PASSWORD, API_KEY, "abc\\n"]) expect(text).not.toContain(s);
    expect(masked.comment).toBe(`connected with ${MASK} ok`);
    expect(masked.nested).toEqual([{ stdout: `key=${MASK}` }, 3, null]);
    expect(masked).toHaveProperty(MASK, true);
    expect(out.comment).toContain(DB_PASSWORD);
    expect(secretMasker([DB_PASSWORD])(`log: ${DB_PASSWORD}`)).toBe(`log: ${MASK}`);
  });
});

describe("sanitize → seal → resolve (the whole pipeline)", () => {
  it("publishes no ciphertext or plaintext and resolves the secrets on the right peel only", async () => {
    const authDir = await tempDir();
    const { publicKey: masterPub } = await writeMasterCurveKey(authDir);
    const masterCurve = await loadMasterCurve(authDir);
    const dbEnc = encryptValue(DB_PASSWORD, masterPub);
    const apiEnc = encryptValue(API_KEY, masterPub);
    const certEnc = encryptValue(CERT_KEY, masterPub);
    const src = await tempDir();
    await writeTree(src, {
      "top.zy": "base:\n  '*':\n    - common\n  'web-*':\n    - web\n",
      "common.zy": `ntp: pool.ntp.org\napi:\n  key: !encrypted ${apiEnc}\n`,
      "web.zy": [
        "postgres:",
        "  app:",
        `    password: !encrypted ${dbEnc}  # rotated 2026-01`,
        "    url: https://app:{{ settings.api.key }}@api/v1",
        "  tls:",
        "    key: !encrypted |",
        `      ${certEnc}`,
        "",
        "    bundle: {{ facts.os }}",
        "",
      ].join("\n"),
    });
    const tree = sanitizeSettingsTree(await readSettingsTree(src));
    // Byte-level: nothing secret, and nothing sealed for the master, is left in what gets published.
    const published = Buffer.from(JSON.stringify(tree.files));
    for (const needle of [DB_PASSWORD, API_KEY, "BEGIN KEY", "ENC[nkey,", "!encrypted", dbEnc.slice(9, 40)]) {
      expect(published.includes(Buffer.from(needle))).toBe(false);
    }
    expect(Object.values(tree.secrets).map((s) => [s.file, s.keyPath, s.line])).toEqual([
      ["common.zy", "api.key", 3],
      ["web.zy", "postgres.app.password", 3],
      ["web.zy", "postgres.tls.key", 6],
    ]);
    // Lines are preserved so later errors still point at the operator's lines.
    const original = await readFile(join(src, "web.zy"), "utf8");
    expect(tree.files["web.zy"]!.split("\n")).toHaveLength(original.split("\n").length);
    expect(tree.files["web.zy"]!.split("\n")[8]).toBe("    bundle: {{ facts.os }}");
    // Stable ids: sanitizing again gives the same placeholders.
    expect(sanitizeSettingsTree(await readSettingsTree(src)).files).toEqual(tree.files);

    const plain = openExtractedSecrets(masterCurve, tree.secrets);
    const webIds = await peelSecretIds({
      files: tree.files,
      facts: { role: "webserver" },
      peelId: "web-01",
      secrets: tree.secrets,
    });
    const dbIds = await peelSecretIds({
      files: tree.files,
      facts: { role: "database" },
      peelId: "db-01",
      secrets: tree.secrets,
    });
    expect(webIds).toHaveLength(3);
    expect(dbIds).toEqual([Object.values(tree.secrets)[0]!.id]);

    const webCurve = createCurve();
    const pick = (ids: string[]) => Object.fromEntries(ids.map((id) => [id, plain[id]!]));
    const blob = sealForPeel(masterCurve, webCurve.getPublicKey(), pick(webIds));
    const opened = openPeelSecrets(webCurve, masterPub, blob);
    const settings = await resolveSettings({
      files: tree.files,
      facts: { role: "webserver", os: "Debian" },
      peelId: "web-01",
      secrets: opened,
    });
    expect(settings).toEqual({
      ntp: "pool.ntp.org",
      api: { key: API_KEY },
      postgres: {
        app: { password: DB_PASSWORD, url: `https://app:${API_KEY}@api/v1` },
        tls: { key: CERT_KEY, bundle: "Debian" },
      },
    });

    // The database peel got only the api key; if it somehow matched web.zy, it would fail loudly.
    const dbBlob = sealForPeel(masterCurve, webCurve.getPublicKey(), pick(dbIds));
    const err = await resolveSettings({
      files: tree.files,
      // os too: web.zy reads facts.os, and a missing name is a template error (StrictUndefined)
      facts: { role: "webserver", os: "Debian" },
      peelId: "web-01",
      secrets: openPeelSecrets(webCurve, masterPub, dbBlob),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SecretError);
    expect((err as SecretError).keyPaths).toEqual(["postgres.app.password", "postgres.tls.key"]);
  });

  it("understands every authoring form and keeps ids stable and distinct", async () => {
    const master = createCurve();
    const e = (v: string) => encryptValue(v, master.getPublicKey());
    const text = [
      "db_password: !encrypted |",
      `  ${e("spec-form")}  # only the target peel can decrypt`,
      `quoted: !encrypted "${e("quoted")}"`,
      `flow: {pw: !encrypted ${e("flow")}}`,
      "users:",
      "  - name: ann",
      `    password: !encrypted ${e("ann")}`,
      "  - name: bob",
      `    password: !encrypted ${e("bob")}`,
      "  - password: !encrypted >-",
      `      ${e("cat")}`,
      "    name: cat",
      "{% if facts.env == 'prod' %}",
      `token: !encrypted ${e("prod")}`,
      "{% else %}",
      `token: !encrypted ${e("dev")}`,
      "{% endif %}",
      `# a comment about !encrypted values and ${e("commented")}`,
      "",
    ].join("\n");
    const tree = sanitizeSettingsTree({ "s.zy": text });
    const list = Object.values(tree.secrets);
    expect(list.map((x) => x.keyPath)).toEqual([
      "db_password",
      "quoted",
      "flow.@12",
      "users.password",
      "users.password",
      "users.password",
      "token",
      "token",
    ]);
    expect(new Set(list.map((x) => x.id)).size).toBe(8);
    const plain = openExtractedSecrets(master, tree.secrets);
    expect(list.map((x) => plain[x.id])).toEqual([
      "spec-form",
      "quoted",
      "flow",
      "ann",
      "bob",
      "cat",
      "prod",
      "dev",
    ]);
    const out = tree.files["s.zy"]!;
    expect(out.split("\n")[0]).toBe(`db_password: "${placeholder(list[0]!.id)}"`);
    expect(out.split("\n")[1]).toBe("");
    expect(out.split("\n")[3]).toBe(`flow: {pw: "${placeholder(list[2]!.id)}"}`);
    // Comments are left alone; the rest renders and parses as YAML.
    expect(out).toContain("# a comment about !encrypted values");
    expect(out).toContain(`  - password: "${placeholder(list[5]!.id)}"\n\n    name: cat\n`);
    expect(sanitizeSettingsTree({ "other.zy": text }).secrets).not.toHaveProperty(list[0]!.id);
    // The sanitized file renders, parses and takes its secrets back on a peel.
    const files = { ...tree.files, "top.zy": "base:\n  '*': [s]\n" };
    const prod = await resolveSettings({ files, facts: { env: "prod" }, peelId: "p", secrets: plain });
    expect(prod).toEqual({
      db_password: "spec-form",
      quoted: "quoted",
      flow: { pw: "flow" },
      users: [
        { name: "ann", password: "ann" },
        { name: "bob", password: "bob" },
        { name: "cat", password: "cat" },
      ],
      token: "prod",
    });
    const dev = await resolveSettings({ files, facts: { env: "dev" }, peelId: "p", secrets: plain });
    expect(dev.token).toBe("dev");
  });

  it("pipeline helpers: prepare, seal per peel, resolve; a tampered blob names the keys it takes away", async () => {
    const authDir = await tempDir();
    await writeMasterCurveKey(authDir);
    const masterCurve = await loadMasterCurve(authDir);
    const masterPub = await loadMasterCurvePub(authDir);
    const src = await tempDir();
    await writeTree(src, {
      "top.zy": "base:\n  '*': [app]\n",
      "app.zy": `app:\n  name: shop\n  token: !encrypted ${encryptValue(API_KEY, masterPub)}\n`,
    });
    const prepared = await prepareSettingsTree(src, masterCurve);
    expect(Object.values(prepared.plaintexts)).toEqual([API_KEY]);
    const peel = await ensurePeelCurveKey(join(await tempDir(), "cache"));
    const blob = await sealSettingsForPeel(prepared, masterCurve, {
      id: "web-01",
      facts: {},
      curvePub: peel.getPublicKey(),
    });
    const base = {
      files: prepared.files,
      facts: {},
      peelId: "web-01",
      peelCurve: peel,
      masterCurvePub: masterPub,
    };
    const ok = await resolvePeelSettings({ ...base, blob });
    expect(ok.settings).toEqual({ app: { name: "shop", token: API_KEY } });
    expect(maskSecrets(ok.settings, ok.secrets)).toEqual({ app: { name: "shop", token: MASK } });

    const env = JSON.parse(blob) as { data: string };
    const tampered = JSON.stringify({ ...env, data: `${env.data.slice(0, 10)}AAAA${env.data.slice(14)}` });
    const err = (await resolvePeelSettings({ ...base, blob: tampered }).catch(
      (e: unknown) => e,
    )) as SecretError;
    expect(err).toBeInstanceOf(SecretError);
    expect(err.keyPaths).toEqual(["app.token"]);
    expect(err.message).toContain("failed to open");
    const none = (await resolvePeelSettings(base).catch((e: unknown) => e)) as SecretError;
    expect(none).toBeInstanceOf(SecretError);
    expect(none.keyPaths).toEqual(["app.token"]);
  });

  it("reports malformed !encrypted uses and untagged ciphertext with positions", () => {
    const enc = encryptValue("x", createCurve().getPublicKey());
    const err = thrown(() =>
      sanitizeSettingsTree({
        "a.zy": `ok: 1\nbad: !encrypted not-a-value\nuntagged: ${enc}\nfake: ZESTER_SECRET[abc]\n`,
      }),
    ) as SettingsError;
    expect(err).toBeInstanceOf(SettingsError);
    expect(err.diagnostics.map((d) => [d.line, d.col])).toEqual([
      [2, 6],
      [3, 11],
      [4, 7],
    ]);
  });

  it("an unsanitized !encrypted value reaching the resolver is a YAML error, unless it may be opened", async () => {
    const master = createCurve();
    const files = {
      "top.zy": "base:\n  '*': [s]\n",
      "s.zy": `a:\n  pw: !encrypted ${encryptValue(DB_PASSWORD, master.getPublicKey())}\n`,
    };
    const err = (await resolveSettings({ files, facts: {}, peelId: "p" }).catch(
      (e: unknown) => e,
    )) as SettingsError;
    expect(err).toBeInstanceOf(SettingsError);
    expect(err.diagnostics[0]).toMatchObject({ kind: "yaml", file: "s.zy", line: 2 });
    expect(err.message).toContain("not sanitized");
    const masterless = await resolveSettings({
      files,
      facts: {},
      peelId: "p",
      openEncrypted: (v) => decryptValue(master, v),
    });
    expect(masterless).toEqual({ a: { pw: DB_PASSWORD } });
  });
});

describe("secrets of files pulled in through Jinja", () => {
  const SHARED_DB = "shared-DB-pass-77";
  const SHARED_API = "shared-API-key-88";
  const NESTED = "nested-deep-99";
  const CYCLIC = "cyclic-secret-11";
  const DYNAMIC = "dynamic-secret-22";
  const RAW = "raw-block-33";

  async function fixture() {
    const authDir = await tempDir();
    const { publicKey: masterPub } = await writeMasterCurveKey(authDir);
    const masterCurve = await loadMasterCurve(authDir);
    const e = (v: string) => encryptValue(v, masterPub);
    const src = await tempDir();
    await writeTree(src, {
      "top.zy": [
        "base:",
        "  '*': [common]",
        "  'db-*': [db]",
        "  'web-*': [web]",
        "  'from-*': [fromform]",
        "  'nested-*': [nested]",
        "  'cycle-*': [cyc.a]",
        "  'dyn-*': [dyn]",
        "",
      ].join("\n"),
      "common.zy": "ntp: pool.ntp.org\n# {% raw %}{% include 'shared/raw.zy' %}{% endraw %}\n",
      "db.zy": "{% include 'shared/db-creds.zy' %}\nport: 5432\n",
      "shared/db-creds.zy": `db:\n  password: !encrypted ${e(SHARED_DB)}\n`,
      "shared/raw.zy": `raw:\n  pw: !encrypted ${e(RAW)}\n`,
      "macros/api.zy": `{% macro creds() %}\napi:\n  key: !encrypted ${e(SHARED_API)}\n{% endmacro %}\n`,
      "web.zy": '{% import "macros/api.zy" as m %}\n{{ m.creds() }}\n',
      "fromform.zy": '{% from "macros/api.zy" import creds %}\n{{ creds() }}\n',
      "nested.zy": "{% include 'nest/one.zy' %}\n",
      // Relative to the including file, as nunjucks resolves ./ and ../ names.
      "nest/one.zy": "{% include './deeper/two.zy' %}\n",
      "nest/deeper/two.zy": `deep:\n  pw: !encrypted ${e(NESTED)}\n`,
      // A cycle for the scanner (the guard keeps rendering finite, as a real tree would).
      "cyc/a.zy": "{% include 'cyc/b.zy' %}\n",
      "cyc/b.zy": `{% if false %}{% include 'cyc/a.zy' %}{% endif %}\ncycle:\n  pw: !encrypted ${e(CYCLIC)}\n`,
      "dyn.zy": '{% set name = "shared/" ~ "dyn-secret.zy" %}\n{% include name %}\n',
      "shared/dyn-secret.zy": `dyn:\n  pw: !encrypted ${e(DYNAMIC)}\n`,
    });
    const prepared = await prepareSettingsTree(src, masterCurve);
    // The peel resolves from the published (sanitized) files as fetched: an in-memory tree, which
    // is also where its includes are looked up.
    const published = prepared.files;
    const sealedFor = async (role: string) => {
      const ids = await peelSecretIds({
        files: prepared.files,
        facts: { role },
        peelId: `${role}-01`,
        secrets: prepared.secrets,
      });
      return ids.map((id) => prepared.plaintexts[id]).sort();
    };
    return { prepared, published, masterCurve, masterPub, sealedFor };
  }

  it("seals an included file's secrets for the peel whose file includes it, and not for others", async () => {
    const { sealedFor, prepared, published, masterCurve, masterPub } = await fixture();
    expect(await sealedFor("db")).toEqual([SHARED_DB]);
    expect(await sealedFor("none")).toEqual([]);
    expect(await sealedFor("web")).toEqual([SHARED_API]);
    // End to end through the pipeline helpers: seal, open on the peel, resolve.
    const peel = await ensurePeelCurveKey(join(await tempDir(), "cache"));
    const base = { facts: { role: "db" }, peelId: "db-01", peelCurve: peel, masterCurvePub: masterPub };
    const blob = await sealSettingsForPeel(prepared, masterCurve, {
      id: "db-01",
      facts: { role: "db" },
      curvePub: peel.getPublicKey(),
    });
    const res = await resolvePeelSettings({ ...base, files: published, blob });
    expect(res.settings).toEqual({ ntp: "pool.ntp.org", db: { password: SHARED_DB }, port: 5432 });
    // What the same peel got before includes were followed: the placeholder stays unresolved.
    const old = await resolvePeelSettings({
      ...base,
      files: published,
      blob: sealForPeel(masterCurve, peel.getPublicKey(), {}),
    }).catch((e: unknown) => e);
    expect(old).toBeInstanceOf(SecretError);
    expect((old as SecretError).keyPaths).toEqual(["db.password"]);
  });

  it("follows import and from-import, nested and relative names, and terminates on cycles", async () => {
    const { sealedFor, prepared, published, masterCurve, masterPub } = await fixture();
    expect(await sealedFor("from")).toEqual([SHARED_API]);
    expect(await sealedFor("nested")).toEqual([NESTED]);
    expect(await sealedFor("cycle")).toEqual([CYCLIC]);
    const peel = createCurve();
    for (const [role, want] of [
      ["web", { api: { key: SHARED_API } }],
      ["from", { api: { key: SHARED_API } }],
      ["nested", { deep: { pw: NESTED } }],
      ["cycle", { cycle: { pw: CYCLIC } }],
    ] as const) {
      const blob = await sealSettingsForPeel(prepared, masterCurve, {
        id: `${role}-01`,
        facts: { role },
        curvePub: peel.getPublicKey(),
      });
      const res = await resolvePeelSettings({
        files: published,
        facts: { role },
        peelId: `${role}-01`,
        peelCurve: peel,
        masterCurvePub: masterPub,
        blob,
      });
      expect(res.settings).toEqual({ ntp: "pool.ntp.org", ...want });
    }
  });

  it("a computed include name leaves the secret unsealed, and the peel's error names the include", async () => {
    const { sealedFor, prepared, published, masterCurve, masterPub } = await fixture();
    expect(await sealedFor("dyn")).toEqual([]);
    const peel = createCurve();
    const blob = await sealSettingsForPeel(prepared, masterCurve, {
      id: "dyn-01",
      facts: { role: "dyn" },
      curvePub: peel.getPublicKey(),
    });
    const opts = { facts: { role: "dyn" }, peelId: "dyn-01", peelCurve: peel, masterCurvePub: masterPub };
    for (const b of [blob, undefined]) {
      const err = (await resolvePeelSettings({ ...opts, files: published, ...(b ? { blob: b } : {}) }).catch(
        (e: unknown) => e,
      )) as SecretError;
      expect(err).toBeInstanceOf(SecretError);
      expect(err.keyPaths).toEqual(["dyn.pw"]);
      expect(err.message).toContain("computed at render time");
      expect(err.message).toContain("dyn.zy:2:4: {% include name %}");
      expect(err.message).toContain("Name the file as a string literal");
    }
  });

  it("never reads outside the settings tree and resolves names like nunjucks", async () => {
    expect(resolveTemplateName("a/b.zy", "c/d.zy")).toBe("c/d.zy");
    expect(resolveTemplateName("a/b.zy", "./d.zy")).toBe("a/d.zy");
    expect(resolveTemplateName("a/b/c.zy", "../d.zy")).toBe("a/d.zy");
    expect(resolveTemplateName("a/b.zy", "../../etc/passwd")).toBeUndefined();
    expect(resolveTemplateName("a/b.zy", "/etc/passwd")).toBeUndefined();
    expect(resolveTemplateName("b.zy", "x/../../y.zy")).toBeUndefined();
    const reads: string[] = [];
    const files: Record<string, string> = {
      "top.zy": "base:\n  '*': [a]\n",
      "a.zy": "{% include '../outside.zy' %}{% include '/etc/passwd' %}{% include 'b.zy' %}\n",
      "b.zy": "{% include 'a.zy' %}\n",
    };
    const read = async (rel: string) => {
      reads.push(rel);
      return files[rel];
    };
    const closure = await includeClosure(read, ["a.zy"]);
    expect(closure.files).toEqual(["a.zy", "b.zy"]);
    expect(reads).toEqual(["a.zy", "b.zy"]);
    expect(closure.dynamic).toEqual([]);
  });
});

describe("last-known-good snapshot", () => {
  it("is written 0600 and read back; a peel that never resolved gets a clear error", async () => {
    const dir = join(await tempDir(), "cache");
    await expect(loadSnapshot(dir)).rejects.toBeInstanceOf(NoSnapshotError);
    await expect(loadSnapshot(dir)).rejects.toThrow(/never resolved/);
    const settings = { db: { password: DB_PASSWORD }, list: [1, 2] };
    const path = await saveSnapshot(dir, settings, new Date("2026-01-02T03:04:05Z"));
    expect(path).toBe(snapshotPath(dir));
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await loadSnapshot(dir)).toEqual({ settings, savedAt: "2026-01-02T03:04:05.000Z" });
    await saveSnapshot(dir, { v: 2 });
    expect((await loadSnapshot(dir)).settings).toEqual({ v: 2 });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await writeFile(path, "{broken");
    await expect(loadSnapshot(dir)).rejects.toThrow(/damaged/);
    expect(await readFile(path, "utf8")).toBe("{broken");
  });
});
