import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUTH_FILES, loadTrustedMasters } from "../src/auth/auth-dir.js";
import { keyPairFromCreds } from "../src/auth/signing.js";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { requireBuilt } from "./support/built.js";
import { runCli, runMain } from "./support/cli.js";
import { returnOf, testCommand } from "./support/commands.js";
import { type StartedNats, startNats } from "./support/nats.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester-peel.js");

let nats: StartedNats;
let master: NatsConnection;
let work: string;
let child: ChildProcess | undefined;

beforeAll(async () => {
  requireBuilt(BIN);
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-peel-daemon-"));
  master = await nats.connectAs("master");
  await bootstrap(master);
}, 120_000);

afterAll(async () => {
  child?.kill("SIGKILL");
  await master?.close();
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("trusted master keys", () => {
  it("nats-auth init writes the master's public key; loadTrustedMasters reads and checks it", async () => {
    const creds = await readFile(await nats.credsFile("master"), "utf8");
    const keys = await loadTrustedMasters(nats.authDir);
    expect([...keys]).toEqual([keyPairFromCreds(creds).getPublicKey()]);

    const bad = await mkdtemp(join(work, "bad-"));
    await expect(loadTrustedMasters(bad)).rejects.toThrow(/cannot read trusted master keys/);
    await writeFile(join(bad, AUTH_FILES.trustedMasters), "# nobody\n");
    await expect(loadTrustedMasters(bad)).rejects.toThrow(/lists no master keys/);
    await writeFile(join(bad, AUTH_FILES.trustedMasters), "SUAGARBAGE\n");
    await expect(loadTrustedMasters(bad)).rejects.toThrow(/:1: not a user public nkey/);
  });
});

describe("zester-peel daemon", () => {
  it("refuses a plaintext nats:// URL before connecting", async () => {
    const r = await runMain(["peel-daemon", "--id", "d-02", "--nats-url", "nats://127.0.0.1:4222"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/nats:\/\/ is plaintext/);
  });

  it("refuses an unknown ZESTER_PEEL_JIT profile with exit code 2 before doing anything", async () => {
    const r = await runCli(BIN, ["--help"], { env: { ZESTER_PEEL_JIT: "turbo" }, timeout: 30_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('ZESTER_PEEL_JIT must be "lean" or "full", not "turbo"');
    expect(r.stdout).toBe("");
    for (const jit of ["lean", "full"]) {
      const ok = await runCli(BIN, ["--help"], { env: { ZESTER_PEEL_JIT: jit }, timeout: 30_000 });
      expect(ok.code, jit).toBe(0);
      expect(ok.stdout).toContain("ZESTER_PEEL_JIT");
    }
  });

  it("checks the enforcement options before connecting", async () => {
    const base = ["peel-daemon", "--id", "d-03", "--nats-url", "tls://127.0.0.1:1"];
    const cases: [string[], RegExp][] = [
      [["--enforce-every", "5s"], /--enforce-every must be at least 10s/],
      [["--enforce-every", "soon"], /--enforce-every must be a duration such as 30s, 5m or 1h, not "soon"/],
      [["--enforce-every", "30m", "--enforce-splay", "x"], /--enforce-splay must be a duration such as 30s/],
      [["--enforce-every", "30m", "--enforce-sls", " , "], /--enforce-sls needs at least one sls name/],
      [["--enforce-test", "--enforce-sls", "web"], /--enforce-sls, --enforce-test needs --enforce-every/],
    ];
    for (const [args, re] of cases) {
      const r = await runMain([...base, ...args]);
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.err, args.join(" ")).toMatch(re);
    }
  });

  it("runs a peel that answers commands and stops cleanly on SIGTERM", async () => {
    const id = "daemon-01";
    child = spawn(
      process.execPath,
      [
        BIN,
        "--id",
        id,
        "--nats-url",
        nats.url,
        "--creds",
        await nats.credsFile(id),
        "--ca",
        nats.caFile,
        "--auth-dir",
        nats.authDir,
        "--cache-dir",
        join(work, "cache"),
        "--facts-dir",
        join(work, "facts"),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString("utf8");
    });
    const exited = new Promise<number | null>((r) => child!.on("exit", (code) => r(code)));

    const hb = await openKv(master, "peel-heartbeat");
    const deadline = Date.now() + 20_000;
    while (!(await hb.get(id)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await hb.get(id), stderr).not.toBeNull();

    const signer = keyPairFromCreds(await readFile(await nats.credsFile("master"), "utf8"));
    const ret = await returnOf(master, testCommand(signer, id, "test.echo", ["from the daemon"], {}, 10));
    expect(ret).toMatchObject({ success: true, return: "from the daemon" });

    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/connected to/);
    expect(stderr).toMatch(/SIGTERM received, stopping/);
    expect(stderr).toMatch(/stopped/);
    child = undefined;
  });

  it("finds creds, CA and trusted master keys in $ZESTER_AUTH_DIR, as the master and CLI do", async () => {
    const id = "daemon-env-01";
    await nats.credsFile(id); // issued into <auth-dir>/peels/<id>.creds, the default path
    const env: NodeJS.ProcessEnv = { ...process.env, ZESTER_AUTH_DIR: nats.authDir };
    delete env.NATS_CA_FILE;
    child = spawn(
      process.execPath,
      [
        BIN,
        "--id",
        id,
        "--nats-url",
        nats.url,
        "--cache-dir",
        join(work, "cache-env"),
        "--facts-dir",
        join(work, "facts"),
      ],
      { stdio: ["ignore", "pipe", "pipe"], env },
    );
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString("utf8");
    });
    const exited = new Promise<number | null>((r) => child!.on("exit", (code) => r(code)));
    const signer = keyPairFromCreds(await readFile(await nats.credsFile("master"), "utf8"));
    const hb = await openKv(master, "peel-heartbeat");
    const deadline = Date.now() + 20_000;
    while (!(await hb.get(id)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await hb.get(id), stderr).not.toBeNull();
    const ret = await returnOf(master, testCommand(signer, id, "test.echo", ["env"], {}, 10));
    expect(ret).toMatchObject({ success: true, return: "env" });
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    child = undefined;
  });
});
