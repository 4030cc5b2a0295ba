/**
 * `zester states publish` and `zester settings publish` driven as an operator would: the built
 * CLI with admin creds against a real nats-server and a real master whose publish timers are
 * an hour long, so every new revision seen here came from the CLI's request.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { openKv } from "../src/bus/bootstrap.js";
import { encode } from "../src/bus/codec.js";
import { type FileTreePublishResult, readLiveTree } from "../src/bus/file-tree.js";
import { type Master, STATE_PUBLISHER_LEASE } from "../src/master/master.js";
import { requireBuilt } from "./support/built.js";
import { type CliResult, cliJson, fleetCliOptions, runCli } from "./support/cli.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";

const ROOT = resolve(import.meta.dirname, "..");
const ZESTER = join(ROOT, "dist/bin/zester.js");
const MASTER_ID = "pub-m1";
const HOUR_MS = 3_600_000;

let nats: StartedNats;
let work: string;
let statesDir: string;
let settingsDir: string;
let master: Master | undefined;
let admin: NatsConnection;
const logs: string[] = [];

/** The built CLI, run without blocking this process (the master lives in it). */
function zester(...args: string[]): Promise<CliResult> {
  return runCli(ZESTER, args, fleetCliOptions(nats, work));
}

function json<T>(r: CliResult): T {
  return cliJson<T>(r, () => `master:\n${logs.join("\n")}`);
}

function ok(r: CliResult): CliResult {
  if (r.code !== 0) {
    throw new Error(
      `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}\nmaster:\n${logs.join("\n")}`,
    );
  }
  return r;
}

async function liveRev(bucket: "state-files" | "settings-files"): Promise<number | undefined> {
  return (await readLiveTree(await openKv(admin, bucket)))?.revision.rev;
}

/** What a master answers to a publish request. */
type TreeReply = { master: string } & FileTreePublishResult;

beforeAll(async () => {
  requireBuilt(ZESTER);
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-cli-publish-"));
  statesDir = join(work, "states");
  settingsDir = join(work, "settings");
  await mkdir(statesDir);
  await mkdir(settingsDir);
  await writeFile(join(statesDir, "top.zy"), "base:\n  '*':\n    - motd\n");
  await writeFile(join(statesDir, "motd.zy"), "motd:\n  file.managed:\n    - name: /tmp/motd\n");
  await writeFile(join(settingsDir, "top.zy"), "base:\n  '*':\n    - common\n");
  await writeFile(join(settingsDir, "common.zy"), "ntp: pool.example\n");

  // No master curve key in this auth dir: settings go out without secrets, which the CLI warns about.
  master = await startTestMaster(nats, {
    id: MASTER_ID,
    statesDir,
    settingsDir,
    publishIntervalMs: HOUR_MS,
    settingsPublishIntervalMs: HOUR_MS,
    leaseRenewMs: HOUR_MS,
    log: (m) => logs.push(m),
  });
  admin = await nats.connectAs("admin");
}, 60_000);

afterAll(async () => {
  await master?.stop();
  await admin?.close().catch(() => {});
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("zester states publish", () => {
  it("reports an unchanged tree and its live revision", async () => {
    const rev = await liveRev("state-files");
    expect(rev).toBe(1);

    const text = ok(await zester("states", "publish"));
    expect(text.stdout).toBe(`states: unchanged at revision 1 (2 files) — master ${MASTER_ID}\n`);
    expect(text.stderr).toBe("");

    const reply = json<TreeReply>(ok(await zester("states", "publish", "--format", "json")));
    expect(reply).toMatchObject({ master: MASTER_ID, published: false, rev: 1, files: 2 });
    expect(await liveRev("state-files")).toBe(1);
  });

  it("publishes a new .zy file at once: new revision, more files, the bucket's revision key moves", async () => {
    await writeFile(join(statesDir, "ntp.zy"), "ntp:\n  pkg.installed: []\n");
    // The master's timer is an hour away: only the CLI's request can publish this.
    expect(await liveRev("state-files")).toBe(1);

    const r = ok(await zester("states", "publish"));
    expect(r.stdout).toBe(
      `states: published revision 2 (3 files, 1 blob written, 0 deleted) by master ${MASTER_ID}\n`,
    );
    expect(await liveRev("state-files")).toBe(2);

    const again = json<TreeReply>(ok(await zester("states", "publish", "--format", "json")));
    expect(again).toMatchObject({ master: MASTER_ID, published: false, rev: 2, files: 3 });
  });
});

describe("zester settings publish", () => {
  it("publishes a changed tree, reports re-sealed peels and warns that secrets were not sealed", async () => {
    expect(await liveRev("settings-files")).toBe(1);
    await writeFile(join(settingsDir, "extra.zy"), "dns: 192.0.2.53\n");

    const r = ok(await zester("settings", "publish"));
    expect(r.stdout).toBe(
      `settings: published revision 2 (3 files, 1 blob written, 0 deleted) by master ${MASTER_ID}; ` +
        "secrets not sealed\n",
    );
    expect(r.stderr).toMatch(
      new RegExp(`^zester: warning: master ${MASTER_ID} has no curve key: .*zester settings keygen`),
    );
    expect(await liveRev("settings-files")).toBe(2);

    const y = ok(await zester("settings", "publish", "--format", "yaml"));
    expect(parse(y.stdout)).toMatchObject({
      master: MASTER_ID,
      published: false,
      rev: 2,
      files: 3,
      sealed: [],
      secretsSealed: false,
    });
  });

  it("passes the master's error on and exits non-zero", async () => {
    // The master refuses linked directories in a settings tree: its publish throws.
    await symlink(statesDir, join(settingsDir, "linked"));
    const r = await zester("settings", "publish");
    await rm(join(settingsDir, "linked"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^zester: master ${MASTER_ID}: .*linked is a symlink to a directory: settings trees may link files only\n$`,
      ),
    );
    expect(r.stdout).toBe("");
    expect(await liveRev("settings-files")).toBe(2);
  });
});

describe("no master to answer", () => {
  it("times out within --timeout when no running master holds the publisher lease", async () => {
    // The lease is taken by a master that is gone: running masters hear the request but stay silent.
    const masterNc = await nats.connectAs("master");
    try {
      const leases = await openKv(masterNc, "leases");
      await leases.put(
        STATE_PUBLISHER_LEASE,
        encode({ holder: "gone-m9", renewed_at: new Date().toISOString() }),
      );
    } finally {
      await masterNc.close();
    }
    const r = await zester("states", "publish", "--timeout", "2");
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(
      /^zester: no master answered on zester\.admin\.states\.publish within 2 s: is zester-master running\?/,
    );
    // It waited for the given timeout, not the 30 s default.
    expect(r.ms).toBeGreaterThanOrEqual(2_000);
    expect(r.ms).toBeLessThan(20_000);
  });

  it("fails at once with a clear message when no master is running", async () => {
    await master?.stop();
    master = undefined;
    for (const what of ["states", "settings"]) {
      const r = await zester(what, "publish", "--timeout", "20");
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toBe(
        `zester: no master answered on zester.admin.${what}.publish within 20 s: is zester-master running?\n`,
      );
      expect(r.ms).toBeLessThan(20_000);
    }
  });
});
