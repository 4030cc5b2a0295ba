import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AUTH_FILES } from "../src/auth/auth-dir.js";
import { decodeCredsJwt } from "../src/auth/hierarchy.js";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { connect } from "../src/bus/connect.js";
import { certificateHosts } from "../src/ca/ca.js";
import { runMain } from "./support/cli.js";
import { freePort } from "./support/nats.js";

const zester = (...argv: string[]) => runMain(argv);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-cli-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("zester nats-auth init", () => {
  it("writes a config nats-server starts with as is, and the creds work against it", async () => {
    const port = await freePort();
    const r = await zester("nats-auth", "init", "--dir", dir, "--port", String(port), "--host", "nats.test");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain(`wrote ${join(dir, AUTH_FILES.masterCreds)}`);
    expect(r.out).toContain(`wrote ${join(dir, "nats-ca.crt")}`);
    expect(r.out).toContain(`nats-server -c ${join(dir, AUTH_FILES.serverConfig)}`);
    expect(certificateHosts(await readFile(join(dir, "nats-server.crt"), "utf8"))).toContain("nats.test");

    const p = await zester("peel", "creds", "web-01", "--dir", dir);
    expect(p.code).toBe(0);
    const peelCreds = join(dir, "peels", "web-01.creds");
    expect(p.out).toBe(`wrote ${peelCreds}\n`);
    // The peel JWT is longer than nats-server's default 4 KiB control line would comfortably allow.
    expect((await readFile(peelCreds, "utf8")).length).toBeGreaterThan(2000);

    const server = spawn("nats-server", ["-c", join(dir, AUTH_FILES.serverConfig)], { stdio: "ignore" });
    try {
      const url = `tls://127.0.0.1:${port}`;
      const caFile = join(dir, "nats-ca.crt");
      let master: Awaited<ReturnType<typeof connect>> | undefined;
      for (let i = 0; i < 100 && !master; i++) {
        master = await connect({
          servers: url,
          caFile,
          credsFile: join(dir, "master.creds"),
          reconnect: false,
        }).catch(() => undefined);
        if (!master) await new Promise((res) => setTimeout(res, 100));
      }
      expect(master).toBeDefined();
      await bootstrap(master!);
      const peel = await connect({
        servers: url,
        caFile,
        credsFile: peelCreds,
        inboxPrefix: "_INBOX_web-01",
      });
      await (await openKv(peel, "facts")).put("web-01", new TextEncoder().encode('{"v":1}'));
      expect((await (await openKv(master!, "facts")).get("web-01"))?.revision).toBe(1);
      await peel.close();
      await master!.close();
    } finally {
      server.kill("SIGTERM");
      await new Promise((res) => server.once("exit", res));
    }
  });

  it("refuses to overwrite without --force and keeps the files", async () => {
    expect((await zester("nats-auth", "init", "--dir", dir)).code).toBe(0);
    const before = await readFile(join(dir, AUTH_FILES.adminCreds), "utf8");
    const again = await zester("nats-auth", "init", "--dir", dir);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/already holds .* \(use --force to overwrite\)/);
    expect(await readFile(join(dir, AUTH_FILES.adminCreds), "utf8")).toBe(before);
    const forced = await zester("nats-auth", "init", "--dir", dir, "--force");
    expect(forced.code).toBe(0);
    expect(forced.out).toContain("kept  ");
    expect(await readFile(join(dir, AUTH_FILES.adminCreds), "utf8")).not.toBe(before);
  });

  it("reports usage mistakes with exit code 1", async () => {
    const noDir = await zester("nats-auth", "init");
    expect(noDir.code).toBe(1);
    expect(noDir.err).toMatch(/required option '--dir <dir>' not specified/);
    const badPort = await zester("nats-auth", "init", "--dir", dir, "--port", "http");
    expect(badPort.code).toBe(1);
    expect(badPort.err).toMatch(/invalid port "http"/);
    const unknown = await zester("nats-auth", "frobnicate");
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/unknown command 'frobnicate'/);
    const help = await zester("nats-auth", "init", "--help");
    expect(help.code).toBe(0);
    expect(help.out).toContain("--dir <dir>");
  });
});

describe("zester peel creds", () => {
  it("validates the id, honours --out and --force", async () => {
    await zester("nats-auth", "init", "--dir", dir);
    const bad = await zester("peel", "creds", "web.01", "--dir", dir);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/invalid peel id "web.01"/);
    const out = join(dir, "x", "db-1.creds");
    const ok = await zester("peel", "creds", "db-1", "--dir", dir, "--out", out);
    expect(ok.code).toBe(0);
    expect(ok.out).toBe(`wrote ${out}\n`);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect(decodeCredsJwt(await readFile(out, "utf8")).nats.sub?.allow).toContain("zester.cmd.db-1");
    const again = await zester("peel", "creds", "db-1", "--dir", dir, "--out", out);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/already exists \(use --force/);
    expect((await zester("peel", "creds", "db-1", "--dir", dir, "--out", out, "--force")).code).toBe(0);
  });
});

describe("zester ca", () => {
  it("inits a CA and issues a server certificate with the given hosts", async () => {
    const init = await zester("ca", "init", "--dir", dir);
    expect(init.code).toBe(0);
    expect(init.out).toContain(`wrote ${join(dir, "nats-ca.key")}`);
    expect((await stat(join(dir, "nats-ca.key"))).mode & 0o777).toBe(0o600);
    const issue = await zester("ca", "issue", "nats-server", "--dir", dir, "--host", "nats.a", "10.0.0.5");
    expect(issue.code).toBe(0);
    expect(issue.out).toContain("hosts: localhost, 127.0.0.1, ::1, nats.a, 10.0.0.5");
    expect((await zester("ca", "init", "--dir", dir)).code).toBe(1);
    const kind = await zester("ca", "issue", "client", "--dir", dir);
    expect(kind.code).toBe(1);
    expect(kind.err).toMatch(/unknown certificate kind "client"/);
  });
});
