/**
 * The event model and the event bus on a real server: subjects for the three origins, spoof
 * refusal, peels publishing only under their own id, and replay from the `events` stream.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { encode } from "../src/bus/codec.js";
import {
  EventError,
  EventRejected,
  emitMasterEvent,
  eventSubject,
  makeEvent,
  matchKey,
  parseEventSubject,
  parseSince,
  publishEvent,
  validateEvent,
  type WatchedEvent,
  watchEvents,
} from "../src/events/index.js";
import { PresenceAnnouncer } from "../src/events/presence.js";
import { newKsuid } from "../src/jobs/ksuid.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

describe("event subjects and validation", () => {
  it("maps each origin's tag to its subject and back", () => {
    const cases: [string, string, string][] = [
      ["web-01", "myco/deploy/finished", "zester.event.web-01.myco.deploy.finished"],
      ["_admin", "myco/deploy/finished", "zester.event._admin.send.myco.deploy.finished"],
      ["_master", "job/2Abc/done", "zester.event._master.job.2Abc.done"],
      ["web-01", "beacon/web-01/service", "zester.event.web-01.beacon.service"],
    ];
    for (const [origin, tag, subject] of cases) {
      expect(eventSubject(origin, tag)).toBe(subject);
      expect(parseEventSubject(subject)).toEqual({ origin, tag });
    }
    expect(matchKey({ origin: "web-01", tag: "myco/deploy/finished" })).toBe("web-01/myco/deploy/finished");
    expect(parseEventSubject("zester.event._admin.other.x")).toBeUndefined();
    expect(parseEventSubject("zester.cmd.web-01")).toBeUndefined();
  });

  it("refuses bad tags, origins and data with a clear message", () => {
    expect(() => makeEvent({ origin: "web-01", tag: "" })).toThrow(/tag is required/);
    expect(() => makeEvent({ origin: "web-01", tag: "a//b" })).toThrow(/none empty/);
    expect(() => makeEvent({ origin: "web-01", tag: "a.b" })).toThrow(/dots/);
    expect(() => makeEvent({ origin: "web-01", tag: "a/*" })).toThrow(EventError);
    expect(() => makeEvent({ origin: "web.01", tag: "a" })).toThrow(/invalid event origin/);
    expect(() => makeEvent({ origin: "web-01", tag: "beacon/web-02/disk" })).toThrow(
      /beacon\/web-01\/<name>/,
    );
    expect(() => makeEvent({ origin: "web-01", tag: "a", data: [1] as unknown as object })).toThrow(
      /mapping/,
    );
    expect(() => makeEvent({ origin: "web-01", tag: "a", depth: -1 })).toThrow(/depth/);
  });

  it("drops a payload whose tag or origin disagrees with its subject as spoofed", () => {
    const ev = makeEvent({ origin: "web-01", tag: "myco/deploy/finished", data: { version: "1.2" } });
    const subject = eventSubject("web-01", ev.tag);
    expect(validateEvent(subject, { ...ev })).toEqual(ev);
    const spoofs = [
      { ...ev, origin: "web-02" },
      { ...ev, origin: "_master" },
      { ...ev, tag: "myco/other" },
    ];
    for (const p of spoofs) {
      let err: unknown;
      try {
        validateEvent(subject, p);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(EventRejected);
      expect((err as EventRejected).spoof).toBe(true);
      expect((err as Error).message).toMatch(/spoofed/);
    }
    expect(() => validateEvent(subject, { ...ev, id: "nope" })).toThrow(/KSUID/);
    expect(() => validateEvent(subject, { ...ev, data: "x" })).toThrow(/mapping/);
  });

  it("parses --since values", () => {
    expect(parseSince("0")).toEqual({ kind: "all" });
    expect(parseSince("42")).toEqual({ kind: "seq", seq: 42 });
    expect(parseSince("10m", 1_000_000)).toEqual({ kind: "time", time: new Date(1_000_000 - 600_000) });
    expect(parseSince("2026-01-31T12:00:00Z")).toEqual({
      kind: "time",
      time: new Date("2026-01-31T12:00:00Z"),
    });
    expect(() => parseSince("yesterday")).toThrow(/--since "yesterday"/);
  });
});

describe("events on a real server", () => {
  let nats: StartedNats;
  let master: NatsConnection;
  let admin: NatsConnection;
  let peel: NatsConnection;
  const violations: string[] = [];

  beforeAll(async () => {
    nats = await startNats();
    master = await nats.connectAs("master");
    await bootstrap(master);
    admin = await nats.connectAs("admin");
    peel = await nats.connectAs("web-01");
    (async () => {
      for await (const s of peel.status()) {
        if (s.type === "error" && s.error.name === "PermissionViolationError") {
          violations.push((s.error as unknown as { subject: string }).subject);
        }
      }
    })().catch(() => {});
  }, 30_000);

  afterAll(async () => {
    for (const nc of [peel, admin, master]) await nc?.close().catch(() => {});
    await nats?.stop();
  });

  /** Every accepted event (and every rejected subject) from the stream's start, until `until` holds. */
  async function replay(until: (seen: WatchedEvent[]) => boolean, glob?: string) {
    const seen: WatchedEvent[] = [];
    const rejected: string[] = [];
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 10_000);
    await watchEvents(admin, {
      since: { kind: "all" },
      signal: ac.signal,
      ...(glob !== undefined ? { glob } : {}),
      onEvent: (w) => {
        seen.push(w);
        return !until(seen);
      },
      onRejected: (subject, err) => rejected.push(`${subject}: ${err.message}`),
    });
    clearTimeout(timer);
    return { seen, rejected };
  }

  it("stores and replays events of all three origins", async () => {
    const a = await publishEvent(admin, { origin: "_admin", tag: "myco/deploy/start", data: { who: "ops" } });
    const p = await publishEvent(peel, {
      origin: "web-01",
      tag: "myco/deploy/finished",
      data: { v: "1.2.3" },
    });
    emitMasterEvent(master, "job/X/done", { status: "complete" });
    expect(a.seq).toBeGreaterThan(0);
    expect(p.seq).toBe(a.seq + 1);
    const { seen } = await replay((s) => s.length >= 3);
    expect(seen.map((w) => matchKey(w.event))).toEqual([
      "_admin/myco/deploy/start",
      "web-01/myco/deploy/finished",
      "_master/job/X/done",
    ]);
    expect(seen[1]!.event.data).toEqual({ v: "1.2.3" });
    expect(seen[1]!.seq).toBe(p.seq);
  });

  it("stores a retried send once (the event id is the stream's dedup id)", async () => {
    const id = newKsuid();
    const first = await publishEvent(admin, { origin: "_admin", tag: "retry/once", id });
    const again = await publishEvent(admin, { origin: "_admin", tag: "retry/once", id });
    expect(again.duplicate).toBe(true);
    expect(again.seq).toBe(first.seq);
  });

  it("filters by match-key glob where * crosses /", async () => {
    await publishEvent(peel, { origin: "web-01", tag: "glob/a/b/c" });
    const { seen } = await replay((s) => s.length >= 1, "web-*/glob/*/c");
    expect(matchKey(seen[0]!.event)).toBe("web-01/glob/a/b/c");
  });

  it("refuses a peel publishing as another peel, as the master or as the operator", async () => {
    const forged = makeEvent({ origin: "web-02", tag: "myco/deploy/finished" });
    for (const subject of [
      eventSubject("web-02", "myco/deploy/finished"),
      eventSubject("_master", "job/Y/done"),
      eventSubject("_admin", "myco/deploy/finished"),
    ]) {
      peel.publish(subject, encode(forged));
    }
    await peel.flush();
    await waitFor("three permission violations", () => violations.length >= 3);
    expect(violations).toEqual([
      "zester.event.web-02.myco.deploy.finished",
      "zester.event._master.job.Y.done",
      "zester.event._admin.send.myco.deploy.finished",
    ]);
  });

  it("stores but never delivers a payload whose claim disagrees with its subject", async () => {
    const forged = makeEvent({ origin: "web-02", tag: "myco/deploy/finished" });
    peel.publish(eventSubject("web-01", "spoof/attempt"), encode(forged));
    await peel.flush();
    const marker = await publishEvent(peel, { origin: "web-01", tag: "spoof/marker" });
    const { seen, rejected } = await replay((s) => s.some((w) => w.event.id === marker.event.id));
    expect(seen.some((w) => w.event.id === forged.id)).toBe(false);
    expect(rejected.join("\n")).toMatch(/zester\.event\.web-01\.spoof\.attempt: .*spoofed/);
  });

  it("drops a peel's own KV value relayed onto a master subject by a direct get's reply-to", async () => {
    const forged = makeEvent({ origin: "_master", tag: "enroll/evil/pending", data: { peel: "evil" } });
    const facts = await openKv(peel, "facts");
    await facts.put("web-01", encode(forged));
    peel.publish("$JS.API.DIRECT.GET.KV_facts.$KV.facts.web-01", new Uint8Array(), {
      reply: eventSubject("_master", forged.tag),
    });
    await peel.flush();
    const marker = await publishEvent(admin, { origin: "_admin", tag: "relay/marker" });
    const { seen, rejected } = await replay((s) => s.some((w) => w.event.id === marker.event.id));
    expect(seen.some((w) => w.event.id === forged.id)).toBe(false);
    expect(rejected.join("\n")).toMatch(/zester\.event\._master\.enroll\.evil\.pending: .*JetStream answer/);
  });

  it("watches live events without the stream", async () => {
    const got: WatchedEvent[] = [];
    const watching = watchEvents(admin, {
      glob: "_admin/live/*",
      onEvent: (w) => {
        got.push(w);
        return false;
      },
    });
    await admin.flush();
    await publishEvent(peel, { origin: "web-01", tag: "live/not-me" });
    await publishEvent(admin, { origin: "_admin", tag: "live/me" });
    await watching;
    expect(got.map((w) => matchKey(w.event))).toEqual(["_admin/live/me"]);
    expect(got[0]!.seq).toBeUndefined();
  });

  it("announces a peel online and offline once, however many masters announce it", async () => {
    const a = new PresenceAnnouncer(master, "m-a", 300);
    const b = new PresenceAnnouncer(master, "m-b", 300);
    a.start([]);
    b.start([]);
    const at = Date.now();
    a.beat("web-09", at, 41);
    b.beat("web-09", at, 41);
    a.beat("web-09", at + 10, 42);
    b.beat("web-09", at + 10, 42);
    const { seen } = await replay(
      (s) => s.filter((w) => w.event.tag.startsWith("peel/web-09/")).length >= 2,
      "_master/peel/web-09/*",
    );
    a.stop();
    b.stop();
    expect(seen.map((w) => w.event.tag)).toEqual(["peel/web-09/online", "peel/web-09/offline"]);
    const marker = emitMasterEvent(master, "presence/marker", {})!;
    const all = await replay((s) => s.some((w) => w.event.id === marker.id));
    expect(all.seen.filter((w) => w.event.tag.startsWith("peel/web-09/"))).toHaveLength(2);
  }, 20_000);
});
