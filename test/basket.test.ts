/**
 * The basket end to end on a real nats-server: a real Master publishes settings with
 * `basket_functions`, real Peels publish their own keys (and only those), other peels read them
 * through basket.get / mine.get and templates, the CLI prints them, and a revoked peel's entries go.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issuePeelCredsFile } from "../src/auth/auth-dir.js";
import { openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import { connect } from "../src/bus/connect.js";
import { peelInboxPrefix, subjects } from "../src/bus/names.js";
import { JobStore } from "../src/jobs/store.js";
import type { DispatchReply, PeelReturn } from "../src/jobs/wire.js";
import type { Master } from "../src/master/index.js";
import { basketConfig } from "../src/peel/basket/config.js";
import { parseEntry, readFunction, storedFunctionsOf } from "../src/peel/basket/store.js";
import { Peel } from "../src/peel/peel.js";
import { ROOT, requireBuilt } from "./support/built.js";
import { cliJson, fleetCliOptions, runCli } from "./support/cli.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

const BIN = join(ROOT, "dist", "bin", "zester.js");

let nats: StartedNats;
let work: string;
let settingsDir: string;
let master: Master;
let admin: NatsConnection;
let adminBasket: KV;
let store: JobStore;
const peels = new Map<string, Peel>();
const logs: string[] = [];

async function writeBasketSettings(extra = ""): Promise<void> {
  await writeFile(join(settingsDir, "top.zy"), "base:\n  '*':\n    - basket\n");
  await writeFile(
    join(settingsDir, "basket.zy"),
    [
      "basket_functions:",
      "  network.ip_addrs: 1h",
      "  role: {interval: 1h}",
      "  rootdisk: {function: disk.usage, args: [/], interval: 1h}",
      "  marker: 2s",
      extra,
      "",
    ].join("\n"),
  );
}

async function startPeel(id: string, role: string): Promise<Peel> {
  const facts = join(work, id, "facts");
  await mkdir(facts, { recursive: true });
  await writeFile(join(facts, "role.yaml"), `role:\n  value: ${role}\n`);
  await writeFile(join(facts, "marker.yaml"), `marker:\n  value: ${id}-1\n`);
  const p = new Peel({
    id,
    servers: nats.url,
    credsFile: await nats.credsFile(id),
    caFile: nats.caFile,
    authDir: nats.authDir,
    cacheDir: join(work, id, "cache"),
    customFactsDir: facts,
    trustedMasters: new Set([master.publicKey]),
    heartbeatMs: 2_000,
    factsIntervalMs: 500,
    settingsFetchTimeoutMs: 2_000,
    logger: {
      info: (m) => logs.push(`${id}: ${m}`),
      warn: (m) => logs.push(`${id}: ${m}`),
      error: (m) => logs.push(`${id}: ${m}`),
    },
  });
  peels.set(id, p);
  await p.start();
  await p.waitConnected();
  return p;
}

async function dispatch(peel: string, fun: string, args: unknown[] = [], kwargs = {}): Promise<PeelReturn> {
  const reply = await admin.request(
    subjects.dispatch,
    encode({ target: peel, fun, args, kwargs, timeout_s: 30 }),
    { timeout: 10_000 },
  );
  const d = decode<DispatchReply>(reply.data);
  expect(d.error, d.error).toBeUndefined();
  return waitFor(`${fun} return from ${peel}`, async () => (await store.returnsOf(d.jid!, [peel])).get(peel));
}

async function entry(key: string) {
  const e = await adminBasket.get(key);
  return e?.operation === "PUT" ? parseEntry(key, e.value) : undefined;
}

const context = () => logs.join("\n");

beforeAll(async () => {
  requireBuilt(BIN);
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-basket-"));
  settingsDir = join(work, "settings");
  const statesDir = join(work, "states");
  await mkdir(settingsDir, { recursive: true });
  await mkdir(statesDir, { recursive: true });
  await writeFile(
    join(statesDir, "peers.zy"),
    [
      "peers:",
      "  file.managed:",
      `    - name: ${work}/out/{{ facts.id }}-peers`,
      "    - makedirs: true",
      "    - contents: |",
      "        {%- for p in salt['basket.get']('role:web', 'role') %}",
      "        {{ p.peel_id }}={{ p.value }}",
      "        {%- endfor %}",
      "",
    ].join("\n"),
  );
  await writeBasketSettings();
  master = await startTestMaster(nats, {
    id: "master-b",
    statesDir,
    settingsDir,
    publishIntervalMs: 3_600_000,
    log: (m) => logs.push(`master: ${m}`),
  });
  admin = await nats.connectAs("admin");
  adminBasket = await openKv(admin, "basket");
  store = await JobStore.open(admin);
  await startPeel("web-01", "web");
  await startPeel("web-02", "web");
  await startPeel("db-01", "db");
  await waitFor(
    "every peel's basket",
    async () => (await entry("db-01.role")) && (await entry("web-02.role")),
    {
      ms: 30_000,
      context,
    },
  );
}, 90_000);

afterAll(async () => {
  for (const p of peels.values()) await p.stop().catch(() => {});
  await master?.stop();
  await admin?.close().catch(() => {});
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("basket_functions settings", () => {
  it("reads intervals, explicit functions, Salt's list form, and names bad entries", () => {
    const c = basketConfig({
      basket_functions: {
        "network.ip_addrs": "5m",
        "disk.usage": { function: "disk.usage", interval: "1m" },
        bad: { functon: "x" },
        slow: "soon",
      },
      mine_functions: { root: [{ mine_function: "disk.usage" }, "/", { human: true }], "disk.usage": "1h" },
    });
    expect(c.functions).toEqual([
      { name: "disk.usage", function: "disk.usage", args: [], kwargs: {}, intervalMs: 60_000 },
      { name: "network.ip_addrs", function: "network.ip_addrs", args: [], kwargs: {}, intervalMs: 300_000 },
      { name: "root", function: "disk.usage", args: ["/"], kwargs: { human: true }, intervalMs: 3_600_000 },
    ]);
    expect(c.errors).toEqual([
      expect.stringMatching(/basket_functions\.bad: unknown key "functon" \(did you mean "function"\?\)/),
      expect.stringMatching(/basket_functions\.slow: interval "soon" is not a duration/),
    ]);
  });
});

describe("publishing", () => {
  it("writes each function under <peel>.<function> with its time, from functions and fact paths", async () => {
    const ip = await entry("web-01.network.ip_addrs");
    expect(ip).toMatchObject({ peel: "web-01", function: "network.ip_addrs", interval_s: 3600 });
    expect(Array.isArray(ip!.value)).toBe(true);
    expect((ip!.value as string[]).some((a) => a.startsWith("127."))).toBe(false);
    expect(Date.now() - Date.parse(ip!.ts)).toBeLessThan(120_000);
    expect((await entry("db-01.role"))?.value).toBe("db");
    const disk = (await entry("web-02.rootdisk"))?.value as Record<string, { mountpoint: string }>;
    expect(Object.values(disk)[0]?.mountpoint).toBe("/");
  });

  it("rewrites a value when it changes and never when it does not", async () => {
    const before = (await adminBasket.get("web-01.marker"))!;
    // Several 2 s intervals pass with the same value: the revision stays.
    await new Promise((r) => setTimeout(r, 4_500));
    expect((await adminBasket.get("web-01.marker"))!.revision).toBe(before.revision);
    await writeFile(join(work, "web-01", "facts", "marker.yaml"), "marker:\n  value: web-01-2\n");
    await waitFor("the changed marker", async () => (await entry("web-01.marker"))?.value === "web-01-2", {
      context,
    });
  });

  it("follows a new settings revision at once: new functions appear, dropped ones are removed", async () => {
    await writeBasketSettings("  os: 1h");
    await master.publishSettings();
    await waitFor("web-02.os", async () => (await entry("web-02.os"))?.value === "linux", { context });
    await writeFile(
      join(settingsDir, "basket.zy"),
      "basket_functions:\n  role: 1h\n  network.ip_addrs: 1h\n  rootdisk: {function: disk.usage, args: [/], interval: 1h}\n",
    );
    await master.publishSettings();
    await waitFor(
      "web-02.os removed",
      async () => (await adminBasket.get("web-02.os"))?.operation !== "PUT",
      {
        context,
      },
    );
    expect(await entry("web-02.role")).toBeDefined();
  });
});

describe("reading", () => {
  it("basket.get returns [{peel_id, value}] sorted by peel id, for fact targets and globs", async () => {
    const r = await dispatch("db-01", "basket.get", ["role:web", "role"]);
    expect(r.success, r.error).toBe(true);
    expect((r.return as { peel_id: string; value: unknown }[]).map((x) => [x.peel_id, x.value])).toEqual([
      ["web-01", "web"],
      ["web-02", "web"],
    ]);
    const all = await dispatch("web-01", "basket.get", ["*", "role"]);
    expect((all.return as { peel_id: string }[]).map((x) => x.peel_id)).toEqual([
      "db-01",
      "web-01",
      "web-02",
    ]);
  });

  it("mine.get answers Salt's {peel: value} with tgt_type", async () => {
    const r = await dispatch("web-02", "mine.get", ["role:db", "role"], { tgt_type: "grain" });
    expect(r.return).toEqual({ "db-01": "db" });
    const bad = await dispatch("web-02", "mine.get", ["*", "role"], { tgt_type: "grian" });
    expect(bad.success).toBe(false);
    expect(bad.error).toMatch(/did you mean "grain"/);
  });

  it("templates read the basket in a state run", async () => {
    const r = await dispatch("db-01", "state.apply", ["peers"]);
    expect(r.success, JSON.stringify(r.results)).toBe(true);
    const { readFile } = await import("node:fs/promises");
    expect(await readFile(join(work, "out", "db-01-peers"), "utf8")).toBe("web-01=web\nweb-02=web\n");
  });

  it("zester basket get prints PEEL VALUE, and --format json the rows", async () => {
    const opts = fleetCliOptions(nats, work);
    const text = await runCli(BIN, ["basket", "get", "G@role:web", "role"], opts);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toBe("PEEL    VALUE\nweb-01  web\nweb-02  web\n");
    const json = await runCli(BIN, ["basket", "get", "web-0[12]", "role", "--format", "json"], opts);
    expect(cliJson<{ peel_id: string; value: unknown; updated_at: string }[]>(json)).toEqual([
      { peel_id: "web-01", value: "web", updated_at: expect.any(String) },
      { peel_id: "web-02", value: "web", updated_at: expect.any(String) },
    ]);
    const list = await runCli(BIN, ["basket", "list", "db-01", "--format", "json"], opts);
    expect(cliJson<{ function: string }[]>(list).map((e) => e.function)).toEqual([
      "network.ip_addrs",
      "role",
      "rootdisk",
    ]);
    const bad = await runCli(BIN, ["basket", "get", "G@role:", "role"], opts);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/missing value after ":"/);
    // Not syntax errors, yet mistakes in the call: usage errors too (exit 1, one line, no stack).
    const settingsTarget = await runCli(BIN, ["basket", "get", "I@role:web", "role"], opts);
    expect(settingsTarget.code).toBe(1);
    expect(settingsTarget.stderr).toMatch(/basket target "I@role:web": I@ cannot be used here/);
    expect(settingsTarget.stderr).not.toMatch(/\n\s+at /);
    const badFunction = await runCli(BIN, ["basket", "get", "web-01", "ro le"], opts);
    expect(badFunction.code).toBe(1);
    expect(badFunction.stderr).toMatch(/basket function name/);
  });
});

describe("permissions", () => {
  it("a peel can write only its own basket keys", async () => {
    const nc = await nats.connectAs("web-01");
    try {
      const kv = await openKv(nc, "basket");
      await expect(
        kv.put(
          "web-02.role",
          encode({ peel: "web-02", function: "role", value: "evil", ts: new Date().toISOString() }),
        ),
      ).rejects.toThrow();
      expect((await entry("web-02.role"))?.value).toBe("web");
      await kv.put(
        "web-01.scratch",
        encode({ peel: "web-01", function: "scratch", value: 1, ts: new Date().toISOString() }),
      );
      expect((await entry("web-01.scratch"))?.value).toBe(1);
      await kv.delete("web-01.scratch");
    } finally {
      await nc.close();
    }
  });
  it("basket scope own: a peel reads its own entries and nothing of the fleet's", async () => {
    const creds = await issuePeelCredsFile(nats.authDir, "solo-01", {
      out: join(work, "solo-01.creds"),
      basketScope: "own",
    });
    const nc = await connect({
      servers: nats.url,
      caFile: nats.caFile,
      credsFile: creds,
      inboxPrefix: peelInboxPrefix("solo-01"),
    });
    try {
      const kv = await openKv(nc, "basket");
      await kv.put(
        "solo-01.role",
        encode({ peel: "solo-01", function: "role", value: "x", ts: new Date().toISOString() }),
      );
      expect((await kv.get("solo-01.role"))?.operation).toBe("PUT");
      expect(await storedFunctionsOf(kv, "solo-01")).toEqual(["role"]);
      await expect(kv.get("web-01.role")).rejects.toThrow();
      await expect(readFunction(kv, "role", (p) => new Set(p))).rejects.toThrow();
      await kv.delete("solo-01.role");
    } finally {
      await nc.close();
    }
    // The default scope (the peel's account) reads the fleet.
    const fleet = await nats.connectAs("web-02");
    try {
      const rows = await readFunction(await openKv(fleet, "basket"), "role", (p) => new Set(p));
      expect(rows.map((r) => r.peel_id)).toEqual(["db-01", "web-01", "web-02"]);
    } finally {
      await fleet.close();
    }
  });
});
