import { describe, expect, it } from "vitest";
import type { PeelView } from "../src/target/index.js";
import { compileTarget, parseTopTarget, peelIdsOnly } from "../src/target/index.js";

const FLEET: PeelView[] = [
  {
    id: "web-01",
    facts: {
      os: "Debian",
      os_family: "Debian",
      osrelease: "12.5",
      cpu_count: 4,
      mem_total: 8192,
      roles: ["web", "db"],
      virtual: null,
      ipv4: ["127.0.0.1", "10.1.2.3"],
      default_ipv4: "10.1.2.3",
      ipv6: ["::1", "fe80::1"],
      network: { hostname: "web1", interfaces: { eth0: { mtu: 1500 } } },
      ip4_interfaces: { eth0: ["10.1.2.3"], lo: ["127.0.0.1"] },
    },
    settings: { tier: "gold", app: { port: 8080 } },
  },
  {
    id: "web-02",
    facts: {
      os: "Ubuntu",
      os_family: "Debian",
      osrelease: "24.04",
      cpu_count: "16",
      mem_total: 2048,
      roles: ["web"],
      ipv4: ["192.168.1.5"],
      ipv6: ["2001:db8::5"],
      network: { hostname: "web2" },
    },
    settings: { tier: "silver" },
  },
  {
    id: "db-old",
    facts: {
      os: "Rocky",
      os_family: "RedHat",
      cpu_count: 2,
      roles: "db",
      ipv4: [],
      default_ipv4: "172.16.0.9",
    },
  },
  { id: "lb1", facts: {} },
];

function ids(expr: string, fleet = FLEET): string[] {
  const m = compileTarget(expr);
  return fleet.filter((p) => m.match(p)).map((p) => p.id);
}

describe("target matcher", () => {
  it("globs on the id, case-sensitively", () => {
    expect(ids("web*")).toEqual(["web-01", "web-02"]);
    expect(ids("web-0[1-3]")).toEqual(["web-01", "web-02"]);
    expect(ids("web-0[!1]")).toEqual(["web-02"]);
    expect(ids("lb?")).toEqual(["lb1"]);
    expect(ids("?")).toEqual([]);
    expect(ids("*")).toHaveLength(4);
    expect(ids("WEB*")).toEqual([]);
    expect(ids("web-01")).toEqual(["web-01"]);
  });

  it("matches E@ from the start of the id, like Salt", () => {
    expect(ids("E@web-0\\d")).toEqual(["web-01", "web-02"]);
    expect(ids("E@.*-old$")).toEqual(["db-old"]);
    expect(ids("E@old")).toEqual([]);
    expect(ids("E@(db|lb)")).toEqual(["db-old", "lb1"]);
  });

  it("matches L@ lists exactly", () => {
    expect(ids("L@lb1,web-02,nope")).toEqual(["web-02", "lb1"]);
    expect(ids("L@web")).toEqual([]);
  });

  it("matches facts by glob, case-insensitively, through colon and dot paths", () => {
    expect(ids("G@os:Debian")).toEqual(["web-01"]);
    expect(ids("G@os:debian")).toEqual(["web-01"]);
    expect(ids("G@os_family:Deb*")).toEqual(["web-01", "web-02"]);
    expect(ids("G@network:hostname:web1")).toEqual(["web-01"]);
    expect(ids("G@network.hostname:web?")).toEqual(["web-01", "web-02"]);
    expect(ids("G@network:interfaces:eth0:mtu:1500")).toEqual(["web-01"]);
    expect(ids("G@network.interfaces.eth0.mtu:1500")).toEqual(["web-01"]);
    expect(ids("G@osrelease:12.5")).toEqual(["web-01"]);
    expect(ids("G@osrelease:12.*")).toEqual(["web-01"]);
  });

  it("tries every colon split, so values may contain colons", () => {
    expect(ids("G@ipv6:fe80::1")).toEqual(["web-01"]);
    expect(ids("G@ipv6:2001:db8::*")).toEqual(["web-02"]);
    expect(ids("G@ip4_interfaces:eth0:10.1.2.3")).toEqual(["web-01"]);
  });

  it("matches list-valued facts by membership and objects by key", () => {
    expect(ids("G@roles:web")).toEqual(["web-01", "web-02"]);
    expect(ids("G@roles:db")).toEqual(["web-01", "db-old"]);
    expect(ids("G@roles:d*")).toEqual(["web-01", "db-old"]);
    expect(ids("G@roles:cache")).toEqual([]);
    expect(ids("G@ip4_interfaces:lo")).toEqual(["web-01"]);
    expect(ids("G@network:*")).toEqual(["web-01", "web-02"]);
  });

  it("indexes lists by number and matches booleans and numbers as text", () => {
    const fleet: PeelView[] = [
      {
        id: "a",
        facts: { disks: [{ model: "Samsung 980" }, { model: "WD" }], is_virtual: true, cpu_count: 4 },
      },
      { id: "b", facts: { disks: [{ model: "WD" }], is_virtual: false, cpu_count: 8 } },
    ];
    expect(ids("G@disks.0.model:samsung*", fleet)).toEqual(["a"]);
    expect(ids("G@disks:1:model:WD", fleet)).toEqual(["a"]);
    expect(ids("G@is_virtual:true", fleet)).toEqual(["a"]);
    expect(ids("G@is_virtual:FALSE", fleet)).toEqual(["b"]);
    expect(ids("G@cpu_count:4", fleet)).toEqual(["a"]);
    expect(ids("G@cpu_count:?", fleet)).toEqual(["a", "b"]);
  });

  it("never matches missing or null values", () => {
    expect(ids("G@virtual:*")).toEqual([]);
    expect(ids("G@virtual!=kvm")).toEqual([]);
    expect(ids("G@nope:x")).toEqual([]);
    expect(ids("not G@virtual:kvm")).toHaveLength(4);
  });

  it("compares numerically when both sides are numbers, else as strings", () => {
    expect(ids("G@cpu_count>=4")).toEqual(["web-01", "web-02"]);
    expect(ids("G@cpu_count>4")).toEqual(["web-02"]);
    expect(ids("G@cpu_count<4")).toEqual(["db-old"]);
    expect(ids("G@cpu_count<=4")).toEqual(["web-01", "db-old"]);
    expect(ids("G@cpu_count!=4")).toEqual(["web-02", "db-old"]);
    expect(ids("G@cpu_count!=4.0")).toEqual(["web-02", "db-old"]);
    // "16" > "4" only as a number; as strings "16" < "4".
    expect(ids("G@cpu_count>10")).toEqual(["web-02"]);
    expect(ids("G@os>Rocky")).toEqual(["web-02"]);
    expect(ids("G@os<=debian")).toEqual(["web-01"]);
    expect(ids("G@mem_total<4096")).toEqual(["web-02"]);
    expect(ids("G@osrelease>=13")).toEqual(["web-02"]);
  });

  it("applies comparisons to lists: any element, and != as no element equal", () => {
    expect(ids("G@roles!=db")).toEqual(["web-02"]);
    expect(ids("G@roles!=cache")).toEqual(["web-01", "web-02", "db-old"]);
    expect(ids("G@roles>v")).toEqual(["web-01", "web-02"]);
  });

  it("matches settings with I@", () => {
    expect(ids("I@tier:gold")).toEqual(["web-01"]);
    expect(ids("I@app:port>=8000")).toEqual(["web-01"]);
    expect(ids("I@tier:*")).toEqual(["web-01", "web-02"]);
    expect(ids("G@tier:gold")).toEqual([]);
  });

  it("matches S@ against ipv4, default_ipv4 and ipv6, including edges", () => {
    expect(ids("S@10.0.0.0/8")).toEqual(["web-01"]);
    expect(ids("S@10.1.2.3/32")).toEqual(["web-01"]);
    expect(ids("S@10.1.2.3")).toEqual(["web-01"]);
    expect(ids("S@10.1.2.4/32")).toEqual([]);
    expect(ids("S@10.1.2.0/31")).toEqual([]);
    expect(ids("S@10.1.2.2/31")).toEqual(["web-01"]);
    expect(ids("S@172.16.0.0/12")).toEqual(["db-old"]);
    expect(ids("S@0.0.0.0/0")).toEqual(["web-01", "web-02", "db-old"]);
    // Host bits in the network address are ignored.
    expect(ids("S@192.168.1.77/24")).toEqual(["web-02"]);
    expect(ids("S@2001:db8::/32")).toEqual(["web-02"]);
    expect(ids("S@fe80::/10")).toEqual(["web-01"]);
    expect(ids("S@::1/128")).toEqual(["web-01"]);
    expect(ids("S@::/0")).toEqual(["web-01", "web-02"]);
    expect(ids("S@2001:db8::5")).toEqual(["web-02"]);
    expect(ids("S@2001:db8::4/127")).toEqual(["web-02"]);
    expect(ids("S@2001:db8::6/127")).toEqual([]);
  });

  it("ignores zone ids and keeps IPv4-mapped addresses in IPv6", () => {
    const fleet: PeelView[] = [
      { id: "z", facts: { ipv6: ["fe80::1%eth0"] } },
      { id: "m", facts: { ipv6: ["::ffff:10.0.0.1"] } },
      { id: "bad", facts: { ipv4: ["10.0.0.300", "010.0.0.1", 42], default_ipv4: null } },
    ];
    expect(ids("S@fe80::/10", fleet)).toEqual(["z"]);
    expect(ids("S@::ffff:0:0/96", fleet)).toEqual(["m"]);
    expect(ids("S@10.0.0.0/8", fleet)).toEqual([]);
    expect(ids("S@0.0.0.0/0", fleet)).toEqual([]);
  });

  it("combines with and / or / not and parentheses", () => {
    expect(ids("G@os_family:Debian and ( web-02 or L@db-old,lb1 ) and not E@.*-old$")).toEqual(["web-02"]);
    expect(ids("web* and not G@os:Ubuntu or lb1")).toEqual(["web-01", "lb1"]);
    expect(ids("web* and not ( G@os:Ubuntu or lb1 )")).toEqual(["web-01"]);
    expect(ids("not web* and not lb1")).toEqual(["db-old"]);
    expect(ids("not ( web* and not lb1 )")).toEqual(["db-old", "lb1"]);
  });

  it("matches a peel without settings", () => {
    expect(compileTarget("I@tier:gold").match({ id: "x", facts: {} })).toBe(false);
    expect(compileTarget("not I@tier:gold").match({ id: "x", facts: {} })).toBe(true);
  });

  it("accepts a parsed top.zy target", () => {
    const m = compileTarget(parseTopTarget("os_family:RedHat or web-01"));
    expect(FLEET.filter((p) => m.match(p)).map((p) => p.id)).toEqual(["web-01", "db-old"]);
  });
});

describe("peelIdsOnly", () => {
  it("returns exact ids for literal ids and lists", () => {
    expect(peelIdsOnly("L@b,a or c")?.exact).toEqual(["a", "b", "c"]);
    expect(peelIdsOnly("L@a,b,c and L@b,c,d")?.exact).toEqual(["b", "c"]);
    expect(peelIdsOnly("L@web1,db1 and web*")?.exact).toEqual(["web1"]);
    expect(peelIdsOnly("web-01")?.exact).toEqual(["web-01"]);
  });

  it("returns a predicate without exact ids for wildcards, regexes and not", () => {
    const g = peelIdsOnly("web* and not E@.*-old$");
    expect(g?.exact).toBeUndefined();
    expect(g?.matchId("web-1")).toBe(true);
    expect(g?.matchId("web-1-old")).toBe(false);
    expect(peelIdsOnly("not L@a")?.exact).toBeUndefined();
  });

  it("declines anything that needs facts, settings or addresses", () => {
    expect(peelIdsOnly("web* and G@os:Debian")).toBeUndefined();
    expect(peelIdsOnly("I@a:b")).toBeUndefined();
    expect(peelIdsOnly("L@a or S@10.0.0.0/8")).toBeUndefined();
  });
});
