/**
 * Homebrew: argv construction and output parsing. Pure functions; src/modules/pkg.ts runs them.
 * Homebrew refuses to run as root, so the module runs it as the owner of the brew prefix.
 */
import type { PkgSpec } from "./apt.js";

/** Never auto-update or ask: a state run must not start a long network refresh or wait on input. */
export const BREW_ENV: Readonly<Record<string, string>> = {
  HOMEBREW_NO_AUTO_UPDATE: "1",
  HOMEBREW_NO_INSTALL_CLEANUP: "1",
  HOMEBREW_NO_ENV_HINTS: "1",
  NONINTERACTIVE: "1",
};

export function brewListArgv(): string[] {
  return ["brew", "list", "--versions"];
}

/** `brew list --versions`: "name v1 [v2 ...]"; the last listed version is the linked/newest one. */
export function parseBrewList(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const parts = line.trim().split(/\s+/);
    if (parts.length < 2 || !parts[0]) continue;
    out.set(parts[0], parts[parts.length - 1]!);
  }
  return out;
}

/** Homebrew installs the current formula only; a version pin selects a versioned formula (name@1.2). */
export function brewInstallArgv(specs: readonly PkgSpec[]): string[] {
  return [
    "brew",
    "install",
    ...specs.map((s) => (s.version === undefined ? s.name : `${s.name}@${s.version}`)),
  ];
}

export function brewUpgradeArgv(names: readonly string[]): string[] {
  return ["brew", "upgrade", ...names];
}

export function brewRemoveArgv(names: readonly string[]): string[] {
  return ["brew", "uninstall", ...names];
}

export function brewUpdateArgv(): string[] {
  return ["brew", "update"];
}

export function brewInfoArgv(names: readonly string[]): string[] {
  return ["brew", "info", "--json=v2", ...names];
}

/** Latest stable version per formula (and cask) from `brew info --json=v2`. */
export function parseBrewInfo(json: string): Map<string, string> {
  const out = new Map<string, string>();
  const doc = JSON.parse(json) as {
    formulae?: { name: string; versions?: { stable?: string } }[];
    casks?: { token: string; version?: string }[];
  };
  for (const f of doc.formulae ?? []) if (f.versions?.stable) out.set(f.name, f.versions.stable);
  for (const c of doc.casks ?? []) if (c.version) out.set(c.token, c.version);
  return out;
}

export function brewPinArgv(names: readonly string[], pin: boolean): string[] {
  return ["brew", pin ? "pin" : "unpin", ...names];
}
