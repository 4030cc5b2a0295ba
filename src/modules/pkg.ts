/**
 * The `pkg` family: system packages through the platform's package manager.
 *
 * apt/dpkg is first class; dnf/yum and Homebrew share the same plans through a small backend
 * interface. A plan reads the package database once (dpkg-query / rpm / brew list), asks the
 * manager for candidates when needed, and apply() makes exactly one install (or remove) call for
 * the whole list, then reads the database again to report what really happened.
 */
import { realpath, stat } from "node:fs/promises";
import { errText } from "../util/errors.js";
import { type ExecOptions, type ExecResult, run } from "../util/exec.js";
import {
  APT_ENV,
  aptCachePolicyArgv,
  aptInstallArgv,
  aptMarkArgv,
  aptRemoveArgv,
  aptUpdateArgv,
  DPKG_LOCK_TIMEOUT_S,
  dpkgQueryArgv,
  type LockHolder,
  lockHeldBy,
  type PkgSpec,
  parseAptCachePolicy,
  parseDpkgQuery,
  versionMatches,
} from "./providers/apt.js";
import {
  BREW_ENV,
  brewInfoArgv,
  brewInstallArgv,
  brewListArgv,
  brewPinArgv,
  brewRemoveArgv,
  brewUpdateArgv,
  brewUpgradeArgv,
  parseBrewInfo,
  parseBrewList,
} from "./providers/brew.js";
import {
  parseRpmList,
  parseRpmQuery,
  type RpmTool,
  rpmAvailableArgv,
  rpmInstallArgv,
  rpmQueryArgv,
  rpmRefreshArgv,
  rpmRemoveArgv,
} from "./providers/dnf.js";
import {
  applyFailed,
  boolParam,
  failed,
  failure,
  listParam,
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
  Undo,
} from "./types.js";

export interface InstalledPkg {
  version: string;
  held: boolean;
  /** Removed but configuration files remain (dpkg "rc"). */
  configOnly: boolean;
}

/** What the states need from a package manager. */
export interface PkgBackend {
  name: string;
  installed(): Promise<Map<string, InstalledPkg>>;
  /** Version the manager would install now, per name; absent names have no candidate. */
  candidates(names: readonly string[]): Promise<Map<string, string>>;
  install(specs: readonly PkgSpec[], upgrade: boolean): Promise<ExecResult>;
  remove(names: readonly string[], purge: boolean): Promise<ExecResult>;
  refresh(): Promise<ExecResult>;
  hold?(names: readonly string[], hold: boolean): Promise<ExecResult>;
}

async function mustRun(argv: readonly string[], opts: ExecOptions, what: string): Promise<string> {
  const res = await run(argv, opts);
  if (res.retcode !== 0) throw new StateError(failure(what, res));
  return res.stdout;
}

function describeHolder(h: LockHolder): string {
  const who =
    h.pid === undefined ? "another process" : `process ${h.pid}${h.command ? ` (${h.command})` : ""}`;
  return `${h.path ?? "the dpkg lock"} is held by ${who}`;
}

/**
 * Runs an apt/dpkg command that takes the package manager's lock, waiting (bounded) while another
 * apt/dpkg run holds it. apt-get install/remove wait by themselves (DPkg::Lock::Timeout);
 * `apt-get update` and `apt-mark` fail at once, so they are retried here until `timeoutMs`. Only a
 * lock failure is retried: nothing has changed when a lock could not be taken.
 */
export async function runWaitingForLock(
  argv: (remainingS: number) => readonly string[],
  opts: ExecOptions,
  timeoutMs: number,
  what: string,
): Promise<ExecResult> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 250; ; delay = Math.min(delay * 2, 2000)) {
    const res = await run(argv(Math.max(0, (deadline - Date.now()) / 1000)), opts);
    if (res.retcode === 0) return res;
    const holder = lockHeldBy(`${res.stderr}\n${res.stdout}`);
    if (!holder) return res;
    if (Date.now() + delay > deadline || opts.signal?.aborted) {
      throw new StateError(
        `${what}: the package manager is busy: ${describeHolder(holder)} and was not released within ${Math.round(timeoutMs / 1000)} s (another apt/dpkg run is in progress; retry when it has finished)`,
      );
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

export function aptBackend(signal?: AbortSignal, lockTimeoutMs = DPKG_LOCK_TIMEOUT_S * 1000): PkgBackend {
  const opts: ExecOptions = { env: { ...APT_ENV } };
  if (signal) opts.signal = signal;
  const locked = (argv: (remainingS: number) => readonly string[], what: string) =>
    runWaitingForLock(argv, opts, lockTimeoutMs, what);
  return {
    name: "apt",
    async installed() {
      const text = await mustRun(dpkgQueryArgv(), opts, "dpkg-query");
      const out = new Map<string, InstalledPkg>();
      for (const [name, e] of parseDpkgQuery(text)) {
        if (e.installed || e.configOnly) {
          out.set(name, { version: e.installed ? e.version : "", held: e.held, configOnly: e.configOnly });
        }
      }
      return out;
    },
    async candidates(names) {
      const out = new Map<string, string>();
      if (names.length === 0) return out;
      const text = await mustRun(aptCachePolicyArgv(names), opts, "apt-cache policy");
      const policy = parseAptCachePolicy(text);
      for (const n of names) {
        const c = policy.get(n)?.candidate;
        if (c) out.set(n, c);
      }
      return out;
    },
    install: (specs) => locked((left) => aptInstallArgv(specs, left), "apt-get install"),
    remove: (names, purge) =>
      locked((left) => aptRemoveArgv(names, purge, left), `apt-get ${purge ? "purge" : "remove"}`),
    refresh: () => locked(() => aptUpdateArgv(), "apt-get update"),
    hold: (names, hold) => locked(() => aptMarkArgv(names, hold), `apt-mark ${hold ? "hold" : "unhold"}`),
  };
}

function rpmBackend(tool: RpmTool, signal?: AbortSignal): PkgBackend {
  const opts: ExecOptions = {};
  if (signal) opts.signal = signal;
  return {
    name: tool,
    async installed() {
      const out = new Map<string, InstalledPkg>();
      for (const [name, e] of parseRpmQuery(await mustRun(rpmQueryArgv(), opts, "rpm -qa"))) {
        out.set(name, { version: e.version, held: false, configOnly: false });
      }
      return out;
    },
    async candidates(names) {
      if (names.length === 0) return new Map();
      // Exit 1 just means "nothing available" for some names; parse whatever was listed.
      const res = await run(rpmAvailableArgv(tool, names), opts);
      return parseRpmList(res.stdout);
    },
    install: (specs) => run(rpmInstallArgv(tool, specs), opts),
    remove: (names) => run(rpmRemoveArgv(tool, names), opts),
    refresh: () => run(rpmRefreshArgv(tool), opts),
  };
}

/** Homebrew refuses root: run it as the owner of the brew installation. */
async function brewOptions(signal?: AbortSignal): Promise<ExecOptions> {
  const opts: ExecOptions = { env: { ...BREW_ENV } };
  if (signal) opts.signal = signal;
  if (process.getuid?.() === 0) {
    const found = await run(["sh", "-c", 'command -v brew || echo ""']);
    const bin = found.stdout.trim();
    if (bin) {
      const st = await stat(await realpath(bin));
      const owner = await run(["id", "-nu", String(st.uid)]);
      if (owner.retcode === 0 && owner.stdout.trim() !== "root") opts.runas = owner.stdout.trim();
    }
  }
  return opts;
}

function brewBackend(signal?: AbortSignal): PkgBackend {
  const opts = brewOptions(signal);
  return {
    name: "brew",
    async installed() {
      const out = new Map<string, InstalledPkg>();
      const text = await mustRun(brewListArgv(), await opts, "brew list");
      for (const [name, version] of parseBrewList(text)) {
        out.set(name, { version, held: false, configOnly: false });
      }
      return out;
    },
    async candidates(names) {
      if (names.length === 0) return new Map();
      return parseBrewInfo(await mustRun(brewInfoArgv(names), await opts, "brew info"));
    },
    install: async (specs, upgrade) =>
      run(upgrade ? brewUpgradeArgv(specs.map((s) => s.name)) : brewInstallArgv(specs), await opts),
    remove: async (names) => run(brewRemoveArgv(names), await opts),
    refresh: async () => run(brewUpdateArgv(), await opts),
    hold: async (names, hold) => run(brewPinArgv(names, hold), await opts),
  };
}

/** The backend for this machine: the pkg_manager fact first, then a probe for known tools. */
export async function pkgBackend(ctx: Pick<ModuleContext, "facts" | "signal">): Promise<PkgBackend> {
  let pm = optString(ctx.facts.pkg_manager);
  if (!pm) {
    for (const tool of ["apt-get", "dnf", "yum", "brew"]) {
      if ((await which(tool)) !== undefined) {
        pm = tool === "apt-get" ? "apt" : tool;
        break;
      }
    }
  }
  switch (pm) {
    case "apt":
      return aptBackend(ctx.signal);
    case "dnf":
    case "yum":
      return rpmBackend(pm, ctx.signal);
    case "brew":
      return brewBackend(ctx.signal);
    default:
      throw new StateError(
        pm ? `package manager "${pm}" is not supported (apt, dnf, yum, brew)` : "no package manager found",
      );
  }
}

/** `name` + `version`, or `pkgs`: a list of names or one-key {name: version} maps. */
export function desiredSpecs(params: Params): PkgSpec[] {
  const specs: PkgSpec[] = [];
  const pkgs = params.pkgs;
  if (pkgs !== undefined && pkgs !== null) {
    if (!Array.isArray(pkgs)) throw new StateError("pkgs must be a list");
    for (const item of pkgs) {
      if (typeof item === "string" || typeof item === "number") {
        specs.push({ name: String(item) });
      } else if (item && typeof item === "object" && !Array.isArray(item)) {
        for (const [name, version] of Object.entries(item as Record<string, unknown>)) {
          const v = optString(version);
          specs.push(v === undefined ? { name } : { name, version: v });
        }
      } else {
        throw new StateError("each pkgs entry must be a name or a {name: version} map");
      }
    }
  } else {
    const name = optString(params.name);
    if (!name) throw new StateError("name or pkgs is required");
    const v = optString(params.version);
    specs.push(v === undefined ? { name } : { name, version: v });
  }
  for (const s of specs) {
    // A leading dash would be read as an option by every package manager.
    if (!/^[A-Za-z0-9@._+:/-]+$/.test(s.name) || s.name.startsWith("-")) {
      throw new StateError(`invalid package name "${s.name}"`);
    }
  }
  return specs;
}

type Change = { old: string; new: string; hold?: { old: boolean; new: boolean } };

function diffInstalled(before: Map<string, InstalledPkg>, after: Map<string, InstalledPkg>) {
  const changes: Record<string, Change> = {};
  const names = new Set([...before.keys(), ...after.keys()]);
  for (const n of names) {
    const a = before.get(n)?.version ?? "";
    const b = after.get(n)?.version ?? "";
    const gone = before.has(n) && !after.has(n);
    if (a !== b || gone) changes[n] = { old: a, new: b };
  }
  return changes;
}

interface InstallPlanOpts {
  latest: boolean;
}

/** What both plans start from: the wanted packages, the backend and what it has installed. */
async function inspect(
  params: Params,
  ctx: ModuleContext,
): Promise<{ specs: PkgSpec[]; backend: PkgBackend; installed: Map<string, InstalledPkg> }> {
  const specs = desiredSpecs(params);
  const backend = await pkgBackend(ctx);
  return { specs, backend, installed: await backend.installed() };
}

/** What an install plan will do: the packages to install and to (un)hold, and how they change. */
interface InstallJob {
  specs: PkgSpec[];
  backend: PkgBackend;
  installed: Map<string, InstalledPkg>;
  candidates: Map<string, string>;
  toInstall: PkgSpec[];
  toHold: string[];
  hold: boolean | undefined;
  refresh: boolean;
  latest: boolean;
}

async function planInstall(params: Params, ctx: ModuleContext, o: InstallPlanOpts): Promise<Plan> {
  const current = await inspect(params, ctx).catch((err: unknown) => failed(errText(err)));
  if ("comment" in current) return current;
  const { specs, backend, installed } = current;
  const hold = params.hold === undefined || params.hold === null ? undefined : boolParam(params.hold, false);
  const refresh = boolParam(params.refresh, false);
  let candidates: Map<string, string>;
  try {
    const needCandidate = specs.filter((s) => {
      const cur = installed.get(s.name);
      return o.latest || !cur || cur.configOnly;
    });
    candidates = await backend.candidates(needCandidate.map((s) => s.name));
  } catch (err) {
    return failed(errText(err));
  }
  const { toInstall, changes, missing } = installChanges(specs, installed, candidates, o.latest, refresh);
  if (missing.length > 0) return noCandidate(missing, backend, ctx);
  let toHold: string[] = [];
  if (hold !== undefined) {
    if (!backend.hold) return failed(`hold is not supported by ${backend.name}`);
    toHold = holdChanges(specs, installed, hold, changes);
  }
  const names = specs.map((s) => s.name);
  if (Object.keys(changes).length === 0) {
    const what = o.latest ? "already at the latest version" : "already installed";
    return unchanged(`${plural(names)} ${what}`);
  }
  const verb = o.latest ? "installed or upgraded" : "installed";
  const summary = toInstall.length > 0 ? `${plural(toInstall.map((s) => s.name))} would be ${verb}` : "";
  const holdSummary = toHold.length > 0 ? `${toHold.join(", ")} would be ${hold ? "held" : "unheld"}` : "";
  const job: InstallJob = {
    specs,
    backend,
    installed,
    candidates,
    toInstall,
    toHold,
    hold,
    refresh,
    latest: o.latest,
  };
  return {
    changes,
    comment: [summary, holdSummary].filter(Boolean).join("; "),
    undo: pkgUndo([...toInstall.map((s) => s.name), ...toHold]),
    apply: () => applyInstall(job),
  };
}

/** Which wanted packages need installing (or upgrading, `latest`), and those with no candidate. */
function installChanges(
  specs: readonly PkgSpec[],
  installed: ReadonlyMap<string, InstalledPkg>,
  candidates: ReadonlyMap<string, string>,
  latest: boolean,
  refresh: boolean,
): { toInstall: PkgSpec[]; changes: Record<string, Change>; missing: string[] } {
  const toInstall: PkgSpec[] = [];
  const changes: Record<string, Change> = {};
  const missing: string[] = [];
  for (const s of specs) {
    const cur = installed.get(s.name);
    const have = cur && !cur.configOnly ? cur.version : "";
    if (latest) {
      const cand = candidates.get(s.name);
      if (!cand) {
        // Installed but in no repository (a local .deb): nothing newer to get. Not installed: the
        // refresh may still bring a candidate, so only fail without one.
        if (!have && !refresh) missing.push(s.name);
        else if (!have) {
          toInstall.push({ name: s.name });
          changes[s.name] = { old: "", new: "latest" };
        }
        continue;
      }
      if (have !== cand) {
        toInstall.push({ name: s.name });
        changes[s.name] = { old: have, new: cand };
      }
      continue;
    }
    if (have && (s.version === undefined || versionMatches(have, s.version))) continue;
    if (!have && !candidates.has(s.name) && !refresh) {
      missing.push(s.name);
      continue;
    }
    toInstall.push(s);
    changes[s.name] = { old: have, new: s.version ?? candidates.get(s.name) ?? "latest" };
  }
  return { toInstall, changes, missing };
}

/**
 * Salt's apt module reports a missing candidate as pending in a dry run: an earlier pkgrepo
 * state of the same run may add the repository that has it.
 */
function noCandidate(missing: readonly string[], backend: PkgBackend, ctx: ModuleContext): Plan {
  if (ctx.test)
    return {
      changes: {},
      pending: true,
      comment: `No installation candidate for ${missing.join(", ")} (${backend.name}) yet; it would be installed if an earlier state of this run provides it`,
    };
  return failed(`No installation candidate for ${missing.join(", ")} (${backend.name})`);
}

/** The packages whose hold differs from `hold`; their change entries get a `hold` part. */
function holdChanges(
  specs: readonly PkgSpec[],
  installed: ReadonlyMap<string, InstalledPkg>,
  hold: boolean,
  changes: Record<string, Change>,
): string[] {
  const toHold: string[] = [];
  for (const s of specs) {
    if ((installed.get(s.name)?.held ?? false) !== hold) {
      toHold.push(s.name);
      const c = changes[s.name] ?? { old: installed.get(s.name)?.version ?? "", new: "" };
      if (!changes[s.name]) c.new = c.old;
      c.hold = { old: !hold, new: hold };
      changes[s.name] = c;
    }
  }
  return toHold;
}

/** Refresh, install, (un)hold; then the changes as the package database shows them. */
async function applyInstall(job: InstallJob): Promise<ApplyOutcome> {
  const { backend, toInstall, toHold, hold } = job;
  try {
    if (job.refresh) {
      const r = await backend.refresh();
      if (r.retcode !== 0) return applyFailed(failure("Refreshing the package database", r));
    }
    let installFailure: string | undefined;
    if (toInstall.length > 0) {
      const r = await backend.install(toInstall, job.latest);
      if (r.retcode !== 0)
        installFailure = failure(`Installing ${toInstall.map((s) => s.name).join(", ")}`, r);
    }
    let holdFailure: string | undefined;
    if (!installFailure && toHold.length > 0 && backend.hold) {
      const r = await backend.hold(toHold, hold === true);
      if (r.retcode !== 0) holdFailure = failure("Changing the hold", r);
    }
    const after = await backend.installed();
    const done: Record<string, unknown> = diffInstalled(job.installed, after);
    for (const n of toHold) {
      const held = after.get(n)?.held ?? false;
      if (held === hold) {
        const c = (done[n] as Change | undefined) ?? {
          old: after.get(n)?.version ?? "",
          new: after.get(n)?.version ?? "",
        };
        c.hold = { old: !hold, new: held };
        done[n] = c;
      }
    }
    const wrong = notAsRequested(job, after);
    if (installFailure || holdFailure || wrong.length > 0) {
      const why =
        installFailure ??
        holdFailure ??
        `${wrong.map((s) => s.name).join(", ")} not at the requested version after install`;
      return { result: false, changes: done, comment: why };
    }
    const verb = job.latest ? "installed or upgraded" : "installed";
    return {
      result: true,
      changes: done,
      comment: [
        toInstall.length > 0 ? `${plural(toInstall.map((s) => s.name))} ${verb}` : "",
        toHold.length > 0 ? `${toHold.join(", ")} ${hold ? "held" : "unheld"}` : "",
      ]
        .filter(Boolean)
        .join("; "),
    };
  } catch (err) {
    return applyFailed(errText(err));
  }
}

/** Wanted packages the database does not show as asked after the install. */
function notAsRequested(job: InstallJob, after: ReadonlyMap<string, InstalledPkg>): PkgSpec[] {
  return job.specs.filter((s) => {
    const cur = after.get(s.name);
    if (!cur || cur.configOnly) return true;
    if (job.latest)
      return (
        job.toInstall.some((t) => t.name === s.name) &&
        cur.version !== job.candidates.get(s.name) &&
        job.candidates.has(s.name)
      );
    return s.version !== undefined && !versionMatches(cur.version, s.version);
  });
}

/** The packages a plan changes, for `state.revert` (src/revert/kinds/pkg.ts). */
function pkgUndo(names: readonly string[]): Undo {
  return { refs: [...new Set(names)].map((key) => ({ kind: "pkg" as const, key })) };
}

function plural(names: readonly string[]): string {
  return names.length === 1 ? `Package ${names[0]}` : `Packages ${names.join(", ")}`;
}

async function planRemove(params: Params, ctx: ModuleContext, purge: boolean): Promise<Plan> {
  const current = await inspect(params, ctx).catch((err: unknown) => failed(errText(err)));
  if ("comment" in current) return current;
  const { specs, backend, installed } = current;
  const present = specs.filter((s) => {
    const cur = installed.get(s.name);
    if (!cur) return false;
    if (cur.configOnly) return purge;
    // Salt: with a version, only that version is removed.
    return s.version === undefined || versionMatches(cur.version, s.version);
  });
  const verb = purge ? "purged" : "removed";
  if (present.length === 0) {
    return {
      changes: {},
      comment: `${plural(specs.map((s) => s.name))} ${purge ? "not installed (nothing to purge)" : "not installed"}`,
    };
  }
  const names = present.map((s) => s.name);
  const changes: Record<string, Change> = {};
  for (const n of names) changes[n] = { old: installed.get(n)?.version ?? "", new: "" };
  return {
    changes,
    comment: `${plural(names)} would be ${verb}`,
    undo: pkgUndo(names),
    apply: async () => {
      try {
        const r = await backend.remove(names, purge);
        const after = await backend.installed();
        const done = diffInstalled(installed, after);
        const left = names.filter((n) => {
          const cur = after.get(n);
          return cur !== undefined && (purge || !cur.configOnly);
        });
        if (r.retcode !== 0 || left.length > 0) {
          return {
            result: false,
            changes: done,
            comment:
              r.retcode !== 0
                ? failure(`Removing ${names.join(", ")}`, r)
                : `${left.join(", ")} still present`,
          };
        }
        return { result: true, changes: done, comment: `${plural(names)} ${verb}` };
      } catch (err) {
        return applyFailed(errText(err));
      }
    },
  };
}

const NAME: ParamSpec = {
  type: "string",
  doc: "The package name (ignored when pkgs is given).",
  aliases: ["pkg", "package"],
};
const PKGS: ParamSpec = {
  type: "list",
  doc: "Several packages in one transaction: names, or one-key maps {name: version}.",
};
const REFRESH: ParamSpec = {
  type: "boolean",
  doc: "Refresh the package database (apt-get update) before installing.",
  default: false,
};

const installed: StateFunction = {
  doc:
    "Makes sure packages are installed, optionally at a version (exact, or a trailing * glob) and held. " +
    "A list is installed in one package-manager call, non-interactively (apt keeps existing config files).",
  primary: "name",
  params: {
    name: NAME,
    pkgs: PKGS,
    version: { type: "string", doc: "Version to install; exact, or a glob like 1.2*." },
    refresh: REFRESH,
    hold: {
      type: "boolean",
      doc: "Hold (true) or unhold (false) the packages so upgrades leave them alone.",
    },
  },
  plan: (params, ctx) => planInstall(params, ctx, { latest: false }),
};

const latest: StateFunction = {
  doc: "Makes sure packages are installed at the newest version the package manager offers.",
  primary: "name",
  params: { name: NAME, pkgs: PKGS, refresh: REFRESH },
  plan: (params, ctx) => planInstall(params, ctx, { latest: true }),
};

const removed: StateFunction = {
  doc: "Makes sure packages are not installed (configuration files are kept; see pkg.purged).",
  primary: "name",
  params: {
    name: NAME,
    pkgs: PKGS,
    version: { type: "string", doc: "Only remove when this version is installed." },
  },
  plan: (params, ctx) => planRemove(params, ctx, false),
};

const purged: StateFunction = {
  doc: "Makes sure packages and their configuration files are gone (apt purge; same as removed elsewhere).",
  primary: "name",
  params: removed.params,
  plan: (params, ctx) => planRemove(params, ctx, true),
};

// ---------------------------------------------------------------------------------------------
// Execution functions.

const exec: Record<string, ExecFunction> = {
  version: {
    doc: "Installed version of one package (a string, '' when absent), or a {name: version} map for several.",
    params: {
      names: { type: ["string", "list"], doc: "Package name(s).", required: true, aliases: ["name"] },
    },
    positional: ["names"],
    readOnly: true,
    run: async (params, ctx) => {
      const names = listParam(params.names);
      const inst = await (await pkgBackend(ctx)).installed();
      const v = (n: string) => {
        const e = inst.get(n);
        return e && !e.configOnly ? e.version : "";
      };
      if (names.length === 1) return v(names[0]!);
      return Object.fromEntries(names.map((n) => [n, v(n)]));
    },
  },
  list_pkgs: {
    doc: "Every installed package with its version, as a {name: version} map.",
    params: {},
    readOnly: true,
    run: async (_params, ctx) => {
      const inst = await (await pkgBackend(ctx)).installed();
      const out: Record<string, string> = {};
      for (const [n, e] of [...inst].sort(([a], [b]) => a.localeCompare(b)))
        if (!e.configOnly) out[n] = e.version;
      return out;
    },
  },
  refresh_db: {
    doc: "Refreshes the package database (apt-get update, dnf makecache, brew update); returns true.",
    params: {},
    run: async (_params, ctx) => {
      const r = await (await pkgBackend(ctx)).refresh();
      if (r.retcode !== 0) throw new StateError(failure("Refreshing the package database", r));
      return true;
    },
  },
};

const PKG_REVERT =
  "Restores each package the run changed to its previous version (a downgrade where needed: that version must still be available to the package manager) or removes it when the run installed it, and restores its hold; dependencies pulled in with it are left installed.";

export const family: ModuleFamily = {
  name: "pkg",
  doc: "System packages: apt/dpkg (Debian, Ubuntu), dnf/yum (RHEL, Fedora), Homebrew (macOS).",
  states: withRevertDocs(
    { installed, latest, removed, purged },
    {
      installed: PKG_REVERT,
      latest: PKG_REVERT,
      removed: `${PKG_REVERT} A removed package comes back at its version, which the package manager must still offer.`,
      purged: `${PKG_REVERT} Configuration files a purge deleted are not restored.`,
    },
  ),
  exec,
};
