import { describe, expect, it } from "vitest";
import { compileTarget, type PeelView, TargetIndex } from "../src/target/index.js";

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("TargetIndex", () => {
  it("resolves to sorted ids", () => {
    const idx = new TargetIndex();
    for (const id of ["web-10", "db-1", "web-02", "Web-3", "web-1"]) idx.upsert(id, { id });
    expect(idx.resolve("*")).toEqual(["Web-3", "db-1", "web-02", "web-1", "web-10"]);
    expect(idx.resolve("web*")).toEqual(["web-02", "web-1", "web-10"]);
    expect(idx.resolve("E@web-1")).toEqual(["web-1", "web-10"]);
    expect(idx.resolve("L@web-10,nope,db-1")).toEqual(["db-1", "web-10"]);
    expect(idx.size).toBe(5);
  });

  it("follows fact and settings updates after a path has been indexed", () => {
    const idx = new TargetIndex();
    idx.upsert("a", { os: "Debian", roles: ["web"], ip: "1" }, { tier: "gold" });
    idx.upsert("b", { os: "Ubuntu", roles: ["db"] });
    expect(idx.resolve("G@os:Debian")).toEqual(["a"]);
    expect(idx.resolve("G@roles:web")).toEqual(["a"]);
    expect(idx.resolve("I@tier:gold")).toEqual(["a"]);

    idx.upsert("b", { os: "Debian", roles: ["web", "db"] }, { tier: "gold" });
    expect(idx.resolve("G@os:Debian")).toEqual(["a", "b"]);
    expect(idx.resolve("G@roles:web")).toEqual(["a", "b"]);
    expect(idx.resolve("I@tier:gold")).toEqual(["a", "b"]);

    // Facts without settings keep the settings the peel had.
    idx.upsert("a", { os: "Rocky", roles: [] });
    expect(idx.resolve("G@os:Debian")).toEqual(["b"]);
    expect(idx.resolve("G@roles:web")).toEqual(["b"]);
    expect(idx.resolve("I@tier:gold")).toEqual(["a", "b"]);
    expect(idx.resolve("G@roles!=db")).toEqual(["a"]);
  });

  it("forgets removed peels and reuses their slots", () => {
    const idx = new TargetIndex();
    idx.upsert("a", { os: "Debian", ipv4: ["10.0.0.1"] });
    idx.upsert("b", { os: "Debian", ipv4: ["10.0.0.2"] });
    expect(idx.resolve("G@os:Debian and S@10.0.0.0/24")).toEqual(["a", "b"]);
    expect(idx.remove("a")).toBe(true);
    expect(idx.remove("a")).toBe(false);
    expect(idx.has("a")).toBe(false);
    expect(idx.resolve("G@os:Debian")).toEqual(["b"]);
    expect(idx.resolve("S@10.0.0.1")).toEqual([]);
    expect(idx.resolve("*")).toEqual(["b"]);
    expect(idx.resolve("not b")).toEqual([]);
    idx.upsert("c", { os: "Ubuntu", ipv4: ["10.0.0.1"] });
    expect(idx.resolve("S@10.0.0.1")).toEqual(["c"]);
    expect(idx.resolve("G@os:Debian")).toEqual(["b"]);
    expect(idx.resolve("not G@os:Debian")).toEqual(["c"]);
    expect(idx.get("c")?.facts).toEqual({ os: "Ubuntu", ipv4: ["10.0.0.1"] });
  });

  it("throws the parser's error for a bad expression", () => {
    const idx = new TargetIndex();
    expect(() => idx.resolve("web* and )")).toThrow('target: unexpected ")" at column 10');
  });

  it("agrees with the matcher on odd values", () => {
    const fleet: PeelView[] = [
      { id: "z", facts: { ipv6: ["fe80::1%eth0", "::ffff:10.0.0.1"], virtual: null, tags: [] } },
      {
        id: "bad",
        facts: { ipv4: ["10.0.0.300", "010.0.0.1", 42], default_ipv4: null, tags: [null, { a: 1 }] },
      },
      {
        id: "ok",
        facts: { ipv4: "10.0.0.1", default_ipv4: "10.0.0.1", tags: ["x", 1, true], meta: { A: 1 } },
      },
      { id: "n", facts: { disks: [{ model: "WD" }], meta: {} }, settings: { x: [] } },
    ];
    const idx = new TargetIndex();
    for (const p of fleet) idx.upsert(p.id, p.facts, p.settings);
    const exprs = [
      "S@fe80::/10",
      "S@::ffff:0:0/96",
      "S@10.0.0.0/8",
      "S@0.0.0.0/0",
      "S@::/0",
      "G@virtual:*",
      "G@virtual!=x",
      "G@tags!=x",
      "G@tags:*",
      "G@tags:1",
      "G@tags:TRUE",
      "G@tags>0",
      "G@meta:a",
      "G@meta:*",
      "G@meta!=a",
      "G@disks.0.model:wd",
      "G@disks:0:model:w?",
      "I@x:*",
      "I@x!=1",
      "not I@x!=1",
    ];
    for (const e of exprs) {
      const m = compileTarget(e);
      expect(idx.resolve(e), e).toEqual(
        fleet
          .filter((p) => m.match(p))
          .map((p) => p.id)
          .sort(),
      );
    }
    expect(idx.resolve("G@tags!=x")).toEqual(["bad", "z"]);
    expect(idx.resolve("G@meta:a")).toEqual(["ok"]);
  });

  it("agrees with a brute-force scan on randomised fleets and expressions", () => {
    const rnd = lcg(7);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const OSES = ["Debian", "Ubuntu", "Rocky", "debian", "Alpine"];
    const ROLES = ["web", "db", "cache", "lb", "Web"];

    const makePeel = (id: string): PeelView => {
      const facts: Record<string, unknown> = { id };
      if (rnd() < 0.9) facts.os = pick(OSES);
      if (rnd() < 0.8) facts.roles = Array.from({ length: Math.floor(rnd() * 3) }, () => pick(ROLES));
      else if (rnd() < 0.5) facts.roles = pick(ROLES);
      facts.cpu_count = pick([1, 2, 4, 8, "16", "4.0", null, "many"]);
      if (rnd() < 0.7)
        facts.ipv4 = [`10.${Math.floor(rnd() * 3)}.${Math.floor(rnd() * 4)}.${Math.floor(rnd() * 256)}`];
      if (rnd() < 0.3) facts.default_ipv4 = `192.168.${Math.floor(rnd() * 2)}.${Math.floor(rnd() * 256)}`;
      if (rnd() < 0.3)
        facts.ipv6 = [`2001:db8:${Math.floor(rnd() * 3).toString(16)}::${Math.floor(rnd() * 99)}`];
      if (rnd() < 0.6) facts.net = { host: pick(["h1", "h2", "h3"]), mtu: pick([1500, 9000]) };
      if (rnd() < 0.2) facts.net = pick([null, "flat", ["h1"]]);
      const settings =
        rnd() < 0.7 ? { tier: pick(["gold", "silver"]), app: { port: pick([80, 8080, 443]) } } : undefined;
      return settings ? { id, facts, settings } : { id, facts };
    };

    const idPool = Array.from(
      { length: 400 },
      (_, i) => `${pick(["web", "db", "cache"])}-${i}${rnd() < 0.1 ? "-old" : ""}`,
    );
    const LEAVES = [
      () => pick(["web*", "db-1*", "*-old", "cache-[1-3]?", "*", "web-?", "db-[!1]*", pick(idPool)]),
      () => `E@${pick(["web", "db-\\d+$", ".*-old$", "(web|cache)-1", "cache-2.?"])}`,
      () => `L@${Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => pick(idPool)).join(",")}`,
      () => `G@os:${pick(["Debian", "debian", "deb*", "*u*", "Rocky", "nope"])}`,
      () => `G@roles:${pick(["web", "db", "c*", "*"])}`,
      () => `G@cpu_count${pick([">=", "<=", ">", "<", "!=", ":"])}${pick(["4", "16", "2", "many", "4.0"])}`,
      () => `G@roles${pick(["!=", ">", "<"])}${pick(["web", "db", "m"])}`,
      () => `G@${pick(["net:host", "net.host", "net"])}:${pick(["h1", "h*", "host", "flat"])}`,
      () => `G@net.mtu${pick([">", "<=", "!="])}1500`,
      () => `I@${pick(["tier:gold", "tier:s*", "app:port>=443", "app.port!=80", "tier:*"])}`,
      () =>
        `S@${pick(["10.0.0.0/8", "10.1.0.0/16", "10.2.3.0/24", "0.0.0.0/0", "192.168.1.0/24", "2001:db8::/32", "2001:db8:1::/48", "::/0", "10.0.1.7"])}`,
    ];
    const expr = (depth: number): string => {
      const r = rnd();
      if (depth <= 0 || r < 0.35) return pick(LEAVES)();
      if (r < 0.5) return `not ${expr(depth - 1)}`;
      const op = rnd() < 0.5 ? "and" : "or";
      const n = 2 + Math.floor(rnd() * 2);
      return `( ${Array.from({ length: n }, () => expr(depth - 1)).join(` ${op} `)} )`;
    };

    const idx = new TargetIndex();
    const live = new Map<string, PeelView>();
    let checked = 0;
    let nonEmpty = 0;
    for (let round = 0; round < 6; round++) {
      // Mutate between rounds: new peels, changed facts and settings, removals.
      for (let i = 0; i < 120; i++) {
        const id = pick(idPool);
        if (live.has(id) && rnd() < 0.2) {
          idx.remove(id);
          live.delete(id);
        } else {
          const p = makePeel(id);
          idx.upsert(id, p.facts, p.settings);
          live.set(id, { ...p, settings: p.settings ?? live.get(id)?.settings });
        }
      }
      for (let c = 0; c < 60; c++) {
        const e = expr(3);
        const m = compileTarget(e);
        const want = [...live.values()]
          .filter((p) => m.match(p))
          .map((p) => p.id)
          .sort();
        expect(idx.resolve(e), e).toEqual(want);
        checked++;
        if (want.length > 0 && want.length < live.size) nonEmpty++;
      }
    }
    expect(checked).toBe(360);
    // The comparison means little if almost every answer were empty or everything.
    expect(nonEmpty).toBeGreaterThan(150);
  });
});
