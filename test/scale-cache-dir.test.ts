/**
 * A peel whose cache dir is read-only or full: start-up refuses it with the reason, and a
 * running peel answers a mutating command at once with the reason in the return instead of
 * leaving the operator to wait out the job timeout. The cache dir is a real tmpfs mount, made
 * read-only or filled for real (we are root in CI; without mount the tests are skipped).
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPairFromCreds } from "../src/auth/signing.js";
import { decode, encode } from "../src/bus/codec.js";
import { subjects } from "../src/bus/names.js";
import { JobStore } from "../src/jobs/store.js";
import type { DispatchReply, JobRecord } from "../src/jobs/wire.js";
import type { Master } from "../src/master/index.js";
import { Peel } from "../src/peel/peel.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

function tryMount(dir: string): string | undefined {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", dir], { stdio: "pipe" });
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs (${(err as Error).message.split("\n")[0]})`;
  }
}

const work = await mkdtemp(join(tmpdir(), "zester-cachedir-"));
const mnt = join(work, "mnt");
await mkdir(mnt);
const cannot = tryMount(mnt);
if (cannot) process.stdout.write(`skipping cache-dir tests: ${cannot}\n`);

const quiet = { info: () => {}, warn: () => {}, error: () => {} };
let nats: StartedNats;
let admin: NatsConnection;
let store: JobStore;
let master: Master;
let trusted: Set<string>;
const peels: Peel[] = [];

function peelOn(id: string, cacheDir: string, credsFile = ""): Peel {
  return new Peel({
    id,
    servers: nats.url,
    credsFile,
    caFile: nats.caFile,
    cacheDir,
    customFactsDir: join(work, "facts"),
    trustedMasters: trusted,
    logger: quiet,
  });
}

async function startPeel(id: string, cacheDir: string): Promise<Peel> {
  const p = peelOn(id, cacheDir, await nats.credsFile(id));
  await p.start();
  await p.waitConnected();
  peels.push(p);
  return p;
}

async function run(target: string, fun: string, args: unknown[]): Promise<JobRecord> {
  const reply = decode<DispatchReply>(
    (
      await admin.request(subjects.dispatch, encode({ target, fun, args, kwargs: {}, timeout_s: 60 }), {
        timeout: 15_000,
      })
    ).data,
  );
  const jid = reply.jid!;
  return waitFor(`job ${jid} to finish`, async () => {
    const r = (await store.get(jid))?.record;
    return r && r.status !== "running" ? r : undefined;
  });
}

describe.skipIf(cannot !== undefined)("a full or read-only cache dir", () => {
  beforeAll(async () => {
    nats = await startNats();
    admin = await nats.connectAs("admin");
    store = await JobStore.open(await nats.connectAs("master"));
    await mkdir(join(work, "facts"));
    trusted = new Set([
      keyPairFromCreds(await readFile(await nats.credsFile("master"), "utf8")).getPublicKey(),
    ]);
    master = await startTestMaster(nats, {
      id: "cache-m",
      statesDir: "/nonexistent/zester-states",
      unreachableAfterMs: 1_000,
    });
  }, 60_000);

  afterAll(async () => {
    for (const p of peels) await p.stop().catch(() => {});
    await master?.stop();
    await admin?.close();
    await nats?.stop();
    try {
      execFileSync("umount", [mnt], { stdio: "pipe" });
    } catch {
      // already gone
    }
    await rm(work, { recursive: true, force: true });
  });

  it("a running peel answers a mutating command at once when its cache dir turns read-only or full", async () => {
    const cache = join(mnt, "cd-01");
    await startPeel("cd-01", cache);
    await waitFor("the master to see cd-01", () => master.fleet.isOnline("cd-01"));

    execFileSync("mount", ["-o", "remount,ro", mnt]);
    try {
      const rec = await run("cd-01", "test.sleep", [0]);
      expect(rec.peels).toEqual({ "cd-01": "failed" });
      const ret = await store.getReturn(rec.jid, "cd-01");
      expect(ret?.error).toMatch(/^not run: the peel's cache dir .*cd-01 is read-only \(.*EROFS/);
      // Read-only calls need no disk and still answer.
      expect((await run("cd-01", "test.ping", [])).peels).toEqual({ "cd-01": "success" });
    } finally {
      execFileSync("mount", ["-o", "remount,rw", mnt]);
    }

    // Fill the mount: write until the kernel says no.
    const filler = join(mnt, "filler");
    const chunk = Buffer.alloc(4096, 1);
    await writeFile(filler, "");
    try {
      for (;;) await writeFile(filler, chunk, { flag: "a" });
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
    }
    const rec = await run("cd-01", "test.sleep", [0]);
    expect(rec.peels).toEqual({ "cd-01": "failed" });
    expect((await store.getReturn(rec.jid, "cd-01"))?.error).toMatch(/cache dir .*cd-01 is full \(.*ENOSPC/);
    await rm(filler);
    expect((await run("cd-01", "test.sleep", [0])).peels).toEqual({ "cd-01": "success" });
  }, 60_000);

  it("start-up refuses a read-only cache dir and names it", async () => {
    const cache = join(mnt, "cd-02");
    await mkdir(cache, { recursive: true });
    execFileSync("mount", ["-o", "remount,ro", mnt]);
    try {
      const p = peelOn("cd-02", cache);
      await expect(p.start()).rejects.toThrow(/the peel's cache dir .*cd-02 is read-only \(.*EROFS/);
    } finally {
      execFileSync("mount", ["-o", "remount,rw", mnt]);
    }
  });
});
