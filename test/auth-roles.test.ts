import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode as decodeJwt } from "@nats-io/jwt";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AUTH_FILES, initAuthDir, issuePeelCredsFile, peelCredsPath } from "../src/auth/auth-dir.js";
import { decodeCredsJwt } from "../src/auth/hierarchy.js";
import { adminPermissions, masterPermissions, peelPermissions } from "../src/auth/permissions.js";
import { CA_FILES } from "../src/ca/ca.js";

/** NATS subject matching: `*` one token, `>` one or more trailing tokens. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== "*" && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}
const anyMatch = (patterns: string[], subject: string) => patterns.some((p) => matches(p, subject));

describe("role permissions", () => {
  const peel = peelPermissions("web-01");

  it("a peel may use only its own command, job, event, fact, basket, heartbeat and secret subjects", () => {
    const pub = peel.pub.allow;
    const sub = peel.sub.allow;
    for (const ok of [
      "zester.event.web-01.beacon.disk",
      "zester.job.J1.ack.web-01",
      "zester.job.J1.return.web-01",
      "zester.fact.web-01",
      "zester.basket.web-01.network",
      "$KV.facts.web-01",
      "$KV.peel-heartbeat.web-01",
      "$KV.basket.web-01.network",
      "$JS.API.DIRECT.GET.KV_secrets.$KV.secrets.web-01",
      "$JS.API.DIRECT.GET.KV_state-files.$KV.state-files.top.zy",
      "$JS.API.CONSUMER.CREATE.KV_settings-files.oc_1.$KV.settings-files.>",
    ]) {
      expect(anyMatch(pub, ok), ok).toBe(true);
    }
    for (const denied of [
      "zester.dispatch",
      "zester.cmd.web-01",
      "zester.cmd.web-02",
      "zester.event.web-02.x",
      "zester.event._master.x",
      "zester.event._admin.send.x",
      "zester.job.J1.return.web-02",
      "zester.job.J1.cancel.web-01",
      "zester.fact.web-02",
      "zester.admin.enroll.approve",
      "zester.target.resolve",
      "$KV.facts.web-02",
      "$KV.secrets.web-01",
      "$KV.state-files.top.zy",
      "$KV.jobs.J1",
      "$JS.API.DIRECT.GET.KV_secrets",
      "$JS.API.DIRECT.GET.KV_secrets.$KV.secrets.web-02",
      "$JS.API.STREAM.MSG.GET.KV_secrets",
      "$JS.API.CONSUMER.CREATE.KV_secrets.x.$KV.secrets.>",
      "$JS.API.CONSUMER.CREATE.KV_jobs.x.$KV.jobs.>",
      "$JS.API.STREAM.CREATE.KV_facts",
      "$JS.API.STREAM.DELETE.KV_facts",
      "$JS.API.STREAM.PURGE.KV_facts",
      "_INBOX.abc",
    ]) {
      expect(anyMatch(pub, denied), denied).toBe(false);
    }
    expect(anyMatch(sub, "zester.cmd.web-01")).toBe(true);
    expect(anyMatch(sub, "zester.job.J1.cancel.web-01")).toBe(true);
    expect(anyMatch(sub, "_INBOX_web-01.x.y")).toBe(true);
    for (const denied of [
      "zester.cmd.web-02",
      "zester.cmd.*",
      "_INBOX.x",
      "_INBOX_web-02.x",
      "zester.dispatch",
    ]) {
      expect(anyMatch(sub, denied), denied).toBe(false);
    }
    expect(peel.resp).toEqual({ max: 1, ttl: 0 });
  });

  it("peel permissions are built from a validated id", () => {
    expect(() => peelPermissions("web.*")).toThrow(/invalid peel id/);
    expect(() => peelPermissions(">")).toThrow(/invalid peel id/);
  });

  it("master owns the control plane; admin asks masters and reads", () => {
    const m = masterPermissions();
    for (const s of ["zester.cmd.web-01", "$JS.API.STREAM.CREATE.events", "$KV.secrets.web-01", "_INBOX.x"]) {
      expect(anyMatch(m.pub.allow, s), s).toBe(true);
    }
    const a = adminPermissions();
    for (const s of [
      "zester.dispatch",
      "zester.target.resolve",
      "zester.admin.job.kill",
      "zester.event._admin.send.x",
    ]) {
      expect(anyMatch(a.pub.allow, s), s).toBe(true);
    }
    for (const s of [
      "zester.cmd.web-01",
      "$KV.facts.web-01",
      "$JS.API.STREAM.DELETE.events",
      "zester.event.web-01.x",
    ]) {
      expect(anyMatch(a.pub.allow, s), s).toBe(false);
    }
    expect(anyMatch(a.pub.deny ?? [], "$JS.API.DIRECT.GET.KV_secrets.$KV.secrets.web-01")).toBe(true);
  });
});

describe("auth dir", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "zester-auth-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("writes the trust chain with 0600 secrets and creds carrying the role permissions", async () => {
    const res = await initAuthDir({ dir, hosts: ["nats.example"], port: 4333 });
    for (const f of [
      AUTH_FILES.operatorSeed,
      AUTH_FILES.operatorSigningSeed,
      AUTH_FILES.systemAccountSeed,
      AUTH_FILES.accountSeed,
      AUTH_FILES.accountSigningSeed,
      AUTH_FILES.masterCreds,
      AUTH_FILES.adminCreds,
      AUTH_FILES.systemCreds,
      CA_FILES.caKey,
      CA_FILES.serverKey,
    ]) {
      expect(res.written).toContain(join(dir, f));
      expect((await stat(join(dir, f))).mode & 0o777, f).toBe(0o600);
    }
    const op = decodeJwt<{ system_account: string; signing_keys: string[] }>(
      (await readFile(join(dir, AUTH_FILES.operatorJwt), "utf8")).trim(),
    );
    const sys = decodeJwt<{ limits: Record<string, unknown> }>(
      (await readFile(join(dir, AUTH_FILES.systemAccountJwt), "utf8")).trim(),
    );
    // The system account must never get JetStream; its other limits are explicit like ZESTER's.
    expect(sys.nats.limits).toMatchObject({
      mem_storage: 0,
      disk_storage: 0,
      streams: 0,
      consumer: 0,
      conn: -1,
    });
    const acct = decodeJwt<{ limits: Record<string, unknown>; signing_keys: string[] }>(
      (await readFile(join(dir, AUTH_FILES.accountJwt), "utf8")).trim(),
    );
    expect(op.nats.system_account).toBe(sys.sub);
    expect(acct.iss).toBe(op.nats.signing_keys?.[0]);
    expect(acct.nats.limits).toMatchObject({
      conn: -1,
      subs: -1,
      disk_storage: -1,
      mem_storage: -1,
      streams: -1,
    });

    const master = decodeCredsJwt(await readFile(join(dir, AUTH_FILES.masterCreds), "utf8"));
    expect(master.iss).toBe(acct.nats.signing_keys?.[0]);
    expect(master.nats.issuer_account).toBe(acct.sub);
    expect(master.nats.pub?.allow).toEqual(masterPermissions().pub.allow);
    const admin = decodeCredsJwt(await readFile(join(dir, AUTH_FILES.adminCreds), "utf8"));
    expect(admin.nats.pub?.allow).toEqual(adminPermissions().pub.allow);

    const conf = await readFile(join(dir, AUTH_FILES.serverConfig), "utf8");
    expect(conf).toContain("port: 4333");
    expect(conf).toMatch(/resolver: \{\n {2}type: full/);
    expect(conf).toContain(
      `${acct.sub}: "${(await readFile(join(dir, AUTH_FILES.accountJwt), "utf8")).trim()}"`,
    );
    expect(conf).toContain(`system_account: "${sys.sub}"`);
    expect(conf).toMatch(/max_control_line: \d{5,}/);
  });

  it("never overwrites without force, and force keeps the CA", async () => {
    await initAuthDir({ dir });
    const creds = await readFile(join(dir, AUTH_FILES.masterCreds), "utf8");
    const ca = await readFile(join(dir, CA_FILES.caCert), "utf8");
    await expect(initAuthDir({ dir })).rejects.toThrow(/already holds .*master\.creds.*use --force/);
    expect(await readFile(join(dir, AUTH_FILES.masterCreds), "utf8")).toBe(creds);
    await initAuthDir({ dir, force: true });
    expect(await readFile(join(dir, AUTH_FILES.masterCreds), "utf8")).not.toBe(creds);
    expect(await readFile(join(dir, CA_FILES.caCert), "utf8")).toBe(ca);
    expect((await stat(join(dir, AUTH_FILES.masterCreds))).mode & 0o777).toBe(0o600);
  });

  it("issues peel creds 0600 with the peel's permissions, refusing bad ids and overwrites", async () => {
    await initAuthDir({ dir });
    const path = await issuePeelCredsFile(dir, "web-01");
    expect(path).toBe(peelCredsPath(dir, "web-01"));
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const claims = decodeCredsJwt(await readFile(path, "utf8"));
    expect(claims.name).toBe("peel-web-01");
    expect(claims.nats.pub?.allow).toEqual(peelPermissions("web-01").pub.allow);
    expect(claims.nats.sub?.allow).toEqual(peelPermissions("web-01").sub.allow);
    await expect(issuePeelCredsFile(dir, "web-01")).rejects.toThrow(/already exists/);
    await expect(issuePeelCredsFile(dir, "web.01")).rejects.toThrow(/invalid peel id/);
    await expect(issuePeelCredsFile(join(dir, "nope"), "web-02")).rejects.toThrow(/zester nats-auth init/);
  });
});
