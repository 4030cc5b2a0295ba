import * as nodeOs from "node:os";
import { pathExists, readTextOrUndefined } from "./read.js";

/** Parses /etc/os-release (shell-style KEY=value, optionally quoted). */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    let value = line.slice(eq + 1);
    const q = value[0];
    if ((q === '"' || q === "'") && value.endsWith(q) && value.length >= 2) {
      value = value.slice(1, -1);
      if (q === '"') value = value.replace(/\\(["$`\\])/g, "$1");
    }
    out[key] = value;
  }
  return out;
}

// Salt's os_family names, keyed by os-release ID / ID_LIKE words.
const FAMILY_BY_ID: Record<string, string> = {
  debian: "Debian",
  ubuntu: "Debian",
  raspbian: "Debian",
  linuxmint: "Debian",
  pop: "Debian",
  kali: "Debian",
  rhel: "RedHat",
  fedora: "RedHat",
  centos: "RedHat",
  rocky: "RedHat",
  almalinux: "RedHat",
  ol: "RedHat",
  amzn: "RedHat",
  arch: "Arch",
  manjaro: "Arch",
  endeavouros: "Arch",
  suse: "Suse",
  sles: "Suse",
  opensuse: "Suse",
  "opensuse-leap": "Suse",
  "opensuse-tumbleweed": "Suse",
  alpine: "Alpine",
  gentoo: "Gentoo",
  void: "Void",
  nixos: "NixOS",
};

/** os_family from ID first, then each ID_LIKE word, so derivatives land in their parent family. */
export function osFamilyFor(id: string | undefined, idLike: string | undefined): string | undefined {
  for (const word of [id ?? "", ...(idLike ?? "").split(/\s+/)]) {
    const fam = FAMILY_BY_ID[word.toLowerCase()];
    if (fam) return fam;
  }
  return undefined;
}

/** Go-style architecture names, which is what the spec's `facts.arch` examples use. */
export function goArch(nodeArch: string): string {
  switch (nodeArch) {
    case "x64":
      return "amd64";
    case "ia32":
      return "386";
    default:
      // arm64, arm, ppc64, s390x, riscv64, loong64 already match Go's spelling.
      return nodeArch;
  }
}

const INIT_BY_COMM: Record<string, string> = {
  systemd: "systemd",
  init: "sysvinit",
  "openrc-init": "openrc",
  runit: "runit",
  "s6-svscan": "s6",
  upstart: "upstart",
  launchd: "launchd",
};

const PKG_BY_FAMILY: Record<string, string> = {
  Debian: "apt",
  Arch: "pacman",
  Suse: "zypper",
  Alpine: "apk",
  Gentoo: "emerge",
  Void: "xbps",
  NixOS: "nix",
};

async function pkgManager(family: string | undefined, platform: string): Promise<string | undefined> {
  if (platform === "darwin") return "brew";
  if (family === "RedHat") {
    // dnf superseded yum from RHEL 8 / Fedora 22; probe instead of guessing from the version.
    if (await pathExists("/usr/bin/dnf")) return "dnf";
    return "yum";
  }
  if (family) return PKG_BY_FAMILY[family];
  for (const [bin, name] of [
    ["/usr/bin/apt-get", "apt"],
    ["/usr/bin/dnf", "dnf"],
    ["/usr/bin/yum", "yum"],
    ["/usr/bin/pacman", "pacman"],
    ["/usr/bin/zypper", "zypper"],
    ["/sbin/apk", "apk"],
  ] as const) {
    if (await pathExists(bin)) return name;
  }
  return undefined;
}

/** OS identity: name, release, family, kernel, architecture, init system, package manager. */
export async function collectOs(): Promise<Record<string, unknown>> {
  const platform = nodeOs.platform();
  const [osReleaseText, comm] = await Promise.all([
    readTextOrUndefined("/etc/os-release").then((t) => t ?? readTextOrUndefined("/usr/lib/os-release")),
    readTextOrUndefined("/proc/1/comm"),
  ]);
  const rel = parseOsRelease(osReleaseText ?? "");
  const family = osFamilyFor(rel.ID, rel.ID_LIKE);
  const osrelease = rel.VERSION_ID;
  // Debian testing/sid and Arch have no VERSION_ID; the codename may only be in VERSION's parentheses.
  const codename = rel.VERSION_CODENAME || /\(([^)]+)\)/.exec(rel.VERSION ?? "")?.[1];
  const major = osrelease ? Number.parseInt(osrelease, 10) : Number.NaN;
  const initName = comm === undefined ? undefined : comm.trim();

  const facts: Record<string, unknown> = {
    os: platform,
    kernel: nodeOs.type(),
    kernelrelease: nodeOs.release(),
    kernelversion: nodeOs.version(),
    arch: goArch(nodeOs.arch()),
    cpuarch: nodeOs.machine(),
    init: initName === undefined ? "unknown" : (INIT_BY_COMM[initName] ?? "unknown"),
  };
  if (rel.ID) facts.distro = rel.ID;
  if (family) facts.os_family = family;
  if (rel.NAME) facts.osfullname = rel.NAME;
  if (rel.PRETTY_NAME) facts.osprettyname = rel.PRETTY_NAME;
  if (osrelease) facts.osrelease = osrelease;
  if (codename) facts.oscodename = codename;
  if (Number.isFinite(major)) facts.osmajorrelease = major;
  const pm = await pkgManager(family, platform);
  if (pm) facts.pkg_manager = pm;
  return facts;
}
