/**
 * SysV init scripts: argv construction and the runlevel link logic. Pure functions (the directory
 * listings are passed in); src/modules/service.ts does the I/O.
 */
import { escapeRe } from "../support.js";
import type { ServiceAction } from "./systemd.js";

export const INIT_DIR = "/etc/init.d";
/** Runlevels a service is started in (Debian's multi-user levels). */
export const START_LEVELS = ["2", "3", "4", "5"] as const;
export const STOP_LEVELS = ["0", "1", "6"] as const;

/** Service names become paths: anything that could leave /etc/init.d is refused. */
export function validServiceName(name: string): boolean {
  return /^[A-Za-z0-9@_.+-]+$/.test(name) && name !== "." && name !== "..";
}

export function initScriptPath(name: string, initDir = INIT_DIR): string {
  return `${initDir}/${name}`;
}

export function sysvActionArgv(name: string, action: ServiceAction | "status", initDir = INIT_DIR): string[] {
  return [initScriptPath(name, initDir), action];
}

/** LSB: status exit 0 means running; 1-3 mean not running; 4 is "unknown", treated as not running. */
export function parseSysvStatus(retcode: number): boolean {
  return retcode === 0;
}

/**
 * Enabled means: a start link (S<nn><name>) in every start runlevel directory.
 * `links` maps runlevel → file names in /etc/rc<level>.d.
 */
export function sysvEnabled(name: string, links: Record<string, readonly string[]>): boolean {
  const start = new RegExp(`^S\\d\\d${escapeRe(name)}$`);
  return START_LEVELS.every((lvl) => (links[lvl] ?? []).some((f) => start.test(f)));
}

/** update-rc.d: install the default links, then make sure they are start links. */
export function updateRcEnableArgvs(name: string): string[][] {
  return [
    ["update-rc.d", name, "defaults"],
    ["update-rc.d", name, "enable"],
  ];
}

export function updateRcDisableArgvs(name: string): string[][] {
  return [
    ["update-rc.d", name, "defaults"],
    ["update-rc.d", name, "disable"],
  ];
}

export interface LinkOp {
  /** Remove this link (relative to /etc). */
  remove?: string;
  /** Create a symlink at `path` (relative to /etc) pointing to `target`. */
  create?: { path: string; target: string };
}

/**
 * Link edits that enable or disable a service when update-rc.d is not installed: start links in
 * 2-5 and kill links in 0, 1, 6 for enable; kill links everywhere for disable. Existing links keep
 * their sequence number.
 */
export function rcLinkOps(name: string, links: Record<string, readonly string[]>, enable: boolean): LinkOp[] {
  const ops: LinkOp[] = [];
  const re = new RegExp(`^([SK])(\\d\\d)${escapeRe(name)}$`);
  const target = `../init.d/${name}`;
  for (const lvl of [...START_LEVELS, ...STOP_LEVELS]) {
    const want = enable && (START_LEVELS as readonly string[]).includes(lvl) ? "S" : "K";
    const existing = (links[lvl] ?? []).map((f) => re.exec(f)).filter((m) => m !== null);
    if (existing.some((m) => m[1] === want)) {
      for (const m of existing) if (m[1] !== want) ops.push({ remove: `rc${lvl}.d/${m[0]}` });
      continue;
    }
    const seq = existing[0]?.[2] ?? (want === "S" ? "20" : "01");
    for (const m of existing) ops.push({ remove: `rc${lvl}.d/${m[0]}` });
    ops.push({ create: { path: `rc${lvl}.d/${want}${seq}${name}`, target } });
  }
  return ops;
}
