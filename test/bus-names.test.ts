import { describe, expect, it } from "vitest";
import { decode, encode, PROTOCOL_VERSION, ProtocolError } from "../src/bus/codec.js";
import {
  assertPeelId,
  BUCKET_NAMES,
  BUCKETS,
  isValidPeelId,
  kvDirectGetSubject,
  kvKeySubject,
  LEASE_TTL_MS,
  PEEL_HEARTBEAT_TTL_MS,
  peelInboxPrefix,
  STREAMS,
  subjects,
} from "../src/bus/names.js";

describe("peel ids", () => {
  it("accepts ids that are one subject token", () => {
    for (const id of ["web-01", "a", "A_b-9", "9x", "x".repeat(128)]) expect(isValidPeelId(id)).toBe(true);
  });
  it("rejects dots, wildcards, spaces, leading punctuation and overlong ids", () => {
    for (const id of ["", "web.01", "web*", "web>", "web 01", "-web", "_web", "x".repeat(129), "wéb"]) {
      expect(isValidPeelId(id)).toBe(false);
    }
    expect(() => assertPeelId("web.01")).toThrow(/invalid peel id "web.01".*no dots/);
  });
});

describe("subjects", () => {
  it("builds every subject from DESIGN.md §3", () => {
    expect(subjects.cmd("web-01")).toBe("zester.cmd.web-01");
    expect(subjects.dispatch).toBe("zester.dispatch");
    expect(subjects.jobAck("2ABC", "web-01")).toBe("zester.job.2ABC.ack.web-01");
    expect(subjects.jobReturn("2ABC", "web-01")).toBe("zester.job.2ABC.return.web-01");
    expect(subjects.jobCancel("2ABC", "web-01")).toBe("zester.job.2ABC.cancel.web-01");
    expect(subjects.event("web-01", "beacon.disk")).toBe("zester.event.web-01.beacon.disk");
    expect(subjects.eventsOf("web-01")).toBe("zester.event.web-01.>");
    expect(subjects.masterEvents).toBe("zester.event._master.>");
    expect(subjects.masterEvent("job.new")).toBe("zester.event._master.job.new");
    expect(subjects.adminSendEvents).toBe("zester.event._admin.send.>");
    expect(subjects.adminSendEvent("deploy")).toBe("zester.event._admin.send.deploy");
    expect(subjects.fact("web-01")).toBe("zester.fact.web-01");
    expect(subjects.basket("web-01.network")).toBe("zester.basket.web-01.network");
    expect(subjects.reactorTest).toBe("zester.reactor.test");
    expect(subjects.targetResolve).toBe("zester.target.resolve");
    expect(subjects.admin("enroll.approve")).toBe("zester.admin.enroll.approve");
    expect(subjects.adminAll).toBe("zester.admin.>");
    expect(peelInboxPrefix("web-01")).toBe("_INBOX_web-01");
  });
  it("refuses ids and tokens that would change a subject's shape", () => {
    expect(() => subjects.cmd("web.02")).toThrow(/invalid peel id/);
    expect(() => subjects.cmd("*")).toThrow(/invalid peel id/);
    expect(() => subjects.jobAck("a.b", "web-01")).toThrow(/invalid job id/);
    expect(() => subjects.event("web-01", "a..b")).toThrow(/invalid event tag/);
    expect(() => subjects.event("web-01", "a.>")).toThrow(/invalid event tag/);
    expect(() => kvKeySubject("facts", "")).toThrow(/invalid KV key/);
  });
  it("names KV subjects and the direct-get subject used for per-key permissions", () => {
    expect(kvKeySubject("facts", "web-01")).toBe("$KV.facts.web-01");
    expect(kvDirectGetSubject("secrets", "web-01")).toBe("$JS.API.DIRECT.GET.KV_secrets.$KV.secrets.web-01");
  });
});

describe("bucket and stream table", () => {
  it("has every bucket from the spec with the required limits", () => {
    expect(BUCKET_NAMES.sort()).toEqual(
      [
        "facts",
        "jobs",
        "job-returns",
        "basket",
        "settings-files",
        "secrets",
        "state-files",
        "reactor-files",
        "reactor-limits",
        "peel-heartbeat",
        "master-heartbeat",
        "leases",
        "enrollments",
        "peel-queue",
      ].sort(),
    );
    expect(BUCKETS.facts.options.history).toBeGreaterThanOrEqual(5);
    expect(BUCKETS["peel-heartbeat"].options.ttl).toBe(PEEL_HEARTBEAT_TTL_MS);
    expect(PEEL_HEARTBEAT_TTL_MS).toBe(30_000);
    expect(BUCKETS.leases.options.ttl).toBe(LEASE_TTL_MS);
    expect(BUCKETS["master-heartbeat"].options.ttl).toBeGreaterThan(0);
    for (const b of BUCKET_NAMES) expect(BUCKETS[b].options.history).toBeLessThanOrEqual(64);
  });
  it("has the events and job-events streams", () => {
    expect(STREAMS.events.subjects).toEqual(["zester.event.>"]);
    // Only cancels: storing every ack and return was two writes per peel per job nobody read.
    expect(STREAMS["job-events"].subjects).toEqual(["zester.job.*.cancel.*"]);
  });
});

describe("codec", () => {
  it("stamps v: 1 and round-trips", () => {
    const bytes = encode({ fn: "test.ping", args: [1], v: 7 });
    expect(JSON.parse(new TextDecoder().decode(bytes))).toEqual({
      fn: "test.ping",
      args: [1],
      v: PROTOCOL_VERSION,
    });
    expect(decode(bytes)).toEqual({ fn: "test.ping", args: [1], v: 1 });
  });
  it("accepts a minor revision of its own major version", () => {
    expect(decode('{"v":1.3,"x":1}')).toEqual({ v: 1.3, x: 1 });
  });
  it("refuses missing, malformed and newer versions with clear errors", () => {
    expect(() => decode('{"x":1}')).toThrow(ProtocolError);
    expect(() => decode('{"x":1}')).toThrow(/no protocol version field "v"/);
    expect(() => decode('{"v":2}')).toThrow(
      /protocol version 2, newer than this build supports \(1\); upgrade/,
    );
    expect(() => decode('{"v":"1"}')).toThrow(/invalid protocol version "1"/);
    expect(() => decode('{"v":0}')).toThrow(/invalid protocol version 0/);
    expect(() => decode("[1]")).toThrow(/JSON object/);
    expect(() => decode("nope")).toThrow(/not valid JSON/);
    expect(() => decode(new Uint8Array([0xff, 0xfe]))).toThrow(/UTF-8/);
  });
});
