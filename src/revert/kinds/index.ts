/** The revert kinds by name: what a plan's UndoRef.kind selects. */
import type { UndoKindName } from "../../modules/types.js";
import { groupKind, userKind } from "./accounts.js";
import { crontabKind } from "./cron.js";
import { fileKind } from "./file.js";
import type { RevertKind } from "./kind.js";
import { pkgKind } from "./pkg.js";
import { serviceKind } from "./service.js";
import { sysctlKind } from "./sysctl.js";

const KINDS: Partial<Record<UndoKindName, RevertKind>> = {
  file: fileKind,
  pkg: pkgKind,
  service: serviceKind,
  user: userKind,
  group: groupKind,
  crontab: crontabKind,
  sysctl: sysctlKind,
};

export function revertKind(name: UndoKindName): RevertKind {
  const k = KINDS[name];
  if (!k) throw new Error(`no revert support for ${name} resources in this version`);
  return k;
}
