/**
 * Leaf nodes for an edge site (`zester nats-auth init --leaf`): an edge nats-server without
 * JetStream connects to the hub with the zester account's leaf creds; `default_js_domain` on
 * both servers makes the hub's JetStream the account's, so clients on the edge reach its buckets.
 * Peels connect to the edge server, the master to the hub: facts, heartbeats, commands, returns
 * and the published states tree all cross the leaf connection. Real servers, master and peel.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUTH_FILES, initAuthDir } from "../src/auth/auth-dir.js";
import { decode, encode } from "../src/bus/codec.js";
import { connect } from "../src/bus/connect.js";
import { subjects } from "../src/bus/names.js";
import { CA_FILES } from "../src/ca/ca.js";
import { JobStore } from "../src/jobs/store.js";
import type { DispatchReply, JobRecord } from "../src/jobs/wire.js";
import type { Master } from "../src/master/master.js";
import type { Peel } from "../src/peel/peel.js";
import { runMain } from "./support/cli.js";
import { startTestMaster } from "./support/master.js";
import { credsFileIn, freePort, launch, type Proc } from "./support/nats.js";
import { startTestPeel } from "./support/peel.js";
import { waitFor } from "./support/wait.js";

let dir: string;
let hubProc: Proc;
let edgeProc: Proc;
let admin: NatsConnection;
let store: JobStore;
let master: Master;
let peel: Peel;
const logs: string[] = [];
const context = () => `${logs.slice(-30).join("\n")}\nEDGE SERVER:\n${edgeProc?.output().slice(-3000)}`;

async function run(fun: string, args: unknown[] = []): Promise<JobRecord> {
  const reply = decode<DispatchReply>(
    (
      await admin.request(subjects.dispatch, encode({ target: "edge-01", fun, args, kwargs: {} }), {
        timeout: 15_000,
      })
    ).data,
  );
  if (!reply.jid) throw new Error(`dispatch failed: ${reply.error}`);
  const jid = reply.jid;
  return waitFor(
    `job ${jid}`,
    async () => {
      const r = await store.get(jid);
      return r && r.record.status !== "running" ? r.record : undefined;
    },
    { context },
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-leaf-"));
  const hubPort = await freePort();
  const edgePort = await freePort();
  const leafPort = await freePort();
  await initAuthDir({
    dir,
    port: hubPort,
    listenHost: "127.0.0.1",
    leaf: { port: leafPort, hubHost: "127.0.0.1", clientPort: edgePort, clientHost: "127.0.0.1" },
  });
  hubProc = await launch(["-c", join(dir, AUTH_FILES.serverConfig)], hubPort);
  edgeProc = await launch(["-c", join(dir, AUTH_FILES.leafServerConfig)], edgePort);
  const caFile = join(dir, CA_FILES.caCert);
  const credsFile = credsFileIn(dir);
  const hub = { url: `tls://127.0.0.1:${hubPort}`, caFile, authDir: dir, credsFile };
  admin = await connect({ servers: hub.url, caFile, credsFile: await credsFile("admin") });
  const statesDir = join(dir, "states");
  await mkdir(statesDir);
  await writeFile(join(statesDir, "top.zy"), "base:\n  '*':\n    - edge\n");
  await writeFile(join(statesDir, "edge.zy"), "edge_ok:\n  test.succeed_without_changes: []\n");
  master = await startTestMaster(hub, { id: "hub-master", statesDir, log: (m) => logs.push(`master: ${m}`) });
  store = await JobStore.open(admin);
  peel = await startTestPeel(
    { url: `tls://127.0.0.1:${edgePort}`, caFile, credsFile },
    "edge-01",
    join(dir, "work"),
    new Set([master.publicKey]),
    {
      logger: {
        info: (m) => logs.push(`peel: ${m}`),
        warn: (m) => logs.push(`peel WARN: ${m}`),
        error: (m) => logs.push(`peel ERROR: ${m}`),
      },
    },
  );
  await waitFor(
    "the master on the hub to see the peel on the edge",
    () => master.fleet.isOnline("edge-01") || undefined,
    {
      context,
    },
  );
}, 90_000);

afterAll(async () => {
  await peel?.stop().catch(() => {});
  await master?.stop().catch(() => {});
  await admin?.close().catch(() => {});
  await edgeProc?.stop();
  await hubProc?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("a peel on an edge site's leaf node, the master in the hub", () => {
  it("both servers let the account's JetStream traffic cross the leaf (default_js_domain)", () => {
    const skipped = /Skipping deny "\$JS\.API\.>" for account "A[A-Z0-9]+" due to default domain/;
    expect(edgeProc.output()).toMatch(skipped);
    expect(hubProc.output()).toMatch(skipped);
    expect(edgeProc.output()).not.toMatch(/Starting JetStream/);
  });

  it("runs a job: the command goes out through the leaf, the return is stored in the hub", async () => {
    const rec = await run("test.ping");
    expect(rec.status).toBe("complete");
    expect((await store.getReturn(rec.jid, "edge-01"))?.return).toBe(true);
  });

  it("applies the hub's published states tree (KV watch and reads across the leaf)", async () => {
    const rec = await run("state.apply");
    expect(rec.status).toBe("complete");
    const ret = await store.getReturn(rec.jid, "edge-01");
    expect(ret?.results?.map((r) => r.id)).toEqual(["edge_ok"]);
  });

  it("nats-auth init --leaf writes the edge config; --leaf with --cluster is refused", async () => {
    const text = await readFile(join(dir, AUTH_FILES.leafServerConfig), "utf8");
    expect(text).toMatch(/server_name: "zester-leaf"/);
    expect(text).toMatch(/remotes: \[/);
    // One remote, the zester account's: the edge server holds no system account creds.
    expect(text.match(/credentials: /g)).toHaveLength(1);
    expect(text).not.toContain("sys.creds");
    expect(text).not.toMatch(/^jetstream:/m);
    expect(text).toMatch(/default_js_domain: \{\n {2}A[A-Z0-9]+: ""\n\}/);
    expect(await readFile(join(dir, AUTH_FILES.serverConfig), "utf8")).toMatch(
      /leafnodes: \{\n {2}host: "127\.0\.0\.1"\n {2}port: \d+/,
    );
    const other = await mkdtemp(join(tmpdir(), "zester-leaf-cli-"));
    try {
      const r = await runMain([
        "nats-auth",
        "init",
        "--dir",
        other,
        "--leaf",
        "hub.example",
        "--cluster",
        "3",
      ]);
      expect(r.code).toBe(1);
      expect(r.err).toContain("--leaf is for a single hub server");
      const ok = await runMain([
        "nats-auth",
        "init",
        "--dir",
        other,
        "--leaf",
        "hub.example",
        "--host",
        "edge.example",
      ]);
      expect(ok.code).toBe(0);
      expect(ok.out).toContain(
        `edge site (leaf node):  nats-server -c ${join(other, AUTH_FILES.leafServerConfig)}`,
      );
      expect(await readFile(join(other, AUTH_FILES.leafServerConfig), "utf8")).toContain(
        'url: "tls://hub.example:7422"',
      );
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});
