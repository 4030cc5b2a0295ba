/**
 * Packages: the installed version (or "not installed") and the hold. Restoring asks the
 * machine's package manager for exactly the previous version (apt: `name=version`, a downgrade
 * where needed) or removes what the run installed.
 */
import { type PkgBackend, pkgBackend } from "../../modules/pkg.js";
import { failed, failure, unchanged } from "../../modules/support.js";
import type { Plan, UndoRef } from "../../modules/types.js";
import type { Observed } from "../record.js";
import type { RevertKind } from "./kind.js";

interface PkgState {
  version: string | null;
  held: boolean;
}

function backend(signal?: AbortSignal): Promise<PkgBackend> {
  return pkgBackend(signal ? { facts: {}, signal } : { facts: {} });
}

async function observePkg(name: string, signal?: AbortSignal): Promise<PkgState> {
  const cur = (await (await backend(signal)).installed()).get(name);
  if (!cur || cur.configOnly) return { version: null, held: false };
  return { version: cur.version, held: cur.held };
}

async function restorePkg(ref: UndoRef, want: PkgState, now: PkgState, signal?: AbortSignal): Promise<Plan> {
  const name = ref.key;
  const b = await backend(signal);
  const changes: Record<string, unknown> = {};
  if (now.version !== want.version) changes[name] = { old: now.version ?? "", new: want.version ?? "" };
  const holdChange = want.version !== null && now.held !== want.held;
  if (holdChange) changes.hold = { old: now.held, new: want.held };
  if (Object.keys(changes).length === 0) return unchanged(`Package ${name} is as before the run`);
  if (holdChange && !b.hold) return failed(`holds are not supported by ${b.name}`);
  const comment =
    want.version === null
      ? `Package ${name} removed (the run installed it)`
      : now.version === null
        ? `Package ${name} reinstalled at ${want.version}`
        : `Package ${name} back at ${want.version}${holdChange ? (want.held ? ", held" : ", unheld") : ""}`;
  return {
    changes,
    comment,
    apply: async () => {
      // A held package cannot change version: release it first, set the old hold after.
      if (now.held && b.hold && now.version !== want.version) {
        const r = await b.hold([name], false);
        if (r.retcode !== 0) return { result: false, comment: failure(`Unholding ${name}`, r) };
      }
      if (want.version === null) {
        const r = await b.remove([name], false);
        if (r.retcode !== 0) return { result: false, comment: failure(`Removing ${name}`, r) };
        return undefined;
      }
      if (now.version !== want.version) {
        const r = await b.install([{ name, version: want.version }], false);
        if (r.retcode !== 0)
          return { result: false, comment: failure(`Installing ${name}=${want.version}`, r) };
      }
      if (b.hold && (holdChange || (now.held && now.version !== want.version))) {
        const r = await b.hold([name], want.held);
        if (r.retcode !== 0) return { result: false, comment: failure(`Setting the hold of ${name}`, r) };
      }
      return undefined;
    },
  };
}

export const pkgKind: RevertKind = {
  observe: async (ref, signal) => (await observePkg(ref.key, signal)) as unknown as Observed,
  capture: async (ref, _store, signal) => ({
    state: (await observePkg(ref.key, signal)) as unknown as Observed,
  }),
  restore: (ref, pre, now, ctx) =>
    restorePkg(ref, pre.state as unknown as PkgState, now as unknown as PkgState, ctx.signal),
};
