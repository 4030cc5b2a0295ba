/**
 * The attack suite, transports: someone on the network puts a plaintext server, a server with a
 * certificate from another CA, or a TLS 1.2-only server where a peel expects its NATS server (or
 * connects to the real one without TLS). The peel's client must refuse every one of them before
 * it sends its creds. Each attempt prints one line.
 */
import { connect as tcpConnect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "../../src/bus/connect.js";
import { peelInboxPrefix } from "../../src/bus/names.js";
import { createCa } from "../../src/ca/ca.js";
import {
  type StartedNats,
  type StartedPlainNats,
  startNats,
  startPlainNats,
  startTls12OnlyServer,
} from "../support/nats.js";
import { ATTACKER, failureOf, report } from "./setup.js";

let nats: StartedNats;
let plain: StartedPlainNats;

beforeAll(async () => {
  [nats, plain] = await Promise.all([startNats(), startPlainNats()]);
}, 30_000);
afterAll(async () => {
  await plain?.stop();
  await nats?.stop();
});

/** A peel's connection attempt to `servers`, as the daemon makes it. */
async function peelConnects(servers: string, caFile: string): Promise<Error | undefined> {
  return failureOf(async () => {
    const nc = await connect({
      servers,
      caFile,
      credsFile: await nats.credsFile(ATTACKER),
      inboxPrefix: peelInboxPrefix(ATTACKER),
      reconnect: false,
      timeoutMs: 5_000,
    });
    await nc.close();
  });
}

describe("transports", () => {
  it("a plaintext server posing as the NATS server (tls:// URL) is refused before the creds are sent", async () => {
    const err = await peelConnects(`tls://127.0.0.1:${plain.port}`, nats.caFile);
    report("peel connects to a plaintext server", err ? `refused (${err.message})` : "ACCEPTED");
    expect(err?.message).toMatch(/does not offer TLS; Zester refuses plaintext/);
  });

  it("a nats:// URL is refused before any network I/O", async () => {
    const err = await peelConnects(`nats://127.0.0.1:${nats.port}`, nats.caFile);
    report("peel told to use nats://", err ? `refused (${err.message.split("\n")[0]})` : "ACCEPTED");
    expect(err?.message).toMatch(/tls:\/\//);
  });

  it("a server whose certificate another CA signed is refused", async () => {
    const other = await createCa();
    const { writeFile, mkdtemp, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = await mkdtemp(join(tmpdir(), "zester-attack-ca-"));
    try {
      // The peel trusts another CA than the one that signed this server: a server in the middle.
      await writeFile(join(dir, "ca.crt"), other.certPem);
      const err = await peelConnects(nats.url, join(dir, "ca.crt"));
      report("peel connects to a server signed by another CA", err ? `refused (${err.message})` : "ACCEPTED");
      expect(err?.message).toMatch(/certificate/i);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a server that offers only TLS 1.2 is refused, saying so", async () => {
    const old = await startTls12OnlyServer();
    try {
      const err = await peelConnects(old.url, old.caFile);
      report("peel connects to a TLS 1.2-only server", err ? `refused (${err.message})` : "ACCEPTED");
      expect(err?.message).toMatch(/TLS handshake refused \(.+\); Zester requires TLS 1\.3/);
    } finally {
      await old.stop();
    }
  });

  it("the real server refuses a client that does not upgrade to TLS", async () => {
    // A plaintext CONNECT straight after INFO: the server requires TLS and closes the connection.
    const answer = await new Promise<string>((resolve) => {
      let got = "";
      const sock = tcpConnect(nats.port, "127.0.0.1", () => {
        sock.write('CONNECT {"verbose":false,"pedantic":false,"tls_required":false}\r\nPING\r\n');
      });
      sock.on("data", (b) => {
        got += b.toString("utf8");
      });
      sock.on("error", () => resolve(got));
      sock.on("close", () => resolve(got));
      setTimeout(() => {
        sock.destroy();
        resolve(got);
      }, 3_000).unref();
    });
    const pong = /PONG/.test(answer);
    report(
      "plaintext CONNECT to the real server",
      pong ? "ACCEPTED" : `refused (${answer.match(/-ERR '[^']+'/)?.[0] ?? "connection closed"})`,
    );
    expect(pong).toBe(false);
  });
});
