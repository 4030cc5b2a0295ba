/**
 * systemd: systemctl argv construction and output parsing. Pure functions; src/modules/service.ts
 * runs them.
 */

export type ServiceAction = "start" | "stop" | "restart" | "reload";

export function systemctlActionArgv(action: ServiceAction | "enable" | "disable", unit: string): string[] {
  return ["systemctl", action, "--", unit];
}

export function systemctlIsActiveArgv(unit: string): string[] {
  return ["systemctl", "is-active", "--", unit];
}

export function systemctlIsEnabledArgv(unit: string): string[] {
  return ["systemctl", "is-enabled", "--", unit];
}

/** `systemctl show -p LoadState` tells a missing unit apart from a stopped one. */
export function systemctlLoadStateArgv(unit: string): string[] {
  return ["systemctl", "show", "-p", "LoadState", "--value", "--", unit];
}

/** is-active prints one word; "active" and "reloading" mean running, "activating" is on its way. */
export function parseIsActive(stdout: string): boolean {
  const word = stdout.trim().split("\n")[0] ?? "";
  return word === "active" || word === "reloading" || word === "activating";
}

/**
 * is-enabled prints one word. "static"/"indirect"/"generated" units have no [Install] links of their
 * own; Salt counts them as enabled because there is nothing to enable.
 */
export function parseIsEnabled(stdout: string): boolean {
  const word = stdout.trim().split("\n")[0] ?? "";
  return ["enabled", "enabled-runtime", "static", "indirect", "generated", "alias", "linked"].includes(word);
}

export function parseLoadState(stdout: string): "loaded" | "not-found" | "masked" | string {
  return stdout.trim();
}
