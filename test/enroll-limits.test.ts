/**
 * What unauthenticated clients can make the master store, against a real nats-server and the
 * real HTTPS service: the pending cap, the per-address rate limits, and the sweep that expires
 * abandoned requests and deletes old rejected records and expired tokens while keeping approved
 * and revoked ones. Clocks are injected (or sweeps run "later") instead of waiting.
 */

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import { createCurve, createUser, type KeyPair } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { enrollAdmin } from "../src/enroll/admin.js";
import { enrollPeel } from "../src/enroll/client.js";
import { enrollSignedString, pollSignedString, signString } from "../src/enroll/protocol.js";
import { EnrollmentService, type EnrollmentServiceOptions } from "../src/enroll/service.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

const DAY = 24 * 3600_000;

let nats: StartedNats;
let master: NatsConnection;
let admin: NatsConnection;
let kv: KV;
let ca: string;
let work: string;
const running: EnrollmentService[] = [];

interface Logged {
  svc: EnrollmentService;
  lines: string[];
}

async function service(opts: Partial<EnrollmentServiceOptions> = {}): Promise<Logged> {
  const lines: string[] = [];
  const log = (m: string) => {
    lines.push(m);
    if (process.env.ENROLL_DEBUG) console.error(m);
  };
  const svc = new EnrollmentService({
    nc: master,
    authDir: nats.authDir,
    host: "127.0.0.1",
    port: 0,
    servers: nats.url,
    logger: { info: log, warn: log, error: log },
    ...opts,
  });
  await svc.start();
  running.push(svc);
  return { svc, lines };
}

async function stop(svc: EnrollmentService): Promise<void> {
  await svc.stop();
  running.splice(running.indexOf(svc), 1);
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, string>;
}

function https(
  svc: EnrollmentService,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, `https://127.0.0.1:${svc.port}`),
      { method, ca, minVersion: "TLSv1.3", headers: { "content-type": "application/json" } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: JSON.parse(Buffer.concat(chunks).toString("utf8")),
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

interface Machine {
  peel_id: string;
  user: KeyPair;
  curve: KeyPair;
}

function machine(peelId: string): Machine {
  return { peel_id: peelId, user: createUser(), curve: createCurve() };
}

function ident(m: Machine) {
  return { peel_id: m.peel_id, public_key: m.user.getPublicKey(), curve_key: m.curve.getPublicKey() };
}

/** Challenge + signed enroll, as a peel does it. */
async function ask(svc: EnrollmentService, m: Machine, extra: Record<string, unknown> = {}): Promise<Answer> {
  const ch = await https(svc, "POST", "/v1/enroll/challenge", ident(m));
  if (ch.status !== 200) return ch;
  const nonce = ch.body.nonce as string;
  const signature = signString(m.user, enrollSignedString({ ...ident(m), nonce }));
  return https(svc, "POST", "/v1/enroll", { ...ident(m), nonce, signature, ...extra });
}

function poll(svc: EnrollmentService, m: Machine, requestId: string): Promise<Answer> {
  const ts = Date.now();
  const sig = signString(m.user, pollSignedString(requestId, ts));
  return https(svc, "GET", `/v1/enroll/${requestId}?ts=${ts}&sig=${sig}`);
}

async function show(id: string) {
  return (await enrollAdmin(admin, "show", { id }).catch(() => undefined))?.record;
}

async function rejectAllPending(): Promise<void> {
  const pending = (await enrollAdmin(admin, "list", { status: "pending" })).records ?? [];
  for (const r of pending) await enrollAdmin(admin, "reject", { id: r.request_id, by: "test" });
}

async function keys(filter: string): Promise<string[]> {
  const out: string[] = [];
  for await (const k of await kv.keys(filter)) out.push(k);
  return out;
}

beforeAll(async () => {
  nats = await startNats();
  ca = await readFile(nats.caFile, "utf8");
  work = await mkdtemp(join(tmpdir(), "zester-enroll-limits-"));
  master = await nats.connectAs("master");
  await bootstrap(master);
  admin = await nats.connectAs("admin");
  kv = await openKv(master, "enrollments");
}, 60_000);

afterAll(async () => {
  for (const s of [...running]) await s.stop().catch(() => {});
  await admin?.close().catch(() => {});
  await master?.close().catch(() => {});
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("enrollment limits", () => {
  it("refuses new requests beyond the pending cap with 429; existing requests keep working", async () => {
    const { svc, lines } = await service({ maxPending: 3 });
    try {
      const ms = ["cap-1", "cap-2", "cap-3"].map(machine);
      const first: Answer[] = [];
      for (const m of ms) {
        const r = await ask(svc, m);
        expect(r.status).toBe(202);
        first.push(r);
      }
      const extra = machine("cap-4");
      const over = await ask(svc, extra);
      expect(over.status).toBe(429);
      expect(over.body.error).toBe(
        "too many pending enrollment requests (3): approve or reject some, or raise the limit",
      );
      expect(over.headers["retry-after"]).toBeDefined();
      expect(await show("cap-4")).toBeUndefined();
      // Logged once for the client, not once per refusal.
      expect((await ask(svc, extra)).status).toBe(429);
      expect(lines.filter((l) => l.includes("too many pending")).length).toBe(1);

      // Re-asking with the same key and polling are not new requests.
      const again = await ask(svc, ms[0] as Machine);
      expect(again.status).toBe(202);
      expect(again.body.request_id).toBe(first[0]?.body.request_id);
      const p = await poll(svc, ms[0] as Machine, first[0]?.body.request_id as string);
      expect(p.status).toBe(200);
      expect(p.body.status).toBe("pending");

      // A decision makes room.
      await enrollAdmin(admin, "reject", { id: "cap-2", by: "test" });
      const now = await ask(svc, extra);
      expect(now.status).toBe(202);
      expect(svc.pendingRequests).toBe(3);
    } finally {
      await rejectAllPending();
      await stop(svc);
    }
  });

  it("limits challenge + enroll per address (429 with Retry-After) and polls separately", async () => {
    let t = Date.now();
    const { svc, lines } = await service({
      now: () => t,
      requestsPerMinute: 4,
      requestBurst: 4,
      pollsPerMinute: 3,
    });
    try {
      const m = machine("rate-01");
      const enrolled = await ask(svc, m); // 2 of 4
      expect(enrolled.status).toBe(202);
      const other = ident(machine("rate-02"));
      expect((await https(svc, "POST", "/v1/enroll/challenge", other)).status).toBe(200);
      expect((await https(svc, "POST", "/v1/enroll/challenge", other)).status).toBe(200);
      const refused = await https(svc, "POST", "/v1/enroll/challenge", other);
      expect(refused.status).toBe(429);
      expect(refused.headers["retry-after"]).toBe("15"); // one request per 15 s at 4/min
      expect(refused.body.error).toMatch(/too many enrollment requests from this address/);
      // Challenge and enroll share the bucket.
      expect((await https(svc, "POST", "/v1/enroll", { ...other, nonce: "x", signature: "y" })).status).toBe(
        429,
      );
      expect(lines.filter((l) => l.includes("too many enrollment requests")).length).toBe(1);

      // The waiting machine's polls have their own bucket.
      const id = enrolled.body.request_id as string;
      for (let i = 0; i < 3; i++) expect((await poll(svc, m, id)).status).toBe(200);
      const p4 = await poll(svc, m, id);
      expect(p4.status).toBe(429);
      expect(p4.headers["retry-after"]).toBe("20");

      t += 15_000;
      expect((await https(svc, "POST", "/v1/enroll/challenge", other)).status).toBe(200);
      expect((await https(svc, "POST", "/v1/enroll/challenge", other)).status).toBe(429);
      expect((await poll(svc, m, id)).status).toBe(429); // 0.75 of a poll refilled: not yet

      t += 60_000;
      for (let i = 0; i < 4; i++)
        expect((await https(svc, "POST", "/v1/enroll/challenge", other)).status).toBe(200);
      expect((await https(svc, "POST", "/v1/enroll/challenge", other)).status).toBe(429);
      expect((await poll(svc, m, id)).status).toBe(200);
      // A new minute, a new log line.
      expect(lines.filter((l) => l.includes("too many enrollment requests")).length).toBe(2);
    } finally {
      await rejectAllPending();
      await stop(svc);
    }
  });

  it("the sweep expires old pending requests (the peel asks again), deletes old rejected records and expired tokens, keeps approved and revoked", async () => {
    const { svc, lines } = await service();
    const now = Date.now();
    try {
      // Approved (by token) and revoked records: never swept.
      const t1 = await enrollAdmin(admin, "token", { ttl_s: 600, by: "test" });
      await enrollPeel({
        url: `https://127.0.0.1:${svc.port}`,
        peelId: "gc-ok",
        cacheDir: join(work, "gc-ok"),
        caFile: nats.caFile,
        token: t1.token as string,
      });
      const t2 = await enrollAdmin(admin, "token", { ttl_s: 600, by: "test" });
      await enrollPeel({
        url: `https://127.0.0.1:${svc.port}`,
        peelId: "gc-rev",
        cacheDir: join(work, "gc-rev"),
        caFile: nats.caFile,
        token: t2.token as string,
      });
      expect((await enrollAdmin(admin, "revoke", { id: "gc-rev", by: "test" })).ok).toBe(true);
      const okKey = (await show("gc-ok"))?.public_key;

      // A replacement nobody approved must leave the enrolled key as it is.
      const intruder = machine("gc-ok");
      expect((await ask(svc, intruder, { replace: true })).status).toBe(202);

      // An abandoned request (hand-made) and a waiting peel.
      const raw = machine("gc-raw");
      const rawReq = await ask(svc, raw);
      expect(rawReq.status).toBe(202);
      const peelLog: string[] = [];
      const waiting = enrollPeel({
        url: `https://127.0.0.1:${svc.port}`,
        peelId: "gc-wait",
        cacheDir: join(work, "gc-wait"),
        caFile: nats.caFile,
        pollMinMs: 100,
        pollMaxMs: 200,
        timeoutMs: 30_000,
        logger: { info: (m) => peelLog.push(m), warn: (m) => peelLog.push(m) },
      });
      waiting.catch(() => {});
      const firstWait = await waitFor("gc-wait pending", async () => {
        const r = await show("gc-wait");
        return r?.status === "pending" ? r : undefined;
      });

      // Rejected, and tokens: one expiring in an hour, one in 20 days.
      const rej = machine("gc-rej");
      const rejReq = await ask(svc, rej);
      await enrollAdmin(admin, "reject", { id: "gc-rej", by: "test" });
      await enrollAdmin(admin, "token", { ttl_s: 3600, by: "test" });
      await enrollAdmin(admin, "token", { ttl_s: 20 * 86400, by: "test" });
      // The used tokens are burned already: two left.
      expect((await keys("token.>")).length).toBe(2);

      // A week and a day later.
      const week = await svc.sweep(now + 8 * DAY);
      expect(week.expired).toBe(3); // gc-raw, gc-wait, and the replacement of gc-ok
      expect(week.removed).toBe(0);
      expect(week.tokens).toBe(1);
      expect(lines.some((l) => /sweep: 3 pending request\(s\) expired.*1 expired token/.test(l))).toBe(true);

      const rawAfter = await poll(svc, raw, rawReq.body.request_id as string);
      expect(rawAfter.status).toBe(200);
      expect(rawAfter.body.status).toBe("expired");
      expect(rawAfter.body.reason).toMatch(/not approved within 7 days: the machine must ask again/);
      expect(
        (await enrollAdmin(admin, "list", { status: "expired" })).records?.map((r) => r.peel_id),
      ).toContain("gc-raw");
      // An expired request cannot be approved by mistake.
      await expect(enrollAdmin(admin, "approve", { id: "gc-raw" })).rejects.toThrow(/expired, not pending/);

      const ok = await show("gc-ok");
      expect(ok?.status).toBe("approved");
      expect(ok?.public_key).toBe(okKey);
      expect(ok?.reason).toMatch(/expired unapproved/);

      // The waiting peel was told its request expired and asked again, as a new request.
      const second = await waitFor("gc-wait asks again", async () => {
        const r = await show("gc-wait");
        return r?.status === "pending" && r.request_id !== firstWait.request_id ? r : undefined;
      });
      expect(peelLog.some((l) => /expired.*asking again/.test(l))).toBe(true);
      expect((await enrollAdmin(admin, "approve", { id: second.request_id, by: "test" })).ok).toBe(true);
      expect((await waiting).requestId).toBe(second.request_id);

      // A month and a day later: the rejected record and its request index are gone.
      const month = await svc.sweep(now + 31 * DAY);
      expect(month.removed).toBeGreaterThanOrEqual(1);
      expect(await show("gc-rej")).toBeUndefined();
      expect((await poll(svc, rej, rejReq.body.request_id as string)).status).toBe(404);
      expect(await show("gc-raw")).toBeDefined(); // expired 23 days ago: kept for now
      expect((await keys("token.>")).length).toBe(0);

      await svc.sweep(now + 40 * DAY);
      expect(await show("gc-raw")).toBeUndefined();
      const gone = await poll(svc, raw, rawReq.body.request_id as string);
      expect(gone.status).toBe(404);
      expect(gone.body.error).toMatch(/ask again/);
      // A forgotten machine may ask again.
      expect((await ask(svc, raw)).status).toBe(202);
      await enrollAdmin(admin, "reject", { id: "gc-raw", by: "test" });

      await svc.sweep(now + 400 * DAY);
      expect((await show("gc-ok"))?.status).toBe("approved");
      expect((await show("gc-rev"))?.status).toBe("revoked");
      expect((await show("gc-wait"))?.status).toBe("approved");
    } finally {
      await stop(svc);
    }
  }, 60_000);

  it("two masters sweeping at once change each record once", async () => {
    const a = await service();
    const b = await service();
    try {
      for (const id of ["cc-1", "cc-2", "cc-3"]) expect((await ask(a.svc, machine(id))).status).toBe(202);
      await enrollAdmin(admin, "reject", { id: "cc-3", by: "test" });
      // Both views have caught up with the writes (one made them, the other watches).
      await waitFor("b sees the requests", () => b.svc.pendingRequests === 2);
      const now = Date.now();

      const week = await Promise.all([a.svc.sweep(now + 8 * DAY), b.svc.sweep(now + 8 * DAY)]);
      expect(week[0].expired + week[1].expired).toBe(2);
      for (const id of ["cc-1", "cc-2"]) expect((await show(id))?.status).toBe("expired");
      expect((await show("cc-3"))?.status).toBe("rejected");
      await waitFor("b sees the expiry", () => b.svc.pendingRequests === 0);

      const later = await Promise.all([a.svc.sweep(now + 40 * DAY), b.svc.sweep(now + 40 * DAY)]);
      expect(later[0].removed + later[1].removed).toBe(3);
      for (const id of ["cc-1", "cc-2", "cc-3"]) expect(await show(id)).toBeUndefined();
      expect([...a.lines, ...b.lines].some((l) => l.includes("failed"))).toBe(false);
    } finally {
      await stop(a.svc);
      await stop(b.svc);
    }
  });
});
