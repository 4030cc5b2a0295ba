/**
 * The revert kinds by name: what a plan's UndoRef.kind selects. Loaded on first use: a run that
 * changes only files never loads the package or account code (start-up time of `zester local`).
 */
import type { UndoKindName } from "../../modules/types.js";
import type { RevertKind } from "./kind.js";

const LOADERS: Record<UndoKindName, () => Promise<RevertKind>> = {
  file: async () => (await import("./file.js")).fileKind,
  pkg: async () => (await import("./pkg.js")).pkgKind,
  service: async () => (await import("./service.js")).serviceKind,
  user: async () => (await import("./accounts.js")).userKind,
  group: async () => (await import("./accounts.js")).groupKind,
  crontab: async () => (await import("./cron.js")).crontabKind,
  sysctl: async () => (await import("./sysctl.js")).sysctlKind,
  mount: async () => (await import("./mount.js")).mountKind,
};

export async function revertKind(name: UndoKindName): Promise<RevertKind> {
  const load = Object.hasOwn(LOADERS, name) ? LOADERS[name] : undefined;
  if (!load) throw new Error(`no revert support for ${String(name)} resources in this version`);
  return load();
}
