/**
 * dnf/yum (rpm): argv construction and output parsing. Pure functions; src/modules/pkg.ts runs them.
 */
import type { PkgSpec } from "./apt.js";

export type RpmTool = "dnf" | "yum";

export interface RpmEntry {
  name: string;
  /** [epoch:]version-release, the form dnf and yum accept after "name-". */
  version: string;
  arch: string;
}

export function rpmQueryArgv(): string[] {
  return ["rpm", "-qa", "--queryformat", "%{NAME}\\t%{EPOCH}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\n"];
}

export function parseRpmQuery(text: string): Map<string, RpmEntry> {
  const out = new Map<string, RpmEntry>();
  for (const line of text.split("\n")) {
    const [name, epoch, vr, arch = ""] = line.split("\t");
    if (!name || !vr) continue;
    const version = epoch && epoch !== "(none)" && epoch !== "0" ? `${epoch}:${vr}` : vr;
    // gpg-pubkey and multilib packages repeat names; the first one is as good as any for a version.
    if (!out.has(name)) out.set(name, { name, version, arch });
  }
  return out;
}

const ENV_NOTE = ["-y", "-q"];

export function rpmInstallArgv(tool: RpmTool, specs: readonly PkgSpec[]): string[] {
  return [
    tool,
    ...ENV_NOTE,
    "install",
    ...specs.map((s) => (s.version === undefined ? s.name : `${s.name}-${s.version}`)),
  ];
}

export function rpmRemoveArgv(tool: RpmTool, names: readonly string[]): string[] {
  return [tool, ...ENV_NOTE, "remove", ...names];
}

export function rpmRefreshArgv(tool: RpmTool): string[] {
  return [tool, "-y", "-q", "makecache"];
}

/** Latest available version per package: `dnf list --available`, which yum understands too. */
export function rpmAvailableArgv(tool: RpmTool, names: readonly string[]): string[] {
  return [tool, "-q", "list", "--available", ...names];
}

/**
 * Parses `yum/dnf list` output: "name.arch  version  repo" lines, possibly wrapped onto two lines
 * when the name is long. Section headers ("Available Packages") are skipped.
 */
export function parseRpmList(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const tokens: string[] = [];
  for (const line of text.split("\n")) {
    if (/^(Available|Installed|Last metadata|Upgraded|Extra) /i.test(line) || !line.trim()) continue;
    tokens.push(...line.trim().split(/\s+/));
    while (tokens.length >= 3) {
      const [nameArch, version] = tokens.splice(0, 3) as [string, string, string];
      const dot = nameArch.lastIndexOf(".");
      const name = dot > 0 ? nameArch.slice(0, dot) : nameArch;
      // The list is sorted by version, so the last line of a name is its newest build.
      out.set(name, version);
    }
  }
  return out;
}

export interface YumRepo {
  id: string;
  name?: string;
  baseurl?: string;
  mirrorlist?: string;
  metalink?: string;
  enabled?: boolean;
  gpgcheck?: boolean;
  gpgkey?: string;
  /** Extra key=value options, written in sorted order. */
  extra?: Record<string, string>;
}

/** The content of /etc/yum.repos.d/<id>.repo; deterministic so a rewrite is detected as "no change". */
export function yumRepoFile(repo: YumRepo): string {
  const lines = [`[${repo.id}]`, `name=${repo.name ?? repo.id}`];
  if (repo.baseurl) lines.push(`baseurl=${repo.baseurl}`);
  if (repo.mirrorlist) lines.push(`mirrorlist=${repo.mirrorlist}`);
  if (repo.metalink) lines.push(`metalink=${repo.metalink}`);
  lines.push(`enabled=${repo.enabled === false ? 0 : 1}`);
  lines.push(`gpgcheck=${repo.gpgcheck === false ? 0 : 1}`);
  if (repo.gpgkey) lines.push(`gpgkey=${repo.gpgkey}`);
  for (const key of Object.keys(repo.extra ?? {}).sort()) lines.push(`${key}=${repo.extra![key]}`);
  return `${lines.join("\n")}\n`;
}
