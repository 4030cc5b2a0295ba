import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { collectFacts, customFactsDir, runCollectors } from "../src/facts/index.js";

/** Runs a real tool for an independent opinion; undefined when it is not installed. */
function tool(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: "utf8" });
  } catch {
    return undefined;
  }
}

let facts: Record<string, unknown>;
let emptyDir: string;

beforeAll(async () => {
  emptyDir = await mkdtemp(join(os.tmpdir(), "zester-facts-"));
  facts = await collectFacts({ customDir: emptyDir });
});
afterAll(() => rm(emptyDir, { recursive: true, force: true }));

describe("collectFacts on this machine", () => {
  test("no collector failed", () => {
    expect(facts._errors).toBeUndefined();
  });

  test("id defaults to the hostname and can be set", async () => {
    expect(facts.id).toBe(os.hostname());
    const f = await collectFacts({ id: "web-01", customDir: emptyDir });
    expect(f.id).toBe("web-01");
    expect(f.hostname).toBe(os.hostname());
  });

  test("os identity (this is Debian)", () => {
    const osRelease = readFileSync("/etc/os-release", "utf8");
    expect(facts.os).toBe("linux");
    expect(facts.kernel).toBe("Linux");
    expect(facts.kernelrelease).toBe(tool("uname", ["-r"])?.trim());
    expect(facts.os_family).toBe("Debian");
    expect(facts.distro).toBe("debian");
    expect(facts.pkg_manager).toBe("apt");
    const versionId = /^VERSION_ID="?([^"\n]*)"?/m.exec(osRelease)?.[1];
    expect(facts.osrelease).toBe(versionId);
    expect(facts.osmajorrelease).toBe(Number.parseInt(versionId!, 10));
    expect(String(facts.osfullname)).toMatch(/Debian/);
    const codename = /^VERSION_CODENAME=(\S+)/m.exec(osRelease)?.[1];
    expect(facts.oscodename).toBe(codename);
    expect(["systemd", "sysvinit", "openrc", "runit", "s6", "upstart", "unknown"]).toContain(facts.init);
  });

  test("arch is Go-style, cpuarch is uname -m", () => {
    const machine = tool("uname", ["-m"])!.trim();
    expect(facts.cpuarch).toBe(machine);
    const expected = { x86_64: "amd64", aarch64: "arm64" }[machine];
    if (expected) expect(facts.arch).toBe(expected);
  });

  test("cpu", () => {
    expect(facts.cpu_count).toBe(os.cpus().length);
    const nproc = tool("nproc", ["--all"]);
    if (nproc) expect(facts.cpu_count).toBe(Number(nproc.trim()));
    expect(facts.num_cpus).toBe(facts.cpu_count);
    const cpu = facts.cpu as { count: number; model: string; flags: string[] };
    expect(cpu.count).toBe(facts.cpu_count);
    expect(cpu.model).toBe(facts.cpu_model);
    expect(cpu.model.length).toBeGreaterThan(0);
    if (facts.cpuarch === "x86_64") expect(cpu.flags).toContain("sse2");
  });

  test("memory: mem_total in MiB matches free -m", () => {
    const memory = facts.memory as {
      total: number;
      available: number;
      swap_total: number;
      swap_free: number;
    };
    expect(facts.mem_total).toBe(Math.floor(memory.total / 1024 / 1024));
    const free = tool("free", ["-b"]);
    if (free) {
      const totalBytes = Number(/^Mem:\s+(\d+)/m.exec(free)![1]);
      expect(memory.total).toBe(totalBytes);
    }
    expect(memory.available).toBeGreaterThan(0);
    expect(memory.available).toBeLessThanOrEqual(memory.total);
    expect(memory.swap_free).toBeLessThanOrEqual(memory.swap_total);
  });

  test("disk: / is listed with the sizes df reports, pseudo filesystems are not", () => {
    const mounts = (facts.disk as { mounts: Array<Record<string, unknown>> }).mounts;
    const root = mounts.find((m) => m.mountpoint === "/");
    expect(root).toBeDefined();
    const df = tool("df", ["-B1", "--output=size", "/"]);
    if (df) expect(root!.total).toBe(Number(df.trim().split("\n")[1]!.trim()));
    expect(root!.used as number).toBeGreaterThan(0);
    expect(mounts.map((m) => m.fstype)).not.toContain("proc");
    expect(mounts.map((m) => m.fstype)).not.toContain("sysfs");
    expect(mounts.map((m) => m.mountpoint)).not.toContain("/proc");
    expect(Array.isArray(facts.disks)).toBe(true);
  });

  test("network: addresses match ip(8), hostname/fqdn/domain are consistent", () => {
    const ipv4 = facts.ipv4 as string[];
    expect(ipv4).toContain("127.0.0.1");
    const ipOut = tool("ip", ["-o", "-4", "addr", "show"]);
    if (ipOut) {
      for (const m of ipOut.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)) expect(ipv4).toContain(m[1]);
    }
    expect(facts.hostname).toBe(os.hostname());
    const fqdn = String(facts.fqdn);
    expect(fqdn.split(".")[0]).toBe(String(facts.hostname).split(".")[0]);
    expect(facts.domain).toBe(fqdn.includes(".") ? fqdn.slice(fqdn.indexOf(".") + 1) : "");
    const ifaces = (facts.network as { interfaces: Record<string, { mac: string; ipv4: string[] }> })
      .interfaces;
    expect(Object.keys(ifaces)).toContain("lo");
    expect(Object.values(ifaces).flatMap((i) => i.ipv4)).toEqual(ipv4);
    for (const i of Object.values(ifaces)) expect(i.mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  });

  test("default_ipv4 is on the default route's interface", (ctx) => {
    const route = readFileSync("/proc/net/route", "utf8");
    if (!/^\S+\s+00000000\s/m.test(route)) {
      console.log("skipping default_ipv4 checks: this machine has no IPv4 default route");
      ctx.skip();
    }
    expect(facts.ipv4).toContain(facts.default_ipv4);
    const ipRoute = tool("ip", ["-4", "route", "show", "default"]);
    if (ipRoute) {
      const m = /via (\S+) dev (\S+)/.exec(ipRoute);
      if (m) {
        expect(facts.default_gateway).toBe(m[1]);
        expect(facts.default_interface).toBe(m[2]);
      }
    }
  });

  test("the spec's template expressions work on the result", async () => {
    const { TemplateRenderer } = await import("../src/template/render.js");
    const out = await new TemplateRenderer().render(
      '{% set workers = facts.cpu_count * 2 %}{{ workers }} {{ facts.os == "linux" }} {{ facts.arch }} {{ facts.os_family }}',
      { facts },
      "spec.zy",
    );
    expect(out).toBe(`${os.cpus().length * 2} True ${facts.arch} Debian`);
  });

  test("facts survive a JSON round-trip unchanged (they are published to KV as JSON)", () => {
    expect(JSON.parse(JSON.stringify(facts))).toEqual(facts);
  });

  test("customFactsDir: option, then ZESTER_FACTS_DIR, then /etc/zester/facts", () => {
    const saved = process.env.ZESTER_FACTS_DIR;
    try {
      delete process.env.ZESTER_FACTS_DIR;
      expect(customFactsDir()).toBe("/etc/zester/facts");
      process.env.ZESTER_FACTS_DIR = "/srv/facts";
      expect(customFactsDir()).toBe("/srv/facts");
      expect(customFactsDir({ customDir: "/x" })).toBe("/x");
    } finally {
      if (saved === undefined) delete process.env.ZESTER_FACTS_DIR;
      else process.env.ZESTER_FACTS_DIR = saved;
    }
  });

  test("a throwing collector is recorded by name and the others still contribute", async () => {
    const r = await runCollectors([
      ["first", async () => ({ a: 1, shared: "first" })],
      [
        "broken",
        async () => {
          throw new Error("EACCES: permission denied, open '/proc/x'");
        },
      ],
      ["last", async () => ({ b: 2, shared: "last" })],
    ]);
    expect(r.facts).toEqual({ a: 1, b: 2, shared: "first" });
    expect(r.errors).toEqual({ broken: "EACCES: permission denied, open '/proc/x'" });
  });

  test("virtual: containers are recognised from their marker files", () => {
    if (existsSync("/.dockerenv")) expect(facts.virtual).toBe("container");
    else expect(typeof facts.virtual).toBe("string");
  });

  test("an unreadable custom dir is recorded under _errors and the built-ins still arrive", async () => {
    // A file where a directory is expected makes readdir fail with ENOTDIR (not ENOENT).
    const file = join(emptyDir, "not-a-dir");
    await (await import("node:fs/promises")).writeFile(file, "x");
    const f = await collectFacts({ customDir: file });
    expect((f._errors as Record<string, string>).custom).toMatch(/not-a-dir: .*ENOTDIR/);
    expect(f.cpu_count).toBe(os.cpus().length);
    expect(f.os_family).toBe("Debian");
  });
});
