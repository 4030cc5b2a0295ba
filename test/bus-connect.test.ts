import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrap } from "../src/bus/bootstrap.js";
import { assertTlsUrls, connect, InsecureUrlError, resolveCaFile } from "../src/bus/connect.js";
import { BUCKET_NAMES, PEEL_HEARTBEAT_TTL_MS, STREAM_NAMES } from "../src/bus/names.js";
import { createCa } from "../src/ca/ca.js";
import {
  type StartedNats,
  type StartedPlainNats,
  startNats,
  startPlainNats,
  startTls12OnlyServer,
} from "./support/nats.js";

let nats: StartedNats;
let plain: StartedPlainNats;

beforeAll(async () => {
  [nats, plain] = await Promise.all([startNats(), startPlainNats()]);
});
afterAll(async () => {
  await Promise.all([nats?.stop(), plain?.stop()]);
});

/** Speaks the start of the NATS protocol by hand: INFO in plaintext, then a TLS upgrade. */
function negotiateTls(
  port: number,
  ca: string,
): Promise<{ info: Record<string, unknown>; protocol: string | null }> {
  return new Promise((resolve, reject) => {
    const sock = tcpConnect({ port, host: "127.0.0.1" });
    let buf = "";
    sock.on("error", reject);
    sock.on("data", function onData(d) {
      buf += d.toString("utf8");
      const nl = buf.indexOf("\r\n");
      if (nl < 0) return;
      sock.off("data", onData);
      expect(buf.startsWith("INFO ")).toBe(true);
      const info = JSON.parse(buf.slice(5, nl)) as Record<string, unknown>;
      const tls = tlsConnect({ socket: sock, ca, servername: "localhost" }, () => {
        const protocol = tls.getProtocol();
        tls.destroy();
        resolve({ info, protocol });
      });
      tls.on("error", reject);
    });
  });
}

describe("bus connect (real nats-server)", () => {
  it("negotiates TLS 1.3 and connects with master creds", async () => {
    const { info, protocol } = await negotiateTls(nats.port, await readFile(nats.caFile, "utf8"));
    expect(info.tls_required).toBe(true);
    expect(protocol).toBe("TLSv1.3");
    const nc = await nats.connectAs("master");
    try {
      expect(nc.info?.tls_required).toBe(true);
      expect(nc.info?.jetstream).toBe(true);
      await nc.flush();
    } finally {
      await nc.close();
    }
  });

  it("refuses a nats:// URL before any network I/O", async () => {
    let accepted = 0;
    const srv = createServer((s) => {
      accepted++;
      s.destroy();
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as { port: number }).port;
    try {
      const err = await connect({ servers: `nats://127.0.0.1:${port}` }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InsecureUrlError);
      expect((err as Error).message).toMatch(/only connects over TLS 1\.3/);
      expect((err as Error).message).toContain(`use tls://127.0.0.1:${port}`);
      await new Promise((r) => setTimeout(r, 100));
      expect(accepted).toBe(0);
    } finally {
      srv.close();
    }
  });

  it("refuses a plaintext server even with a tls:// URL", async () => {
    const err = await connect({
      servers: `tls://127.0.0.1:${plain.port}`,
      caFile: nats.caFile,
      reconnect: false,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/does not offer TLS; Zester refuses plaintext/);
  });

  it("refuses a server that offers only TLS 1.2", async () => {
    const old = await startTls12OnlyServer();
    try {
      const err = await connect({ servers: old.url, caFile: old.caFile, reconnect: false }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Error);
      // Said as what was refused, not as OpenSSL's alert text or a timeout.
      expect((err as Error).message).toMatch(/TLS handshake refused \(.+\); Zester requires TLS 1\.3/);
      expect((err as Error).message).toContain(old.url.replace("tls://", ""));
    } finally {
      await old.stop();
    }
  });

  it("refuses a connection without creds", async () => {
    const err = await connect({ servers: nats.url, caFile: nats.caFile, reconnect: false }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(String((err as Error).message)).toMatch(/authorization violation/i);
  });

  it("refuses a server whose certificate another CA signed", async () => {
    const dir = await mkdtemp(join(tmpdir(), "zester-otherca-"));
    try {
      const other = await createCa();
      await writeFile(join(dir, "ca.crt"), other.certPem);
      const err = await connect({
        servers: nats.url,
        caFile: join(dir, "ca.crt"),
        credsFile: await nats.credsFile("master"),
        reconnect: false,
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(String((err as Error).message)).toMatch(/certificate/i);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("bootstrap creates every bucket and stream, and a second run changes nothing", async () => {
    const nc = await nats.connectAs("master");
    try {
      const first = await bootstrap(nc);
      const all = [...BUCKET_NAMES.map((b) => `KV_${b}`), ...STREAM_NAMES];
      expect(first.created.sort()).toEqual([...all].sort());
      const jsm = await jetstreamManager(nc);
      const before = new Map<string, unknown>();
      for (const name of all) {
        const si = await jsm.streams.info(name);
        expect(si.config.allow_direct).toBe(true);
        before.set(name, { created: si.created, config: si.config });
      }
      const facts = await jsm.streams.info("KV_facts");
      expect(facts.config.max_msgs_per_subject).toBeGreaterThanOrEqual(5);
      const hb = await jsm.streams.info("KV_peel-heartbeat");
      expect(hb.config.max_age).toBe(PEEL_HEARTBEAT_TTL_MS * 1_000_000);
      expect((await jsm.streams.info("events")).config.subjects).toEqual(["zester.event.>"]);

      const second = await bootstrap(nc);
      expect(second.created).toEqual([]);
      expect(second.existing.sort()).toEqual([...all].sort());
      for (const name of all) {
        const si = await jsm.streams.info(name);
        expect({ created: si.created, config: si.config }).toEqual(before.get(name));
      }

      // A job-events stream from an older release stored every ack and return: bootstrap narrows
      // it to cancels, so acks and returns stop being written twice.
      const old = (await jsm.streams.info("job-events")).config;
      await jsm.streams.update("job-events", { ...old, subjects: ["zester.job.>"] });
      await bootstrap(nc);
      expect((await jsm.streams.info("job-events")).config.subjects).toEqual(["zester.job.*.cancel.*"]);
    } finally {
      await nc.close();
    }
  });
});

describe("URL and CA resolution", () => {
  it("accepts only tls:// URLs", () => {
    expect(assertTlsUrls("tls://a:4222, tls://b:4222")).toEqual(["tls://a:4222", "tls://b:4222"]);
    expect(() => assertTlsUrls("nats://a:4222")).toThrow(
      /nats:\/\/ is plaintext.*use tls:\/\/a:4222 instead/,
    );
    expect(() => assertTlsUrls("a:4222")).toThrow(/without a scheme.*tls:\/\/a:4222/);
    expect(() => assertTlsUrls(["tls://a", "ws://b"])).toThrow(InsecureUrlError);
    expect(() => assertTlsUrls("")).toThrow(/no NATS server URL/);
  });

  it("resolves the CA: option, then NATS_CA_FILE, then <authDir>/nats-ca.crt, then system trust", async () => {
    const dir = await mkdtemp(join(tmpdir(), "zester-caorder-"));
    try {
      const a = join(dir, "a.crt");
      const b = join(dir, "b.crt");
      await writeFile(a, "x");
      await writeFile(b, "x");
      await writeFile(join(dir, "nats-ca.crt"), "x");
      expect(await resolveCaFile({ caFile: a, env: { NATS_CA_FILE: b }, authDir: dir })).toBe(a);
      expect(await resolveCaFile({ env: { NATS_CA_FILE: b }, authDir: dir })).toBe(b);
      expect(await resolveCaFile({ env: {}, authDir: dir })).toBe(join(dir, "nats-ca.crt"));
      expect(await resolveCaFile({ env: {}, authDir: join(dir, "none") })).toBeUndefined();
      await expect(resolveCaFile({ caFile: join(dir, "missing"), env: {} })).rejects.toThrow(
        /CA file .* does not exist/,
      );
      await expect(resolveCaFile({ env: { NATS_CA_FILE: join(dir, "missing") } })).rejects.toThrow(
        /NATS_CA_FILE/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
