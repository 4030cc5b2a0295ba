import { connect as tcpConnect } from "node:net";
import { describe, expect, it } from "vitest";
import { statOrUndefined } from "../src/util/files.js";
import { startNats, startPlainNats } from "./support/nats.js";

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ port, host: "127.0.0.1" });
    s.on("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

describe("test support servers", () => {
  it("startNats runs a TLS operator-mode server and stop() removes it and its temp dir", async () => {
    const n = await startNats();
    expect(n.url).toBe(`tls://127.0.0.1:${n.port}`);
    expect(await accepts(n.port)).toBe(true);
    expect(n.output()).toContain("TLS required for client connections");
    expect(n.output()).toContain("Starting JetStream");
    expect(await n.credsFile("web-09")).toBe(await n.credsFile("web-09"));
    await n.stop();
    expect(await accepts(n.port)).toBe(false);
    expect(await statOrUndefined(n.authDir)).toBeUndefined();
  });

  it("startPlainNats runs a plaintext server", async () => {
    const p = await startPlainNats();
    expect(p.url).toBe(`nats://127.0.0.1:${p.port}`);
    expect(await accepts(p.port)).toBe(true);
    await p.stop();
    expect(await accepts(p.port)).toBe(false);
  });
});
