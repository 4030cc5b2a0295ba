import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  CA_FILES,
  certificateHosts,
  createCa,
  ensureCaAndServerCert,
  initCaDir,
  issueServerCert,
  issueServerCertFiles,
  normaliseHosts,
} from "../src/ca/ca.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-ca-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function openssl(args: string[], input?: string): string {
  return execFileSync("openssl", args, { input, encoding: "utf8" });
}

describe("ca", () => {
  it("creates an ECDSA P-256 CA and a server cert that verifies against it with the right SANs", async () => {
    const ca = await createCa();
    const server = await issueServerCert(ca, normaliseHosts(["nats.example.com", "10.1.2.3"]));
    expect(certificateHosts(server.certPem)).toEqual([
      "localhost",
      "127.0.0.1",
      "::1",
      "nats.example.com",
      "10.1.2.3",
    ]);
    await writeFile(join(dir, "ca.pem"), ca.certPem);
    await writeFile(join(dir, "server.pem"), server.certPem);
    const verify = openssl(["verify", "-CAfile", join(dir, "ca.pem"), join(dir, "server.pem")]);
    expect(verify).toContain("OK");
    const text = openssl(["x509", "-noout", "-text"], ca.certPem);
    expect(text).toContain("prime256v1");
    expect(text).toMatch(/CA:TRUE/);
    const stext = openssl(["x509", "-noout", "-text"], server.certPem);
    expect(stext).toContain("TLS Web Server Authentication");
    expect(stext).toMatch(/CA:FALSE/);
    expect(openssl(["pkey", "-noout", "-text"], server.keyPem)).toContain("prime256v1");
  });

  it("rejects hosts that are neither DNS names nor IPs", () => {
    expect(() => normaliseHosts(["bad host"])).toThrow(/invalid host/);
    expect(() => normaliseHosts(["a..b"])).toThrow(/invalid host/);
    expect(normaliseHosts(["a.b,[::2]", "a.b"], false)).toEqual(["a.b", "::2"]);
  });

  it("writes files with 0600 keys and refuses to overwrite without force", async () => {
    const res = await initCaDir(dir);
    expect(res.written).toEqual([join(dir, CA_FILES.caCert), join(dir, CA_FILES.caKey)]);
    expect((await stat(join(dir, CA_FILES.caKey))).mode & 0o777).toBe(0o600);
    const before = await readFile(join(dir, CA_FILES.caCert), "utf8");
    await expect(initCaDir(dir)).rejects.toThrow(/already exists \(use --force/);
    expect(await readFile(join(dir, CA_FILES.caCert), "utf8")).toBe(before);
    await initCaDir(dir, { force: true });
    expect(await readFile(join(dir, CA_FILES.caCert), "utf8")).not.toBe(before);

    await issueServerCertFiles(dir, ["example.org"]);
    expect((await stat(join(dir, CA_FILES.serverKey))).mode & 0o777).toBe(0o600);
    await expect(issueServerCertFiles(dir, ["example.org"])).rejects.toThrow(/already exists/);
    const cert = await readFile(join(dir, CA_FILES.serverCert), "utf8");
    expect(certificateHosts(cert)).toContain("example.org");
  });

  it("ensureCaAndServerCert keeps what exists", async () => {
    const first = await ensureCaAndServerCert(dir, []);
    expect(first.written).toHaveLength(4);
    const second = await ensureCaAndServerCert(dir, ["other"]);
    expect(second.written).toEqual([]);
    expect(second.kept).toHaveLength(2);
  });

  it("issuing without a CA explains what to run", async () => {
    await expect(issueServerCertFiles(dir, ["x"])).rejects.toThrow(/zester ca init/);
  });
});
