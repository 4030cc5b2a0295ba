/**
 * `zester-peel --enroll-url`: a machine with nothing but the master's URL and CA enrolls, waits
 * for the operator, writes its creds and runs; restarted, it reuses them instead of enrolling.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUTH_FILES } from "../src/auth/auth-dir.js";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { enrollAdmin } from "../src/enroll/admin.js";
import { EnrollmentService } from "../src/enroll/service.js";
import { requireBuilt } from "./support/built.js";
import { runMain } from "./support/cli.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { type WaitOptions, waitFor } from "./support/wait.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester-peel.js");
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

let nats: StartedNats;
let master: NatsConnection;
let admin: NatsConnection;
let svc: EnrollmentService;
let work: string;
const children: ChildProcess[] = [];
/** A peel may still be enrolling: a call that fails for now is a "not yet". */
const WAIT: WaitOptions = { ms: 20_000, intervalMs: 100, ignoreErrors: true };

beforeAll(async () => {
  requireBuilt(BIN);
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-enroll-daemon-"));
  master = await nats.connectAs("master");
  await bootstrap(master);
  admin = await nats.connectAs("admin");
  svc = new EnrollmentService({
    nc: master,
    authDir: nats.authDir,
    host: "127.0.0.1",
    port: 0,
    servers: nats.url,
    logger: quiet,
  });
  await svc.start();
}, 180_000);

afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await svc?.stop();
  await admin?.close();
  await master?.close();
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

function daemon(id: string, extra: string[] = []) {
  const child = spawn(
    process.execPath,
    [
      BIN,
      "--id",
      id,
      "--nats-url",
      nats.url,
      "--enroll-url",
      `https://127.0.0.1:${svc.port}`,
      "--enroll-ca",
      nats.caFile,
      // A fresh machine: no auth dir, so trust comes from what enrollment hands out.
      "--auth-dir",
      join(work, "no-auth-dir"),
      "--cache-dir",
      join(work, id),
      "--facts-dir",
      join(work, "facts"),
      ...extra,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  children.push(child);
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString("utf8");
  });
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  return { child, exited, stderr: () => stderr };
}

describe("zester-peel --enroll-url", () => {
  it("refuses an http:// enrollment URL", async () => {
    const r = await runMain([
      "peel-daemon",
      "--id",
      "x-01",
      "--nats-url",
      nats.url,
      "--enroll-url",
      "http://127.0.0.1:8443",
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/only https/);
  });

  it("enrolls on first start, runs once approved, and reuses its creds after a restart", async () => {
    const id = "fresh-01";
    const first = daemon(id);
    const rec = await waitFor(
      "pending request",
      async () => {
        const r = await enrollAdmin(admin, "list", { status: "pending" });
        return r.records?.find((x) => x.peel_id === id);
      },
      WAIT,
    );
    // The record is in KV before the daemon has the HTTP answer and logs it.
    await waitFor("the waiting log line", () => /waiting for approval/.test(first.stderr()), WAIT);
    await enrollAdmin(admin, "approve", { id: rec.request_id, by: "test" });

    const hb = await openKv(master, "peel-heartbeat");
    await waitFor("heartbeat", () => hb.get(id), WAIT).catch((e) => {
      throw new Error(`${(e as Error).message}\n${first.stderr()}`);
    });
    const cache = join(work, id);
    expect((await stat(join(cache, "peel.creds"))).mode & 0o777).toBe(0o600);
    expect((await stat(join(cache, "peel.nk"))).mode & 0o777).toBe(0o600);
    const masters = await readFile(join(cache, AUTH_FILES.trustedMasters), "utf8");
    expect(masters).toMatch(/^U[A-Z2-7]{55}$/m);
    expect(await readFile(join(cache, "nats-ca.crt"), "utf8")).toBe(await readFile(nats.caFile, "utf8"));

    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);

    await hb.delete(id);
    const second = daemon(id);
    await waitFor(
      "heartbeat after restart",
      async () => {
        const e = await hb.get(id);
        return e?.operation === "PUT" ? e : undefined;
      },
      WAIT,
    );
    expect(second.stderr()).not.toMatch(/enrolling/);
    const after = await enrollAdmin(admin, "show", { id });
    expect(after.record?.request_id).toBe(rec.request_id);
    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
  }, 90_000);

  it("stops cleanly while still waiting for approval", async () => {
    const d = daemon("waiting-01");
    await waitFor(
      "pending request",
      async () => {
        const r = await enrollAdmin(admin, "show", { id: "waiting-01" }).catch(() => undefined);
        return r?.record?.status === "pending" ? r : undefined;
      },
      WAIT,
    );
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(existsSync(join(work, "waiting-01", "peel.creds"))).toBe(false);
  }, 30_000);
});
