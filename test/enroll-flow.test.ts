/**
 * Enrollment end to end against a real nats-server (TLS, operator mode, full resolver) and the
 * real HTTPS service: request → operator approval → creds → a working Peel; the refusals; token
 * auto-approval; replacement; and revocation that drops a live connection and survives a
 * server restart.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Account, decode as decodeJwt } from "@nats-io/jwt";
import { createCurve, createUser } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUTH_FILES } from "../src/auth/auth-dir.js";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { encode } from "../src/bus/codec.js";
import { connect } from "../src/bus/connect.js";
import { peelInboxPrefix } from "../src/bus/names.js";
import { enrollAdmin } from "../src/enroll/admin.js";
import { enrollPeel, writeCreds } from "../src/enroll/client.js";
import { enrollSignedString, signString } from "../src/enroll/protocol.js";
import { EnrollmentService } from "../src/enroll/service.js";
import { Peel } from "../src/peel/peel.js";
import { runMain } from "./support/cli.js";
import { storedEvents } from "./support/events.js";
import { type RestartableNats, startRestartableNats } from "./support/nats-restart.js";
import { type WaitOptions, waitFor } from "./support/wait.js";

const say = (m: string) => process.env.ENROLL_DEBUG && console.error(m);
const quiet = { info: say, warn: say, error: say };

let nats: RestartableNats;
let master: NatsConnection;
let admin: NatsConnection;
let svc: EnrollmentService;
let ca: string;
const tmpDirs: string[] = [];
const peels: Peel[] = [];
const conns: NatsConnection[] = [];
/** A peel may still be enrolling: a call that fails for now is a "not yet". */
const WAIT: WaitOptions = { ms: 10_000, intervalMs: 100, ignoreErrors: true };

async function tmp(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}

function url(): string {
  return `https://127.0.0.1:${svc.port}`;
}

function https(
  method: "GET" | "POST",
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, string> }> {
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, url()),
      { method, ca, minVersion: "TLSv1.3", headers: { "content-type": "application/json" } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString("utf8")) }),
        );
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

/** Runs `zester ...` in-process and returns exit code and stdout. */
function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  return runMain([...argv, "--nats-url", nats.url, "--auth-dir", nats.authDir]);
}

async function peelConnect(id: string, credsFile: string, reconnect = false): Promise<NatsConnection> {
  const nc = await connect({
    servers: nats.url,
    credsFile,
    caFile: nats.caFile,
    inboxPrefix: peelInboxPrefix(id),
    reconnect,
    timeoutMs: 5000,
  });
  conns.push(nc);
  return nc;
}

/** A hand-made enroll request, for the refusal cases. */
async function signedRequest(peelId: string, opts: { user?: ReturnType<typeof createUser> } = {}) {
  const user = opts.user ?? createUser();
  const curve = createCurve();
  const ident = { peel_id: peelId, public_key: user.getPublicKey(), curve_key: curve.getPublicKey() };
  const ch = await https("POST", "/v1/enroll/challenge", ident);
  expect(ch.status).toBe(200);
  const nonce = ch.body.nonce!;
  return { user, ident, nonce, signature: signString(user, enrollSignedString({ ...ident, nonce })) };
}

beforeAll(async () => {
  nats = await startRestartableNats();
  ca = await readFile(nats.caFile, "utf8");
  master = await connect({
    servers: nats.url,
    credsFile: join(nats.authDir, AUTH_FILES.masterCreds),
    caFile: nats.caFile,
  });
  await bootstrap(master);
  admin = await connect({
    servers: nats.url,
    credsFile: join(nats.authDir, AUTH_FILES.adminCreds),
    caFile: nats.caFile,
  });
  svc = new EnrollmentService({
    nc: master,
    authDir: nats.authDir,
    host: "127.0.0.1",
    port: 0,
    servers: nats.url,
    logger: quiet,
    nonceTtlMs: 3000,
  });
  await svc.start();
}, 60_000);

afterAll(async () => {
  for (const p of peels) await p.stop().catch(() => {});
  for (const c of conns) if (!c.isClosed()) await c.close().catch(() => {});
  await svc?.stop();
  await admin?.close().catch(() => {});
  await master?.close().catch(() => {});
  await nats?.stop();
  for (const d of tmpDirs) await rm(d, { recursive: true, force: true });
});

describe("enrollment", () => {
  let webCache: string;
  let webCreds: string;

  it("a new peel waits for approval, gets least-privilege creds for its own key, and runs", async () => {
    webCache = await tmp("zester-enroll-web-");
    const pending = enrollPeel({
      url: url(),
      peelId: "web-01",
      cacheDir: webCache,
      caFile: nats.caFile,
      pollMinMs: 100,
      pollMaxMs: 300,
      timeoutMs: 20_000,
    });
    pending.catch(() => {});
    // Key seeds exist (0600) before the master has answered anything. peel.nk is written last,
    // so once it is there curve.nk is too.
    const seedStat = await waitFor(
      "peel key",
      () => stat(join(webCache, "peel.nk")).catch(() => undefined),
      WAIT,
    );
    expect(seedStat.mode & 0o777).toBe(0o600);
    expect((await stat(join(webCache, "curve.nk"))).mode & 0o777).toBe(0o600);

    const listed = await waitFor(
      "pending request",
      async () => {
        const r = await cli("enroll", "list", "--status", "pending", "--format", "json");
        const recs = JSON.parse(r.out) as { peel_id: string; request_id: string; public_key: string }[];
        return recs.find((x) => x.peel_id === "web-01");
      },
      WAIT,
    );
    const seed = (await readFile(join(webCache, "peel.nk"), "utf8")).trim();
    const { keyPairFromSeed } = await import("../src/auth/hierarchy.js");
    expect(listed.public_key).toBe(keyPairFromSeed(seed).getPublicKey());

    const text = await cli("enroll", "list");
    expect(text.out).toMatch(/web-01\s+pending/);

    const approved = await cli("enroll", "approve", listed.request_id);
    expect(approved.code).toBe(0);
    expect(approved.out).toContain("approved web-01");

    const result = await pending;
    expect(result.publicKey).toBe(listed.public_key);
    expect(result.creds).toContain(seed); // assembled locally with the peel's own seed
    expect(result.trustedMasters.length).toBeGreaterThan(0);
    const shown = await enrollAdmin(admin, "show", { id: "web-01" });
    expect(shown.record?.status).toBe("approved");
    expect(JSON.stringify(shown.record)).not.toContain(seed);

    webCreds = join(webCache, "peel.creds");
    await writeCreds(webCreds, result.creds);
    expect((await stat(webCreds)).mode & 0o777).toBe(0o600);

    const peel = new Peel({
      id: "web-01",
      servers: nats.url,
      credsFile: webCreds,
      caFile: nats.caFile,
      authDir: nats.authDir,
      cacheDir: webCache,
      logger: quiet,
      factsIntervalMs: 3_600_000,
    });
    peels.push(peel);
    const factsPut = new Promise((resolve) => peel.once("facts", resolve));
    await peel.start();
    await peel.waitConnected(10_000);
    await factsPut;
    const facts = await openKv(master, "facts");
    expect((await facts.get("web-01"))?.operation).toBe("PUT");

    // Least privilege: the same creds cannot write another peel's facts.
    const nc = await peelConnect("web-01", webCreds);
    const kv = await openKv(nc, "facts");
    await expect(kv.put("web-02", "{}")).rejects.toThrow();
    await nc.close();
  });

  it("refuses a bad signature, a reused or expired nonce, and an invalid peel id", async () => {
    const bad = await signedRequest("sig-01");
    const other = createUser();
    const forged = signString(other, enrollSignedString({ ...bad.ident, nonce: bad.nonce }));
    const r1 = await https("POST", "/v1/enroll", { ...bad.ident, nonce: bad.nonce, signature: forged });
    expect(r1.status).toBe(401);
    expect(r1.body.error).toMatch(/signature/);

    const ok = await signedRequest("nonce-01");
    const first = await https("POST", "/v1/enroll", {
      ...ok.ident,
      nonce: ok.nonce,
      signature: ok.signature,
    });
    expect(first.status).toBe(202);
    expect(first.body.status).toBe("pending");
    const again = await https("POST", "/v1/enroll", {
      ...ok.ident,
      nonce: ok.nonce,
      signature: ok.signature,
    });
    expect(again.status).toBe(401);
    expect(again.body.error).toMatch(/nonce/);

    const late = await signedRequest("late-01");
    await new Promise((r) => setTimeout(r, 3200));
    const r3 = await https("POST", "/v1/enroll", {
      ...late.ident,
      nonce: late.nonce,
      signature: late.signature,
    });
    expect(r3.status).toBe(401);

    const user = createUser();
    const bogus = await https("POST", "/v1/enroll/challenge", {
      peel_id: "web.01",
      public_key: user.getPublicKey(),
      curve_key: createCurve().getPublicKey(),
    });
    expect(bogus.status).toBe(400);
    expect(bogus.body.error).toMatch(/peel_id/);

    // The same key again is idempotent: the same pending request.
    const same = await signedRequest("nonce-01", { user: ok.user });
    const idem = await https("POST", "/v1/enroll", {
      ...same.ident,
      curve_key: ok.ident.curve_key,
      nonce: same.nonce,
      signature: signString(ok.user, enrollSignedString({ ...ok.ident, nonce: same.nonce })),
    });
    expect(idem.status).toBe(202);
    expect(idem.body.request_id).toBe(first.body.request_id);
    // A poll must be signed by the request's key.
    const ts = Date.now();
    const poll = await https("GET", `/v1/enroll/${first.body.request_id}?ts=${ts}&sig=${forged}`);
    expect(poll.status).toBe(401);
    expect((await cli("enroll", "reject", "nonce-01", "--reason", "test")).code).toBe(0);
  });

  it("refuses an enrolled id for a different key (409), never replacing it silently", async () => {
    const other = await signedRequest("web-01");
    const r = await https("POST", "/v1/enroll", {
      ...other.ident,
      nonce: other.nonce,
      signature: other.signature,
    });
    expect(r.status).toBe(409);
    expect(r.body.error).toMatch(/already enrolled/);
    const rec = await enrollAdmin(admin, "show", { id: "web-01" });
    expect(rec.record?.status).toBe("approved");
  });

  it("a one-time token approves one enrollment at once, then is refused", async () => {
    const tok = await cli("enroll", "token", "--ttl", "10m");
    expect(tok.code).toBe(0);
    const token = tok.out.trim();
    expect(token).toMatch(/^zet_/);

    const dbCache = await tmp("zester-enroll-db-");
    const res = await enrollPeel({
      url: url(),
      peelId: "db-01",
      cacheDir: dbCache,
      caFile: nats.caFile,
      token,
    });
    expect(res.jwt).toBeTruthy();
    const shown = await enrollAdmin(admin, "show", { id: "db-01" });
    expect(shown.record?.approver).toBe("token");

    await expect(
      enrollPeel({
        url: url(),
        peelId: "db-02",
        cacheDir: await tmp("zester-enroll-db2-"),
        caFile: nats.caFile,
        token,
        timeoutMs: 1000,
      }),
    ).rejects.toThrow(/403.*token/);
    // The refused attempt left no record behind.
    await expect(enrollAdmin(admin, "show", { id: "db-02" })).rejects.toThrow(/no enrollment/);
  });

  it("refuses a master whose certificate is not signed by the given CA", async () => {
    const { createCa } = await import("../src/ca/ca.js");
    const otherCa = join(await tmp("zester-enroll-ca-"), "other-ca.crt");
    await writeFile(otherCa, (await createCa()).certPem);
    await expect(
      enrollPeel({ url: url(), peelId: "mitm-01", cacheDir: await tmp("zester-enroll-m-"), caFile: otherCa }),
    ).rejects.toThrow(/certificate/i);
    await expect(enrollAdmin(admin, "show", { id: "mitm-01" })).rejects.toThrow(/no enrollment/);
  });

  it("a rejected request ends the peel's wait; approve --all approves every pending one", async () => {
    const waiting = enrollPeel({
      url: url(),
      peelId: "rej-01",
      cacheDir: await tmp("zester-enroll-rej-"),
      caFile: nats.caFile,
      pollMinMs: 100,
      pollMaxMs: 200,
      timeoutMs: 20_000,
    });
    waiting.catch(() => {});
    const a = enrollPeel({
      url: url(),
      peelId: "all-01",
      cacheDir: await tmp("zester-enroll-a1-"),
      caFile: nats.caFile,
      pollMinMs: 100,
      pollMaxMs: 200,
      timeoutMs: 20_000,
    });
    const b = enrollPeel({
      url: url(),
      peelId: "all-02",
      cacheDir: await tmp("zester-enroll-a2-"),
      caFile: nats.caFile,
      pollMinMs: 100,
      pollMaxMs: 200,
      timeoutMs: 20_000,
    });
    a.catch(() => {});
    b.catch(() => {});
    await waitFor(
      "three pending",
      async () => {
        const r = await enrollAdmin(admin, "list", { status: "pending" });
        const ids = (r.records ?? []).map((x) => x.peel_id);
        return ["rej-01", "all-01", "all-02"].every((i) => ids.includes(i)) ? ids : undefined;
      },
      WAIT,
    );
    const rej = await cli("enroll", "reject", "rej-01", "--reason", "unknown machine");
    expect(rej.code).toBe(0);
    await expect(waiting).rejects.toThrow(/rejected/);

    const all = await cli("enroll", "approve", "--all", "--format", "json");
    expect(all.code).toBe(0);
    expect((JSON.parse(all.out) as { peels: string[] }).peels.sort()).toEqual(["all-01", "all-02"]);
    expect((await a).jwt).toBeTruthy();
    expect((await b).jwt).toBeTruthy();
    const left = await enrollAdmin(admin, "list", { status: "pending" });
    expect(left.records).toEqual([]);
  });

  it("every decision is a master event: _master/enroll/<peel>/pending, approved (operator, token), rejected", async () => {
    const file = async (id: string) => {
      const r = await signedRequest(id);
      const res = await https("POST", "/v1/enroll", { ...r.ident, nonce: r.nonce, signature: r.signature });
      expect(res.status).toBe(202);
      return { request: res.body.request_id!, key: r.ident.public_key };
    };
    const yes = await file("ev-yes-01");
    const no = await file("ev-no-01");
    await enrollAdmin(admin, "approve", { id: "ev-yes-01", by: "alice" });
    await enrollAdmin(admin, "reject", { id: no.request, by: "bob", reason: "unknown machine" });
    const tok = await enrollAdmin(admin, "token", { peel: "ev-tok-01" });
    await enrollPeel({
      url: url(),
      peelId: "ev-tok-01",
      cacheDir: await tmp("zester-enroll-ev-"),
      caFile: nats.caFile,
      token: tok.token!,
    });
    const events = await waitFor("the enrollment events", async () => {
      const got = await storedEvents(nats, "_master/enroll/ev-*", 500);
      return got.length >= 5 ? got : undefined;
    });
    const byKey = new Map(events.map((e) => [e.tag, e]));
    expect([...byKey.keys()].sort()).toEqual([
      "enroll/ev-no-01/pending",
      "enroll/ev-no-01/rejected",
      "enroll/ev-tok-01/approved",
      "enroll/ev-yes-01/approved",
      "enroll/ev-yes-01/pending",
    ]);
    expect(events).toHaveLength(5);
    for (const e of events) expect(e.origin).toBe("_master");
    expect(byKey.get("enroll/ev-yes-01/pending")?.data).toMatchObject({
      peel: "ev-yes-01",
      request_id: yes.request,
      public_key: yes.key,
    });
    expect(byKey.get("enroll/ev-yes-01/approved")?.data).toMatchObject({
      request_id: yes.request,
      by: "alice",
    });
    expect(byKey.get("enroll/ev-no-01/rejected")?.data).toMatchObject({
      request_id: no.request,
      by: "bob",
      reason: "unknown machine",
    });
    expect(byKey.get("enroll/ev-tok-01/approved")?.data).toMatchObject({ peel: "ev-tok-01", by: "token" });
  });

  it("writes peel.nk last: a curve key that cannot be written leaves no half set behind", async () => {
    const cache = await tmp("zester-enroll-half-");
    // curve.nk cannot be created (a directory is in the way).
    await mkdir(join(cache, "curve.nk"));
    const err = await enrollPeel({
      url: `https://127.0.0.1:${svc.port}`,
      peelId: "half-01",
      cacheDir: cache,
      caFile: nats.caFile,
      timeoutMs: 5_000,
    }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(await stat(join(cache, "peel.nk")).catch(() => "absent")).toBe("absent");
  });

  it("refuses http:// enrollment URLs before anything is sent", async () => {
    await expect(
      enrollPeel({
        url: `http://127.0.0.1:${svc.port}`,
        peelId: "x-01",
        cacheDir: await tmp("zester-enroll-x-"),
      }),
    ).rejects.toThrow(/only https/);
  });

  it("a rebuilt machine needs approval to replace the id, and approval revokes the old key", async () => {
    // The old machine is gone (Peel.stop() on a connection stuck re-authenticating does not return).
    for (const p of peels.splice(0)) await p.stop();
    const oldNc = await peelConnect("web-01", webCreds);
    const oldClosed = oldNc.closed();
    const newCache = await tmp("zester-enroll-web-new-");
    const tok = (await cli("enroll", "token", "--peel", "web-01")).out.trim();
    const pending = enrollPeel({
      url: url(),
      peelId: "web-01",
      cacheDir: newCache,
      caFile: nats.caFile,
      replace: true,
      token: tok, // a token must not hand a live identity to a new key
      pollMinMs: 100,
      pollMaxMs: 300,
      timeoutMs: 30_000,
    });
    pending.catch(() => {});
    const rec = await waitFor(
      "replacement request",
      async () => {
        const r = await enrollAdmin(admin, "show", { id: "web-01" });
        return r.record?.status === "pending" ? r.record : undefined;
      },
      WAIT,
    );
    expect(rec.replaces?.status).toBe("approved");
    const shown = await cli("enroll", "show", "web-01");
    expect(shown.out).toMatch(/replaces:\s+U/);

    expect((await cli("enroll", "approve", "web-01")).code).toBe(0);
    const res = await pending;
    expect(res.publicKey).not.toBe(rec.replaces?.public_key);

    // The old key's live connection is dropped and it cannot come back.
    const closedWith = await Promise.race([
      oldClosed.then((e) => e ?? "closed"),
      new Promise((r) => setTimeout(() => r("still open"), 10_000)),
    ]);
    expect(closedWith).not.toBe("still open");
    await expect(peelConnect("web-01", webCreds)).rejects.toThrow(/authorization|revoked/i);

    const newCreds = join(newCache, "peel.creds");
    await writeCreds(newCreds, res.creds);
    const nc = await peelConnect("web-01", newCreds);
    await (await openKv(nc, "facts")).put("web-01", '{"v":1}');
    await nc.close();
    webCreds = newCreds;

    // A second replacement attempt that the operator rejects leaves the enrolled key in place.
    const intruder = enrollPeel({
      url: url(),
      peelId: "web-01",
      cacheDir: await tmp("zester-enroll-web-x-"),
      caFile: nats.caFile,
      replace: true,
      pollMinMs: 100,
      pollMaxMs: 200,
      timeoutMs: 20_000,
    });
    intruder.catch(() => {});
    await waitFor(
      "second replacement",
      async () => {
        const r = await enrollAdmin(admin, "show", { id: "web-01" });
        return r.record?.status === "pending" ? r.record : undefined;
      },
      WAIT,
    );
    expect((await cli("enroll", "reject", "web-01")).code).toBe(0);
    await expect(intruder).rejects.toThrow(/rejected/);
    const kept = await enrollAdmin(admin, "show", { id: "web-01" });
    expect(kept.record?.status).toBe("approved");
    expect(kept.record?.public_key).toBe(res.publicKey);
    const still = await peelConnect("web-01", newCreds);
    await still.close();
  });

  it("revoke drops a live connection, refuses reconnects, and survives a server restart", async () => {
    const creds = join(await tmp("zester-enroll-rev-"), "db.creds");
    // Keys already on disk (a peel restarted mid-enrollment) are used, not replaced.
    const user = createUser();
    const curve = createCurve();
    const tokenOut = (await cli("enroll", "token", "--peel", "rev-01")).out.trim();
    const cache = await tmp("zester-enroll-rev-cache-");
    await writeFile(join(cache, "peel.nk"), `${new TextDecoder().decode(user.getSeed())}\n`, { mode: 0o600 });
    await writeFile(join(cache, "curve.nk"), `${new TextDecoder().decode(curve.getSeed())}\n`, {
      mode: 0o600,
    });
    const res = await enrollPeel({
      url: url(),
      peelId: "rev-01",
      cacheDir: cache,
      caFile: nats.caFile,
      token: tokenOut,
    });
    expect(res.publicKey).toBe(user.getPublicKey()); // resumed the identity already on disk
    await writeCreds(creds, res.creds);

    const live = await peelConnect("rev-01", creds, true);
    const statuses: string[] = [];
    void (async () => {
      for await (const s of live.status())
        statuses.push(`${s.type}:${String((s as { error?: unknown }).error ?? "")}`);
    })();
    await (await openKv(live, "facts")).put("rev-01", '{"v":1}');
    const basket = await openKv(admin, "basket");
    await (await openKv(live, "basket")).put(
      "rev-01.role",
      encode({ peel: "rev-01", function: "role", value: "db", ts: new Date().toISOString(), interval_s: 60 }),
    );
    expect((await basket.get("rev-01.role"))?.operation).toBe("PUT");

    const revoked = await cli("enroll", "revoke", "rev-01", "--reason", "decommissioned");
    expect(revoked.code).toBe(0);
    expect(revoked.out).toContain("revoked rev-01");
    await waitFor(
      "disconnect",
      async () => (statuses.some((s) => s.startsWith("disconnect")) ? true : undefined),
      WAIT,
    );
    await live.close();
    await expect(peelConnect("rev-01", creds)).rejects.toThrow(/authorization|revoked/i);

    const acct = decodeJwt<Account>(
      (await readFile(join(nats.authDir, AUTH_FILES.accountJwt), "utf8")).trim(),
    );
    expect(Object.keys(acct.nats.revocations ?? {})).toContain(user.getPublicKey());
    expect((await enrollAdmin(admin, "show", { id: "rev-01" })).record?.status).toBe("revoked");
    // Its basket entries went with it: nobody reads a decommissioned machine's data as current.
    expect((await basket.get("rev-01.role"))?.operation).not.toBe("PUT");

    // A revoked key cannot enroll again either.
    await expect(
      enrollPeel({ url: url(), peelId: "rev-01", cacheDir: cache, caFile: nats.caFile, timeoutMs: 1000 }),
    ).rejects.toThrow(/403.*revoked/);

    await nats.restart();
    await expect(peelConnect("rev-01", creds)).rejects.toThrow(/authorization|revoked/i);
    // The server is up and others still get in: the refusal is the revocation, not an outage.
    const nc = await peelConnect("web-01", webCreds);
    expect(nc.isClosed()).toBe(false);
    await nc.close();
  }, 60_000);
});
