/**
 * apt/dpkg: argv construction and output parsing. Pure functions, so they are testable without
 * touching the package database; src/modules/pkg.ts runs them.
 */

/** One package as dpkg knows it. */
export interface DpkgEntry {
  name: string;
  version: string;
  /** dpkg's three-letter status abbreviation, e.g. "ii ", "rc ", "hi ". */
  status: string;
  /** Unpacked and configured (or at least unpacked): the package is on the system. */
  installed: boolean;
  /** Removed, but its configuration files remain (a purge would change something). */
  configOnly: boolean;
  /** Selection is "hold": apt will not upgrade it. */
  held: boolean;
}

// biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query field syntax, not a JS template.
export const DPKG_QUERY_FORMAT = "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n";

/** Lists every package dpkg knows about (names are not passed: unknown names make it fail). */
export function dpkgQueryArgv(): string[] {
  return ["dpkg-query", "-W", "-f", DPKG_QUERY_FORMAT];
}

export function parseDpkgQuery(text: string): Map<string, DpkgEntry> {
  const out = new Map<string, DpkgEntry>();
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const [name, version = "", status = ""] = line.split("\t");
    if (!name) continue;
    const want = status[0] ?? "";
    const state = status[1] ?? "";
    // Second letter: i = installed, U/F/h/W/t = unpacked but not (fully) configured, c = config-files.
    const installed = "iUFhWt".includes(state) && state !== "";
    const entry: DpkgEntry = {
      name,
      version,
      status,
      installed,
      configOnly: state === "c",
      held: want === "h",
    };
    // Multi-arch packages appear once per architecture; an installed one wins.
    const prev = out.get(name);
    if (!prev || (!prev.installed && installed)) out.set(name, entry);
  }
  return out;
}

export interface AptPolicy {
  installed?: string;
  candidate?: string;
}

/** `apt-cache policy a b`: Installed/Candidate per package; "(none)" becomes undefined. */
export function aptCachePolicyArgv(names: readonly string[]): string[] {
  return ["apt-cache", "policy", "--", ...names];
}

export function parseAptCachePolicy(text: string): Map<string, AptPolicy> {
  const out = new Map<string, AptPolicy>();
  let current: AptPolicy | undefined;
  for (const line of text.split("\n")) {
    const head = /^(\S+):$/.exec(line);
    if (head) {
      current = {};
      // Multi-arch names show as "pkg:amd64"; key by the bare name as well.
      out.set(head[1]!, current);
      const bare = head[1]!.split(":")[0]!;
      if (!out.has(bare)) out.set(bare, current);
      continue;
    }
    if (!current) continue;
    const kv = /^\s+(Installed|Candidate):\s*(.*)$/.exec(line);
    if (!kv) continue;
    const value = kv[2]!.trim();
    if (value === "(none)" || value === "") continue;
    if (kv[1] === "Installed") current.installed = value;
    else current.candidate = value;
  }
  return out;
}

/** The environment every apt/dpkg call gets: nothing may ever wait for a human. */
export const APT_ENV: Readonly<Record<string, string>> = {
  DEBIAN_FRONTEND: "noninteractive",
  APT_LISTCHANGES_FRONTEND: "none",
  NEEDRESTART_MODE: "a",
  UCF_FORCE_CONFFOLD: "1",
};

const APT_BASE = [
  "apt-get",
  "-q",
  "-y",
  "-o",
  "Dpkg::Options::=--force-confdef",
  "-o",
  "Dpkg::Options::=--force-confold",
  // Another apt run (unattended-upgrades, a parallel state) holds the lock: wait, do not fail.
  "-o",
  "DPkg::Lock::Timeout=300",
];

export interface PkgSpec {
  name: string;
  /** Exact version to install; undefined means the candidate. */
  version?: string;
}

/** One apt-get call for the whole list: apt resolves them together and dpkg runs once. */
export function aptInstallArgv(specs: readonly PkgSpec[]): string[] {
  const pinned = specs.some((s) => s.version !== undefined);
  const argv = [...APT_BASE];
  // An explicit older version is a downgrade; apt refuses those without this flag.
  if (pinned) argv.push("--allow-downgrades");
  argv.push("install", "--");
  for (const s of specs) argv.push(s.version === undefined ? s.name : `${s.name}=${s.version}`);
  return argv;
}

export function aptRemoveArgv(names: readonly string[], purge: boolean): string[] {
  return [...APT_BASE, purge ? "purge" : "remove", "--", ...names];
}

export function aptUpdateArgv(): string[] {
  return ["apt-get", "-q", "update"];
}

export function aptMarkArgv(names: readonly string[], hold: boolean): string[] {
  return ["apt-mark", hold ? "hold" : "unhold", "--", ...names];
}

/**
 * Does an installed version satisfy a requested one? Exact match, or a trailing `*` glob
 * ("1.2*"), which is how Salt trees usually pin "any 1.2.x". An epoch-less request also
 * matches an installed version that carries an epoch ("1:2.0" satisfies "2.0").
 */
export function versionMatches(installed: string, wanted: string): boolean {
  const candidates = [installed];
  const epoch = /^\d+:(.*)$/.exec(installed);
  if (epoch) candidates.push(epoch[1]!);
  if (wanted.endsWith("*")) {
    const prefix = wanted.slice(0, -1);
    return candidates.some((c) => c.startsWith(prefix));
  }
  return candidates.includes(wanted);
}
