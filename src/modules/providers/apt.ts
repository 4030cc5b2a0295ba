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

/**
 * How long a pkg call waits for another apt/dpkg run (unattended-upgrades, an operator's apt,
 * another state) to release the package manager's locks, like apt's `DPkg::Lock::Timeout`.
 */
export const DPKG_LOCK_TIMEOUT_S = 300;

function aptBase(lockTimeoutS: number): string[] {
  return [
    "apt-get",
    "-q",
    "-y",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
    // apt-get install/remove wait for the dpkg lock themselves; update and apt-mark do not
    // (src/modules/pkg.ts retries those while lockHeldBy() says the lock is taken).
    "-o",
    `DPkg::Lock::Timeout=${Math.max(0, Math.ceil(lockTimeoutS))}`,
  ];
}

/** Who holds a package-manager lock, as apt or dpkg reported it. */
export interface LockHolder {
  /** The lock file, when the message names it. */
  path?: string;
  pid?: number;
  /** The holder's command name, when apt names it. */
  command?: string;
}

/**
 * Reads apt/dpkg output for "another process holds the lock" (dpkg frontend lock, the dpkg
 * database lock, the lists and archives locks). Undefined when the failure is something else, so
 * only a lock failure is ever retried.
 */
export function lockHeldBy(output: string): LockHolder | undefined {
  const apt = /Could not get lock (\S+?)\.? It is held by process (\d+)(?: \(([^)]+)\))?/.exec(output);
  if (apt) {
    const h: LockHolder = { path: apt[1]!, pid: Number(apt[2]) };
    if (apt[3]) h.command = apt[3];
    return h;
  }
  const dpkg =
    /dpkg (?:frontend lock|status database) (?:was|is) locked by another process(?: with pid (\d+))?/.exec(
      output,
    );
  if (dpkg) {
    const h: LockHolder = {
      path: /frontend/.test(dpkg[0]) ? "/var/lib/dpkg/lock-frontend" : "/var/lib/dpkg/lock",
    };
    if (dpkg[1]) h.pid = Number(dpkg[1]);
    return h;
  }
  const acquire =
    /Unable to acquire the dpkg frontend lock \(([^)]+)\)|Could not get lock (\S+?)(?: - open|\.|$)|Unable to lock (?:the administration )?directory (\S+)/m.exec(
      output,
    );
  if (acquire) return { path: (acquire[1] ?? acquire[2] ?? acquire[3])!.replace(/[,.]$/, "") };
  return undefined;
}

export interface PkgSpec {
  name: string;
  /** Exact version to install; undefined means the candidate. */
  version?: string;
}

/** One apt-get call for the whole list: apt resolves them together and dpkg runs once. */
export function aptInstallArgv(specs: readonly PkgSpec[], lockTimeoutS = DPKG_LOCK_TIMEOUT_S): string[] {
  const pinned = specs.some((s) => s.version !== undefined);
  const argv = aptBase(lockTimeoutS);
  // An explicit older version is a downgrade; apt refuses those without this flag.
  if (pinned) argv.push("--allow-downgrades");
  argv.push("install", "--");
  for (const s of specs) argv.push(s.version === undefined ? s.name : `${s.name}=${s.version}`);
  return argv;
}

export function aptRemoveArgv(
  names: readonly string[],
  purge: boolean,
  lockTimeoutS = DPKG_LOCK_TIMEOUT_S,
): string[] {
  return [...aptBase(lockTimeoutS), purge ? "purge" : "remove", "--", ...names];
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
