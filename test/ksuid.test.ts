import { describe, expect, test } from "vitest";
import { formatKsuid, isKsuid, minKsuidAt, newKsuid, parseKsuid } from "../src/jobs/ksuid.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex").toUpperCase();
const fromHex = (h: string) => new Uint8Array(Buffer.from(h, "hex"));

describe("ksuid known vectors", () => {
  test("segmentio README example decodes and re-encodes", () => {
    const s = "0ujtsYcgvSTl8PAuAdqWYSMnLOv";
    const p = parseKsuid(s);
    // The README prints this in Go's local zone: 2017-10-09 21:00:47 -0700 PDT, i.e. 04:00:47 UTC.
    expect(p.timestamp.toISOString()).toBe("2017-10-10T04:00:47.000Z");
    expect(p.timestamp.getTime() / 1000 - 1_400_000_000).toBe(107608047);
    expect(hex(p.payload)).toBe("B5A1CD34B5F99D1154FB6853345C9735");
    expect(
      formatKsuid(new Date("2017-10-09T21:00:47-07:00"), fromHex("B5A1CD34B5F99D1154FB6853345C9735")),
    ).toBe(s);
  });

  test("max (all 0xff) and min (all zero)", () => {
    const max = parseKsuid("aWgEPTl1tmebfsQzFP4bxwgy80V");
    expect(hex(max.payload)).toBe("FF".repeat(16));
    expect(max.timestamp.getTime() / 1000).toBe(0xffffffff + 1_400_000_000);
    expect(formatKsuid(max.timestamp, max.payload)).toBe("aWgEPTl1tmebfsQzFP4bxwgy80V");

    const min = parseKsuid("000000000000000000000000000");
    expect(hex(min.payload)).toBe("00".repeat(16));
    expect(min.timestamp.toISOString()).toBe("2014-05-13T16:53:20.000Z");
    expect(formatKsuid(new Date(1_400_000_000_000), new Uint8Array(16))).toBe("000000000000000000000000000");
  });

  test("sub-second precision is dropped when encoding", () => {
    const a = formatKsuid(new Date("2020-01-01T00:00:00.999Z"), new Uint8Array(16));
    expect(parseKsuid(a).timestamp.toISOString()).toBe("2020-01-01T00:00:00.000Z");
  });
});

describe("newKsuid", () => {
  test("27 base62 chars, timestamp round-trips, random payload", () => {
    const d = new Date("2026-11-27T06:00:00Z");
    const a = newKsuid(d);
    const b = newKsuid(d);
    expect(a).toMatch(/^[0-9A-Za-z]{27}$/);
    expect(a).not.toBe(b);
    expect(parseKsuid(a).timestamp.getTime()).toBe(d.getTime());
    expect(isKsuid(a)).toBe(true);
  });

  test("default is now", () => {
    const before = Math.floor(Date.now() / 1000) * 1000;
    const t = parseKsuid(newKsuid()).timestamp.getTime();
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(Date.now());
  });

  test("string order is time order, including across base62 digit/letter boundaries", () => {
    const times = [0, 1, 61, 62, 3600, 86_400 * 365, 2 ** 31, 2 ** 32 - 1].map(
      (s) => new Date((1_400_000_000 + s) * 1000),
    );
    const ids = times.map((t) => newKsuid(t));
    const shuffled = [...ids].reverse();
    expect(shuffled.sort()).toEqual(ids);
    // Even the largest payload of an earlier second sorts before the smallest of the next.
    const hi = formatKsuid(times[3]!, fromHex("FF".repeat(16)));
    const lo = minKsuidAt(new Date(times[3]!.getTime() + 1000));
    expect(hi < lo).toBe(true);
  });

  test("rejects timestamps outside the KSUID range", () => {
    expect(() => newKsuid(new Date("2014-01-01T00:00:00Z"))).toThrow(/outside the KSUID range/);
    expect(() => formatKsuid(new Date(), new Uint8Array(15))).toThrow(/16 bytes/);
  });
});

describe("validation", () => {
  test("isKsuid", () => {
    expect(isKsuid("0ujtsYcgvSTl8PAuAdqWYSMnLOv")).toBe(true);
    expect(isKsuid("aWgEPTl1tmebfsQzFP4bxwgy80V")).toBe(true);
    expect(isKsuid("aWgEPTl1tmebfsQzFP4bxwgy80W")).toBe(false); // max + 1
    expect(isKsuid("zzzzzzzzzzzzzzzzzzzzzzzzzzz")).toBe(false);
    expect(isKsuid("0ujtsYcgvSTl8PAuAdqWYSMnLO")).toBe(false);
    expect(isKsuid("0ujtsYcgvSTl8PAuAdqWYSMnLO-")).toBe(false);
    expect(isKsuid(42)).toBe(false);
  });

  test("parseKsuid errors say why", () => {
    expect(() => parseKsuid("short")).toThrow(/27 base62 characters/);
    expect(() => parseKsuid("zzzzzzzzzzzzzzzzzzzzzzzzzzz")).toThrow(/exceeds 160 bits/);
  });
});
