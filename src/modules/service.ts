/**
 * The `service` family: daemons under systemd or SysV init scripts.
 *
 * A plan reads two facts about the service (running? enabled at boot?) and lists what differs;
 * apply() starts/stops/enables exactly that and checks the status again, so a start that exits
 * immediately is a failure, not a change. `watch` is Salt's mod_watch: restart (or reload) a
 * running service, start a stopped one.
 */
import { lstat, mkdir, readdir, readlink, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import { errText } from "../util/errors.js";
import { type ExecOptions, type ExecResult, run } from "../util/exec.js";
import { isENOENT, statOrUndefined } from "../util/files.js";
import {
  parseIsActive,
  parseIsEnabled,
  parseLoadState,
  type ServiceAction,
  systemctlActionArgv,
  systemctlIsActiveArgv,
  systemctlIsEnabledArgv,
  systemctlLoadStateArgv,
} from "./providers/systemd.js";
import {
  INIT_DIR,
  initScriptPath,
  parseSysvStatus,
  rcLinkOps,
  START_LEVELS,
  STOP_LEVELS,
  sysvActionArgv,
  sysvEnabled,
  updateRcDisableArgvs,
  updateRcEnableArgvs,
  validServiceName,
} from "./providers/sysvinit.js";
import {
  boolParam,
  failed,
  failure,
  optString,
  StateError,
  unchanged,
  which,
  withRevertDocs,
} from "./support.js";
import type {
  ApplyOutcome,
  ExecFunction,
  ModuleContext,
  ModuleFamily,
  ParamSpec,
  Params,
  Plan,
  StateFunction,
} from "./types.js";

/** What the states need from an init system. */
export interface ServiceBackend {
  name: "systemd" | "sysvinit";
  /** False when the init system does not know the service at all. */
  exists(name: string): Promise<boolean>;
  running(name: string): Promise<boolean>;
  enabled(name: string): Promise<boolean>;
  action(name: string, action: ServiceAction): Promise<ExecResult>;
  setEnabled(name: string, enable: boolean): Promise<ExecResult>;
}

const ETC = "/etc";

function systemdBackend(opts: ExecOptions): ServiceBackend {
  return {
    name: "systemd",
    exists: async (name) => {
      const r = await run(systemctlLoadStateArgv(name), opts);
      const state = parseLoadState(r.stdout);
      return r.retcode === 0 && state !== "not-found" && state !== "";
    },
    running: async (name) => parseIsActive((await run(systemctlIsActiveArgv(name), opts)).stdout),
    enabled: async (name) => parseIsEnabled((await run(systemctlIsEnabledArgv(name), opts)).stdout),
    action: (name, action) => run(systemctlActionArgv(action, name), opts),
    setEnabled: (name, enable) => run(systemctlActionArgv(enable ? "enable" : "disable", name), opts),
  };
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (isENOENT(err)) return [];
    throw err;
  }
}

async function rcLinks(): Promise<Record<string, string[]>> {
  const links: Record<string, string[]> = {};
  for (const lvl of [...START_LEVELS, ...STOP_LEVELS]) links[lvl] = await listDir(join(ETC, `rc${lvl}.d`));
  return links;
}

/** Without update-rc.d: edit the /etc/rc?.d links directly. */
async function editRcLinks(name: string, enable: boolean): Promise<void> {
  for (const op of rcLinkOps(name, await rcLinks(), enable)) {
    if (op.remove) await rm(join(ETC, op.remove), { force: true });
    if (op.create) {
      const path = join(ETC, op.create.path);
      await mkdir(join(path, ".."), { recursive: true });
      try {
        if ((await lstat(path)).isSymbolicLink() && (await readlink(path)) === op.create.target) continue;
        await rm(path, { force: true });
      } catch (err) {
        if (!isENOENT(err)) throw err;
      }
      await symlink(op.create.target, path);
    }
  }
}

function sysvBackend(opts: ExecOptions): ServiceBackend {
  return {
    name: "sysvinit",
    exists: async (name) => (await statOrUndefined(initScriptPath(name)))?.isFile() ?? false,
    running: async (name) => parseSysvStatus((await run(sysvActionArgv(name, "status"), opts)).retcode),
    enabled: async (name) => sysvEnabled(name, await rcLinks()),
    action: (name, action) => run(sysvActionArgv(name, action), opts),
    setEnabled: async (name, enable) => {
      if ((await which("update-rc.d")) !== undefined) {
        let last: ExecResult = { retcode: 0, stdout: "", stderr: "" };
        for (const argv of enable ? updateRcEnableArgvs(name) : updateRcDisableArgvs(name)) {
          last = await run(argv, opts);
          if (last.retcode !== 0) return last;
        }
        return last;
      }
      try {
        await editRcLinks(name, enable);
        return { retcode: 0, stdout: "", stderr: "" };
      } catch (err) {
        return { retcode: 1, stdout: "", stderr: errText(err) };
      }
    },
  };
}

/**
 * The init system: the `init` fact first; when it is unknown (containers, sandboxes), systemd only
 * if it is actually running (/run/systemd/system), else SysV scripts.
 */
export async function serviceBackend(ctx: Pick<ModuleContext, "facts" | "signal">): Promise<ServiceBackend> {
  const opts: ExecOptions = { timeoutMs: 120_000 };
  if (ctx.signal) opts.signal = ctx.signal;
  const init = optString(ctx.facts.init);
  if (init === "systemd") return systemdBackend(opts);
  if (init === "sysvinit") return sysvBackend(opts);
  const booted = await statOrUndefined("/run/systemd/system").catch(() => undefined);
  return booted?.isDirectory() ? systemdBackend(opts) : sysvBackend(opts);
}

function checkName(params: Params): string {
  const name = String(params.name ?? "");
  if (!validServiceName(name)) throw new StateError(`invalid service name "${name}"`);
  return name;
}

interface Want {
  running?: boolean;
  enabled?: boolean;
}

interface ServiceState {
  backend: ServiceBackend;
  name: string;
  running: boolean;
  enabled: boolean;
}

class ServiceUnavailable extends StateError {}

async function inspect(params: Params, ctx: ModuleContext): Promise<ServiceState> {
  const name = checkName(params);
  const backend = await serviceBackend(ctx);
  if (!(await backend.exists(name))) {
    const where = backend.name === "systemd" ? "systemd has no such unit" : `no ${INIT_DIR}/${name} script`;
    throw new ServiceUnavailable(`Service ${name} is not available (${where})`);
  }
  const [running, enabled] = await Promise.all([backend.running(name), backend.enabled(name)]);
  return { backend, name, running, enabled };
}

/** Some daemons need a moment before their status says "running". */
async function waitRunning(s: ServiceState, want: boolean, delayMs: number): Promise<boolean> {
  const deadline = Date.now() + Math.max(delayMs, 2000);
  for (;;) {
    if ((await s.backend.running(s.name)) === want) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function describe(want: Want, s: ServiceState): { changes: Record<string, unknown>; parts: string[] } {
  const changes: Record<string, unknown> = {};
  const parts: string[] = [];
  if (want.running !== undefined && want.running !== s.running) {
    changes.running = { old: s.running, new: want.running };
    parts.push(want.running ? "started" : "stopped");
  }
  if (want.enabled !== undefined && want.enabled !== s.enabled) {
    changes.enabled = { old: s.enabled, new: want.enabled };
    parts.push(want.enabled ? "enabled" : "disabled");
  }
  return { changes, parts };
}

async function planService(params: Params, ctx: ModuleContext, want: Want): Promise<Plan> {
  let s: ServiceState;
  try {
    s = await inspect(params, ctx);
  } catch (err) {
    // A dry run of a fresh machine: the package that brings the service has not been installed.
    if (ctx.test && err instanceof ServiceUnavailable) {
      const would = [
        want.running === undefined ? "" : want.running ? "started" : "stopped",
        want.enabled === undefined ? "" : want.enabled ? "enabled" : "disabled",
      ].filter(Boolean);
      return {
        changes: {},
        pending: true,
        comment: `Service ${String(params.name)} not present; if created in this state run, it would have been ${would.join(" and ")}`,
      };
    }
    return failed(errText(err));
  }
  const { changes, parts } = describe(want, s);
  if (parts.length === 0) {
    const state = [
      want.running === undefined ? "" : s.running ? "running" : "dead",
      want.enabled === undefined ? "" : s.enabled ? "enabled" : "disabled",
    ].filter(Boolean);
    return unchanged(`Service ${s.name} is already ${state.join(" and ")}`);
  }
  return {
    changes,
    comment: `Service ${s.name} would be ${parts.join(" and ")}`,
    undo: { refs: [{ kind: "service", key: s.name }] },
    apply: () => applyService(s, want, params),
  };
}

async function applyService(s: ServiceState, want: Want, params: Params): Promise<ApplyOutcome> {
  const done: Record<string, unknown> = {};
  const parts: string[] = [];
  const delay = Number(params.init_delay ?? 0) * 1000;
  try {
    if (want.enabled !== undefined && want.enabled !== s.enabled) {
      const r = await s.backend.setEnabled(s.name, want.enabled);
      if (r.retcode !== 0) {
        return {
          result: false,
          changes: done,
          comment: failure(`${want.enabled ? "Enabling" : "Disabling"} ${s.name}`, r),
        };
      }
      done.enabled = { old: s.enabled, new: want.enabled };
      parts.push(want.enabled ? "enabled" : "disabled");
    }
    if (want.running !== undefined && want.running !== s.running) {
      const action = want.running ? "start" : "stop";
      const r = await s.backend.action(s.name, action);
      if (r.retcode !== 0) {
        return { result: false, changes: done, comment: failure(`${action} ${s.name}`, r) };
      }
      if (!(await waitRunning(s, want.running, delay))) {
        return {
          result: false,
          changes: done,
          comment: `Service ${s.name} ${action} ran but the service is ${want.running ? "not running" : "still running"}`,
        };
      }
      done.running = { old: s.running, new: want.running };
      parts.push(want.running ? "started" : "stopped");
    }
    return { result: true, changes: done, comment: `Service ${s.name} ${parts.join(" and ")}` };
  } catch (err) {
    return { result: false, changes: done, comment: errText(err) };
  }
}

/** mod_watch for service.running: restart (or reload) when running, start when not. */
async function watchRunning(params: Params, ctx: ModuleContext): Promise<Plan> {
  let s: ServiceState;
  try {
    s = await inspect(params, ctx);
  } catch (err) {
    return failed(errText(err));
  }
  const enable =
    params.enable === undefined || params.enable === null ? undefined : boolParam(params.enable, true);
  if (!s.running)
    return planService(params, ctx, { running: true, ...(enable === undefined ? {} : { enabled: enable }) });
  const action: ServiceAction = boolParam(params.reload, false) ? "reload" : "restart";
  const past = action === "reload" ? "reloaded" : "restarted";
  // The watch run replaces the normal run, so it enforces `enable` too.
  const enableChange = enable !== undefined && enable !== s.enabled;
  const planned: Record<string, unknown> = { [past]: true };
  if (enableChange) planned.enabled = { old: s.enabled, new: enable };
  return {
    changes: planned,
    comment: `Service ${s.name} would be ${past}${enableChange ? ` and ${enable ? "enabled" : "disabled"}` : ""}`,
    undo: { cannot: `a ${action} cannot be undone` },
    apply: async () => {
      const done: Record<string, unknown> = {};
      if (enableChange) {
        const e = await s.backend.setEnabled(s.name, enable);
        if (e.retcode !== 0) {
          return {
            result: false,
            changes: {},
            comment: failure(`${enable ? "Enabling" : "Disabling"} ${s.name}`, e),
          };
        }
        done.enabled = planned.enabled;
      }
      const r = await s.backend.action(s.name, action);
      if (r.retcode !== 0)
        return { result: false, changes: done, comment: failure(`${action} ${s.name}`, r) };
      done[past] = true;
      if (!(await waitRunning(s, true, Number(params.init_delay ?? 0) * 1000))) {
        return { result: false, changes: done, comment: `Service ${s.name} is not running after ${action}` };
      }
      return { result: true, changes: done, comment: `Service ${s.name} ${past}` };
    },
  };
}

const NAME: ParamSpec = {
  type: "string",
  doc: "The service: a systemd unit name, or the name of a script in /etc/init.d.",
  required: true,
  aliases: ["service"],
};
const INIT_DELAY: ParamSpec = {
  type: "number",
  doc: "Seconds to keep checking the status after a start before calling it a failure.",
};

const ENABLE: ParamSpec = {
  type: "boolean",
  doc: "Also enable (true) or disable (false) the service at boot; unset leaves it.",
};

const running: StateFunction = {
  doc:
    "Makes sure a service is running, and with enable: true/false also enabled/disabled at boot. " +
    "When a watched state changes, the service is restarted (or reloaded with reload: true).",
  primary: "name",
  footprint: (p) => ({ writes: [`service:${String(p.name)}`], reads: ["*"] }),
  params: {
    name: NAME,
    enable: ENABLE,
    reload: { type: "boolean", doc: "On a watch trigger, reload instead of restart.", default: false },
    init_delay: INIT_DELAY,
  },
  plan: (params, ctx) => {
    const want: Want = { running: true };
    if (params.enable !== undefined && params.enable !== null) want.enabled = boolParam(params.enable, true);
    return planService(params, ctx, want);
  },
  watch: watchRunning,
};

const dead: StateFunction = {
  doc: "Makes sure a service is stopped, and with enable: false/true also disabled/enabled at boot.",
  primary: "name",
  footprint: (p) => ({ writes: [`service:${String(p.name)}`], reads: ["*"] }),
  params: {
    name: NAME,
    enable: ENABLE,
    init_delay: INIT_DELAY,
  },
  plan: (params, ctx) => {
    const want: Want = { running: false };
    if (params.enable !== undefined && params.enable !== null) want.enabled = boolParam(params.enable, false);
    return planService(params, ctx, want);
  },
};

const enabled: StateFunction = {
  doc: "Makes sure a service starts at boot, without starting or stopping it now.",
  primary: "name",
  footprint: (p) => ({ writes: [`service:${String(p.name)}`], reads: ["*"] }),
  params: { name: NAME },
  plan: (params, ctx) => planService(params, ctx, { enabled: true }),
};

const disabled: StateFunction = {
  doc: "Makes sure a service does not start at boot, without starting or stopping it now.",
  primary: "name",
  footprint: (p) => ({ writes: [`service:${String(p.name)}`], reads: ["*"] }),
  params: { name: NAME },
  plan: (params, ctx) => planService(params, ctx, { enabled: false }),
};

/**
 * Salt's service.masked / service.unmasked: masking is systemd's (`systemctl is-enabled` prints
 * `masked` or `masked-runtime`); without systemd the state fails as Salt's does, which only has
 * the masking functions in its systemd module.
 */
function planMask(mask: boolean) {
  return async (params: Params, ctx: ModuleContext): Promise<Plan> => {
    const name = checkName(params);
    const runtime = boolParam(params.runtime, false);
    const backend = await serviceBackend(ctx);
    if (backend.name !== "systemd") return failed("Service masking not available on this minion");
    const opts: ExecOptions = ctx.signal ? { signal: ctx.signal } : {};
    const word = (await run(systemctlIsEnabledArgv(name), opts)).stdout.trim().split("\n")[0] ?? "";
    const isMasked = word === (runtime ? "masked-runtime" : "masked");
    const action = `${runtime ? "runtime " : ""}${mask ? "masked" : "unmasked"}`;
    if (isMasked === mask) return unchanged(`Service ${name} is already ${action}`);
    const argv = ["systemctl", mask ? "mask" : "unmask", ...(runtime ? ["--runtime"] : []), "--", name];
    return {
      changes: { [name]: action },
      comment: `Service ${name} would be ${action}`,
      apply: async () => {
        const r = await run(argv, opts);
        if (r.retcode !== 0)
          return { result: false, comment: failure(`${mask ? "mask" : "unmask"} ${name}`, r) };
        return { result: true, changes: { [name]: action }, comment: `Service ${name} was ${action}` };
      },
    };
  };
}

const RUNTIME: ParamSpec = {
  type: "boolean",
  doc: "Only until the next reboot (systemctl --runtime).",
  default: false,
};

const masked: StateFunction = {
  doc: "Makes sure a systemd unit is masked (cannot be started), without stopping it now.",
  primary: "name",
  footprint: (p) => ({ writes: [`service:${String(p.name)}`], reads: ["*"] }),
  params: { name: NAME, runtime: RUNTIME },
  plan: planMask(true),
};

const unmasked: StateFunction = {
  doc: "Makes sure a systemd unit is not masked, without starting it.",
  primary: "name",
  footprint: (p) => ({ writes: [`service:${String(p.name)}`], reads: ["*"] }),
  params: { name: NAME, runtime: RUNTIME },
  plan: planMask(false),
};

// ---------------------------------------------------------------------------------------------
// Execution functions.

const execName: Record<string, ParamSpec> = { name: NAME };

function actionFn(action: ServiceAction): ExecFunction {
  return {
    doc: `${action[0]!.toUpperCase()}${action.slice(1)}s a service; returns true on success, throws with the output otherwise.`,
    params: execName,
    positional: ["name"],
    run: async (params, ctx) => {
      const name = checkName(params);
      const r = await (await serviceBackend(ctx)).action(name, action);
      if (r.retcode !== 0) throw new StateError(failure(`${action} ${name}`, r));
      return true;
    },
  };
}

const exec: Record<string, ExecFunction> = {
  status: {
    doc: "True when the service is running.",
    params: execName,
    positional: ["name"],
    readOnly: true,
    run: async (params, ctx) => (await serviceBackend(ctx)).running(checkName(params)),
  },
  start: actionFn("start"),
  stop: actionFn("stop"),
  restart: actionFn("restart"),
  reload: actionFn("reload"),
};

const SERVICE_REVERT =
  "Restores whether the service was running and whether it was enabled at boot before the run.";

export const family: ModuleFamily = {
  name: "service",
  doc: "Services under systemd or SysV init scripts (chosen from the init fact, else probed).",
  states: withRevertDocs(
    { running, dead, enabled, disabled, masked, unmasked },
    {
      running: `${SERVICE_REVERT} A restart or reload a watch caused cannot be undone.`,
      dead: SERVICE_REVERT,
      enabled: SERVICE_REVERT,
      disabled: SERVICE_REVERT,
      masked: "cannot be reverted: masking keeps no pre-image yet (unmask with service.unmasked).",
      unmasked: "cannot be reverted: unmasking keeps no pre-image yet (mask with service.masked).",
    },
  ),
  exec,
};
