/**
 * Salt's core grains, computed from Zester's facts. Facts keep the spec's names (`os: linux`);
 * formulas written for Salt read `grains` and expect Salt's names, values and types on the same
 * machine (`os: Debian`, `osfinger: Debian-12`, `osrelease_info: [12]`). The view is a pure
 * function of the facts, so the master computes it for any peel from the facts it already holds.
 */

type Facts = Readonly<Record<string, unknown>>;

/** os-release ID → Salt's `os` grain, for the distributions Salt names differently from NAME. */
const SALT_OS_BY_ID: Readonly<Record<string, string>> = {
  debian: "Debian",
  ubuntu: "Ubuntu",
  raspbian: "Raspbian",
  linuxmint: "Mint",
  pop: "Pop",
  kali: "Kali",
  devuan: "Devuan",
  rhel: "RedHat",
  centos: "CentOS",
  fedora: "Fedora",
  rocky: "Rocky",
  almalinux: "AlmaLinux",
  ol: "OEL",
  amzn: "Amazon",
  arch: "Arch",
  manjaro: "Manjaro",
  endeavouros: "EndeavourOS",
  sles: "SUSE",
  opensuse: "SUSE",
  "opensuse-leap": "SUSE",
  "opensuse-tumbleweed": "SUSE",
  alpine: "Alpine",
  gentoo: "Gentoo",
  void: "Void",
  nixos: "NixOS",
};

/** `uname -m` → the architecture name dpkg uses (Salt's `osarch` on Debian is dpkg's). */
const DPKG_ARCH: Readonly<Record<string, string>> = {
  x86_64: "amd64",
  aarch64: "arm64",
  armv7l: "armhf",
  armv6l: "armel",
  i386: "i386",
  i686: "i386",
  ppc64le: "ppc64el",
  s390x: "s390x",
  riscv64: "riscv64",
};

/** The Salt release whose template behaviour Zester follows; formulas gate features on it. */
export const SALT_VERSION_INFO: readonly number[] = [3006, 9];

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

function saltOs(f: Facts): string | undefined {
  const id = str(f.distro);
  if (id !== undefined) {
    const known = SALT_OS_BY_ID[id.toLowerCase()];
    if (known) return known;
  }
  const full = str(f.osfullname);
  if (full !== undefined) {
    // Salt's fallback: the full name without "Linux".
    const short = full
      .replace(/linux/gi, "")
      .replace(/\s+/g, " ")
      .replace(/[\s/]+$/, "")
      .trim();
    if (short !== "") return short;
  }
  if (f.os === "darwin") return "MacOS";
  if (f.os === "freebsd") return "FreeBSD";
  return str(f.kernel);
}

function osreleaseInfo(f: Facts): (number | string)[] | undefined {
  const rel = str(f.osrelease);
  if (rel === undefined) return undefined;
  return rel.split(".").map((p) => (/^\d+$/.test(p) ? Number(p) : p));
}

function osarch(f: Facts): string | undefined {
  const machine = str(f.cpuarch);
  if (machine === undefined) return undefined;
  if (f.os_family === "Debian") return DPKG_ARCH[machine] ?? machine;
  // rpm's arch and every other family's fallback is the CPU architecture itself.
  return machine;
}

function osfinger(f: Facts): string | undefined {
  const os = saltOs(f);
  const info = osreleaseInfo(f);
  if (os === undefined || info === undefined) return undefined;
  const name = ["Debian", "FreeBSD", "OpenBSD", "NetBSD", "Mac", "Raspbian"].includes(os)
    ? os
    : (str(f.osfullname) ?? os);
  return `${name}-${name === "Ubuntu" ? f.osrelease : info[0]}`;
}

function ipInterfaces(f: Facts): Record<string, string[]> | undefined {
  const v4 = f.ip4_interfaces as Record<string, string[]> | undefined;
  const v6 = f.ip6_interfaces as Record<string, string[]> | undefined;
  if (!v4 && !v6) return undefined;
  const out: Record<string, string[]> = {};
  for (const name of new Set([...Object.keys(v4 ?? {}), ...Object.keys(v6 ?? {})])) {
    out[name] = [...(v4?.[name] ?? []), ...(v6?.[name] ?? [])];
  }
  return out;
}

/**
 * Grains whose value is not the fact of the same name (or that no fact carries). Every other
 * grain is the fact itself: `num_cpus`, `mem_total`, `kernel`, `fqdn`, `ipv4`, `osrelease`, ...
 */
const DERIVED: Readonly<Record<string, (f: Facts) => unknown>> = {
  os: saltOs,
  os_family: (f) => str(f.os_family) ?? saltOs(f),
  osarch,
  osrelease_info: osreleaseInfo,
  osmajorrelease: (f) => {
    const first = osreleaseInfo(f)?.[0];
    return typeof first === "number" ? first : f.osmajorrelease;
  },
  osfinger,
  lsb_distrib_id: (f) => str(f.osfullname),
  lsb_distrib_release: (f) => str(f.osrelease),
  lsb_distrib_codename: (f) => str(f.oscodename),
  lsb_distrib_description: (f) => str(f.osprettyname),
  nodename: (f) => str(f.hostname),
  localhost: (f) => str(f.hostname),
  ip_interfaces: ipInterfaces,
  saltversion: () => SALT_VERSION_INFO.join("."),
  saltversioninfo: () => [...SALT_VERSION_INFO],
  // Templates evaluate with Python 3 semantics; formulas pick py3 package names from this.
  pythonversion: () => [3, 11, 2, "final", 0],
};

/** The names `grainValue` may answer differently from the facts. */
export const DERIVED_GRAINS: ReadonlySet<string> = new Set(Object.keys(DERIVED));

/** One top-level grain, without building the whole view (targeting reads one key per peel). */
export function grainValue(facts: Facts, key: string): unknown {
  const derive = DERIVED[key];
  return derive ? derive(facts) : facts[key];
}

const views = new WeakMap<object, Record<string, unknown>>();

/**
 * The `grains` mapping for templates: every fact (custom facts included, as Salt's custom grains
 * are), then Salt's core names on top. Cached per facts object; treat the result as read-only.
 */
export function saltGrains(facts: Facts): Record<string, unknown> {
  const hit = views.get(facts);
  if (hit) return hit;
  const grains: Record<string, unknown> = { ...facts };
  delete grains._errors;
  for (const [key, derive] of Object.entries(DERIVED)) {
    const v = derive(facts);
    if (v !== undefined) grains[key] = v;
  }
  views.set(facts, grains);
  return grains;
}
