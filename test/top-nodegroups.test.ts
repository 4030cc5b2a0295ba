/**
 * `N@nodegroup` in the states top file, which each peel evaluates itself: the master's
 * `nodegroups` reach the peels inside the published states tree. Real nats-server, a real master
 * with nodegroups and two real peels running highstate.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import { subjects } from "../src/bus/names.js";
import { JobStore } from "../src/jobs/store.js";
import type { DispatchReply, PeelReturn } from "../src/jobs/wire.js";
import type { Master } from "../src/master/master.js";
import type { Peel } from "../src/peel/peel.js";
import { NODEGROUPS_FILE } from "../src/state/nodegroups.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { startTestPeel } from "./support/peel.js";
import { waitFor } from "./support/wait.js";

let nats: StartedNats;
let admin: NatsConnection;
let store: JobStore;
let work: string;
let statesDir: string;
let master: Master;
const peels: Peel[] = [];

const TOP = [
  "base:",
  "  '*':",
  "    - common",
  "  'N@web':",
  "    - web",
  "  db:",
  "    - match: nodegroup",
  "    - db",
  "",
].join("\n");

async function highstate(peel: string): Promise<PeelReturn> {
  const reply = decode<DispatchReply>(
    (
      await admin.request(
        subjects.dispatch,
        encode({ target: peel, fun: "state.apply", args: [], kwargs: {} }),
        {
          timeout: 15_000,
        },
      )
    ).data,
  );
  if (!reply.jid) throw new Error(`dispatch failed: ${reply.error}`);
  const jid = reply.jid;
  await waitFor(`job ${jid}`, async () => {
    const r = await store.get(jid);
    return r && r.record.status !== "running" ? r : undefined;
  });
  const e = await (await openKv(admin, "job-returns")).get(`${jid}.${peel}`);
  return decode<PeelReturn>(e!.value);
}

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-nodegroups-"));
  statesDir = join(work, "states");
  await mkdir(statesDir);
  await writeFile(join(statesDir, "top.zy"), TOP);
  for (const name of ["common", "web", "db"]) {
    await writeFile(join(statesDir, `${name}.zy`), `${name}_ok:\n  test.succeed_without_changes: []\n`);
  }
  master = await startTestMaster(nats, {
    id: "ng-master",
    statesDir,
    // As master.yaml gives them: an expression, and a list of ids (stored as its L@ form).
    nodegroups: { web: "web-* and not web-9*", db: "L@db-01,db-02" },
  });
  admin = await nats.connectAs("admin");
  store = await JobStore.open(admin);
  const trusted = new Set([master.publicKey]);
  for (const id of ["web-01", "db-01"]) peels.push(await startTestPeel(nats, id, work, trusted));
  await waitFor("the master to see both peels", () => master.fleet.peels().length === 2 || undefined);
}, 60_000);

afterAll(async () => {
  for (const p of peels) await p.stop().catch(() => {});
  await master?.stop().catch(() => {});
  await admin?.close().catch(() => {});
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("N@nodegroup in a peel's top file", () => {
  it("each peel runs the sls its nodegroups assign, N@ and Salt's `- match: nodegroup` alike", async () => {
    const web = await highstate("web-01");
    expect(web.error).toBeUndefined();
    expect(web.results!.map((r) => r.id)).toEqual(["common_ok", "web_ok"]);
    const db = await highstate("db-01");
    expect(db.error).toBeUndefined();
    expect(db.results!.map((r) => r.id)).toEqual(["common_ok", "db_ok"]);
  });

  it("the groups travel in the tree as a dot file no operator file can shadow", async () => {
    const kv = await openKv(admin, "state-files");
    const manifest = decode<{ files: Record<string, unknown> }>((await kv.get("manifest"))!.value);
    expect(Object.keys(manifest.files)).toContain(NODEGROUPS_FILE);
  });

  it("an unknown nodegroup fails the run with top.zy:line:column and the known names", async () => {
    await writeFile(join(statesDir, "top.zy"), `${TOP}  'N@webz':\n    - web\n`);
    const r = await highstate("web-01");
    expect(r.success).toBe(false);
    expect(r.error).toMatch(
      /top\.zy:9:3: .*target "N@webz": .*unknown nodegroup "webz".*did you mean "web".*defined: db, web/s,
    );
    await writeFile(join(statesDir, "top.zy"), TOP);
  });
});
