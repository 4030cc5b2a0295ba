import { describe, expect, test } from "vitest";
import { parseFactsFile } from "../src/facts/custom.js";
import { parseDefaultRoute } from "../src/facts/defaultip.js";
import { parseMounts } from "../src/facts/disk.js";
import { parseMeminfo } from "../src/facts/memory.js";
import { fqdnFromHosts } from "../src/facts/network.js";
import { goArch, osFamilyFor, parseOsRelease } from "../src/facts/os.js";

// The live-machine tests only see Debian; these pin the parsing for the other distributions.
describe("os-release", () => {
  test("quoted and unquoted values, comments, escapes", () => {
    const r = parseOsRelease(
      '# comment\nNAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\nX=\'single\'\nY="a \\"q\\""\nbogus\n',
    );
    expect(r).toEqual({
      NAME: "Rocky Linux",
      ID: "rocky",
      ID_LIKE: "rhel centos fedora",
      VERSION_ID: "9.3",
      X: "single",
      Y: 'a "q"',
    });
  });

  test("os_family from ID, then ID_LIKE", () => {
    expect(osFamilyFor("debian", undefined)).toBe("Debian");
    expect(osFamilyFor("ubuntu", "debian")).toBe("Debian");
    expect(osFamilyFor("rocky", "rhel centos fedora")).toBe("RedHat");
    expect(osFamilyFor("fedora", undefined)).toBe("RedHat");
    expect(osFamilyFor("someclone", "rhel fedora")).toBe("RedHat");
    expect(osFamilyFor("arch", undefined)).toBe("Arch");
    expect(osFamilyFor("opensuse-leap", "suse opensuse")).toBe("Suse");
    expect(osFamilyFor("alpine", undefined)).toBe("Alpine");
    expect(osFamilyFor("unheardof", undefined)).toBeUndefined();
  });

  test("Go-style arch names", () => {
    expect(goArch("x64")).toBe("amd64");
    expect(goArch("arm64")).toBe("arm64");
    expect(goArch("ia32")).toBe("386");
    expect(goArch("s390x")).toBe("s390x");
  });
});

describe("/proc parsers", () => {
  test("default route: lowest metric among up default routes, gateway decoded", () => {
    const table = [
      "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT",
      "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0",
      "eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0",
      "down0\t00000000\t01010101\t0002\t0\t0\t1\t00000000\t0\t0\t0",
      "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0",
    ].join("\n");
    expect(parseDefaultRoute(table)).toEqual({ iface: "eth0", gateway: "192.0.2.1", metric: 100 });
    expect(parseDefaultRoute(table.split("\n").slice(0, 1).join("\n"))).toBeUndefined();
  });

  test("mounts: pseudo fs dropped, octal escapes decoded, later mount on the same point wins", () => {
    const m = parseMounts(
      [
        "proc /proc proc rw 0 0",
        "/dev/sda1 / ext4 rw,relatime 0 0",
        "/dev/sdb1 /mnt/My\\040Disk xfs ro,noatime 0 0",
        "tmpfs /run tmpfs rw 0 0",
        "/dev/sdc1 /data ext4 rw 0 0",
        "/dev/sdd1 /data ext4 rw 0 0",
        "",
      ].join("\n"),
    );
    expect(m.map((x) => [x.device, x.mountpoint, x.fstype, x.readonly])).toEqual([
      ["/dev/sda1", "/", "ext4", false],
      ["/dev/sdb1", "/mnt/My Disk", "xfs", true],
      ["/dev/sdd1", "/data", "ext4", false],
    ]);
  });

  test("meminfo in bytes", () => {
    const r = parseMeminfo("MemTotal:       2048 kB\nMemAvailable:   1024 kB\nHugePages_Total:       0\n");
    expect(r).toEqual({ MemTotal: 2048 * 1024, MemAvailable: 1024 * 1024, HugePages_Total: 0 });
  });

  test("fqdn from /etc/hosts", () => {
    const hosts =
      "127.0.0.1 localhost\n# 10.0.0.9 web1.wrong.example web1\n10.0.0.5 web1.prod.example.com web1 # app\n";
    expect(fqdnFromHosts(hosts, "web1")).toBe("web1.prod.example.com");
    expect(fqdnFromHosts(hosts, "db1")).toBeUndefined();
    expect(fqdnFromHosts("127.0.1.1 web1\n", "web1")).toBeUndefined();
  });
});

test("broken YAML message names the file, line and column", () => {
  const r = parseFactsFile("a:\n  value: 1\nb:\n  value: [unclosed\n", "/etc/zester/facts/bad.yaml");
  expect(r.defs).toEqual([]);
  expect(r.errors).toHaveLength(1);
  expect(r.errors[0]).toBe(
    "/etc/zester/facts/bad.yaml:5:1: Flow sequence in block collection must be sufficiently indented and end with a ]",
  );
  const dup = parseFactsFile("a:\n  value: 1\n  value: 2\nb:\n  value: 3\n", "dup.yaml");
  expect(dup.errors).toEqual(["dup.yaml:3:3: Map keys must be unique"]);
});
