/** Services: whether one was running and whether it was enabled at boot (systemd or SysV). */
import { type ServiceBackend, serviceBackend } from "../../modules/service.js";
import { failed, failure, unchanged } from "../../modules/support.js";
import type { Plan } from "../../modules/types.js";
import type { Observed } from "../record.js";
import type { RevertKind } from "./kind.js";

type ServiceState = { exists: false } | { exists: true; running: boolean; enabled: boolean };

function backend(signal?: AbortSignal): Promise<ServiceBackend> {
  return serviceBackend(signal ? { facts: {}, signal } : { facts: {} });
}

async function observeService(name: string, signal?: AbortSignal): Promise<ServiceState> {
  const b = await backend(signal);
  if (!(await b.exists(name))) return { exists: false };
  const [running, enabled] = await Promise.all([b.running(name), b.enabled(name)]);
  return { exists: true, running, enabled };
}

async function restoreService(
  name: string,
  want: ServiceState,
  now: ServiceState,
  signal?: AbortSignal,
): Promise<Plan> {
  if (!want.exists)
    return failed(`service ${name} did not exist before the run; remove it with the state that installed it`);
  if (!now.exists) return failed(`service ${name} no longer exists`);
  const changes: Record<string, unknown> = {};
  if (now.running !== want.running) changes.running = { old: now.running, new: want.running };
  if (now.enabled !== want.enabled) changes.enabled = { old: now.enabled, new: want.enabled };
  if (Object.keys(changes).length === 0) return unchanged(`Service ${name} is as before the run`);
  const b = await backend(signal);
  const parts = [
    changes.running ? (want.running ? "started" : "stopped") : "",
    changes.enabled ? (want.enabled ? "enabled" : "disabled") : "",
  ].filter(Boolean);
  return {
    changes,
    comment: `Service ${name} ${parts.join(" and ")} as before the run`,
    apply: async () => {
      if (changes.running) {
        const r = await b.action(name, want.running ? "start" : "stop");
        if (r.retcode !== 0)
          return { result: false, comment: failure(`${want.running ? "Starting" : "Stopping"} ${name}`, r) };
      }
      if (changes.enabled) {
        const r = await b.setEnabled(name, want.enabled);
        if (r.retcode !== 0)
          return { result: false, comment: failure(`${want.enabled ? "Enabling" : "Disabling"} ${name}`, r) };
      }
      return undefined;
    },
  };
}

export const serviceKind: RevertKind = {
  observe: async (ref, signal) => (await observeService(ref.key, signal)) as Observed,
  capture: async (ref, _store, signal) => ({ state: (await observeService(ref.key, signal)) as Observed }),
  restore: (ref, pre, now, ctx) =>
    restoreService(ref.key, pre.state as unknown as ServiceState, now as unknown as ServiceState, ctx.signal),
};
