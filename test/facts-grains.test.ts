import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { saltGrains } from "../src/facts/grains.js";
import { collectFacts } from "../src/facts/index.js";
import { compileTarget, TargetIndex } from "../src/target/index.js";

const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8" }).trim();

let facts: Record<string, unknown>;
let grains: Record<string, unknown>;
let emptyDir: string;

beforeAll(async () => {
  emptyDir = await mkdtemp(join(os.tmpdir(), "zester-grains-"));
  facts = await collectFacts({ id: "web-01", customDir: emptyDir });
  grains = saltGrains(facts);
});
afterAll(() => rm(emptyDir, { recursive: true, force: true }));

describe("Salt's core grains on this Debian machine", () => {
  const osRelease = readFileSync("/etc/os-release", "utf8");
  const field = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?`, "m").exec(osRelease)?.[1];

  it("os identity carries Salt's names and types", () => {
    const versionId = field("VERSION_ID")!;
    const major = Number.parseInt(versionId, 10);
    expect(grains.os).toBe("Debian");
    expect(grains.os_family).toBe("Debian");
    expect(grains.osfullname).toBe(field("NAME"));
    expect(grains.osrelease).toBe(versionId);
    expect(grains.osrelease_info).toEqual(versionId.split(".").map(Number));
    expect(grains.osmajorrelease).toBe(major);
    expect(grains.osfinger).toBe(`Debian-${major}`);
    expect(grains.oscodename).toBe(field("VERSION_CODENAME"));
    expect(grains.lsb_distrib_codename).toBe(field("VERSION_CODENAME"));
    expect(grains.osarch).toBe(run("dpkg", ["--print-architecture"]));
  });

  it("kernel, cpu and memory as Salt reports them", () => {
    expect(grains.kernel).toBe("Linux");
    expect(grains.kernelrelease).toBe(run("uname", ["-r"]));
    expect(grains.cpuarch).toBe(run("uname", ["-m"]));
    expect(grains.num_cpus).toBe(os.cpus().length);
    const kb = Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync("/proc/meminfo", "utf8"))![1]);
    expect(grains.mem_total).toBe(Math.floor(kb / 1024));
  });

  it("host names, addresses and the process environment", () => {
    expect(grains.id).toBe("web-01");
    expect(grains.nodename).toBe(run("uname", ["-n"]));
    expect(grains.localhost).toBe(os.hostname());
    expect(grains.host).toBe(String(grains.fqdn).split(".")[0]);
    expect(grains.ipv4).toContain("127.0.0.1");
    expect(Array.isArray(grains.ipv6)).toBe(true);
    expect((grains.ip_interfaces as Record<string, string[]>).lo).toContain("127.0.0.1");
    expect(grains.path).toBe((process.env.PATH ?? "").trim());
    expect(grains.shell).toBe(process.env.SHELL || "/bin/sh");
    expect(grains.username).toBe(os.userInfo().username);
    expect(grains.uid).toBe(os.userInfo().uid);
    expect(grains.groupname).toBe(run("id", ["-gn"]));
    expect(grains.machine_id).toBe(readFileSync("/etc/machine-id", "utf8").trim());
    expect(grains.saltversioninfo).toEqual([3006, 9]);
  });

  it("facts keep the spec's names; collector errors are not grains", () => {
    expect(facts.os).toBe("linux");
    expect(saltGrains({ ...facts, _errors: { x: "y" } })._errors).toBeUndefined();
  });
});

describe("grains derived from other distributions' facts", () => {
  const view = (f: Record<string, unknown>) => saltGrains({ kernel: "Linux", os: "linux", ...f });

  it("osfinger uses the full release on Ubuntu and the full name elsewhere", () => {
    const ubuntu = view({ distro: "ubuntu", osfullname: "Ubuntu", os_family: "Debian", osrelease: "22.04" });
    expect(ubuntu).toMatchObject({ os: "Ubuntu", osfinger: "Ubuntu-22.04", osrelease_info: [22, 4] });
    const rocky = view({
      distro: "rocky",
      osfullname: "Rocky Linux",
      os_family: "RedHat",
      osrelease: "9.3",
      cpuarch: "x86_64",
    });
    expect(rocky).toMatchObject({ os: "Rocky", osfinger: "Rocky Linux-9", osarch: "x86_64" });
  });

  it("an unknown distribution is named from its full name without 'Linux'", () => {
    expect(view({ distro: "zorin", osfullname: "Zorin OS Linux" }).os).toBe("Zorin OS");
    expect(view({ distro: "deb", osfullname: "Debian GNU/Linux" }).os).toBe("Debian GNU");
  });

  it("dpkg architecture names on Debian-family arm", () => {
    expect(view({ os_family: "Debian", cpuarch: "aarch64" }).osarch).toBe("arm64");
    expect(view({ os_family: "Debian", cpuarch: "armv7l" }).osarch).toBe("armhf");
  });
});

describe("G@ matches facts and grains", () => {
  const debian = {
    id: "deb-1",
    facts: {
      os: "linux",
      distro: "debian",
      os_family: "Debian",
      osfullname: "Debian GNU/Linux",
      osrelease: "12",
    },
  };
  const alpine = {
    id: "alp-1",
    facts: {
      os: "linux",
      distro: "alpine",
      os_family: "Alpine",
      osfullname: "Alpine Linux",
      osrelease: "3.19.1",
    },
  };

  it("either reading matches; != excludes a peel when either reading equals", () => {
    const ids = (expr: string) =>
      [debian, alpine].filter((p) => compileTarget(expr).match(p)).map((p) => p.id);
    expect(ids("G@os:Debian")).toEqual(["deb-1"]);
    expect(ids("G@os:linux")).toEqual(["deb-1", "alp-1"]);
    expect(ids("G@os!=Debian")).toEqual(["alp-1"]);
    expect(ids("G@osfinger:Debian-12")).toEqual(["deb-1"]);
    expect(ids("G@osmajorrelease>=12")).toEqual(["deb-1"]);
    expect(ids("G@osrelease_info:3")).toEqual(["alp-1"]);
  });

  it("the fleet index answers the same", () => {
    const idx = new TargetIndex();
    for (const p of [debian, alpine]) idx.upsert(p.id, p.facts);
    expect(idx.resolve("G@os:Debian")).toEqual(["deb-1"]);
    expect(idx.resolve("G@os:linux")).toEqual(["alp-1", "deb-1"]);
    expect(idx.resolve("G@os!=debian")).toEqual(["alp-1"]);
    expect(idx.resolve("G@osfinger:Alpine*")).toEqual(["alp-1"]);
  });
});
