/**
 * The `pip` family: Python packages in a system interpreter or a virtualenv.
 *
 * The plan reads `pip list --format=json` once and compares the installed version with the
 * requirement (name plus optional version specifiers); apply() runs one non-interactive
 * `pip install` and reads the list again.
 */
import { join } from "node:path";
import { errText } from "../util/errors.js";
import { type ExecOptions, type ExecResult, run } from "../util/exec.js";
import { statOrUndefined } from "../util/files.js";
import {
  applyFailed,
  boolParam,
  failed,
  failure,
  listParam,
  optString,
  StateError,
  unchanged,
  withRevertDocs,
} from "./support.js";
import type { ModuleContext, ModuleFamily, ParamSpec, Params, Plan, StateFunction } from "./types.js";

export interface Requirement {
  name: string;
  /** Normalized name (PEP 503) for lookups. */
  key: string;
  specs: { op: string; version: string }[];
  raw: string;
}

export function normalizeName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, "-");
}

/** "name[extra]>=1.0,<2" → name and specifiers; URLs and markers are not supported. */
export function parseRequirement(text: string): Requirement {
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$/.exec(text);
  if (!m) throw new StateError(`cannot parse requirement "${text}"`);
  const specs: { op: string; version: string }[] = [];
  const rest = m[3]!;
  if (rest) {
    for (const part of rest.split(",")) {
      const s = /^\s*(===|~=|==|!=|>=|<=|>|<)\s*([A-Za-z0-9.*+!_-]+)\s*$/.exec(part);
      if (!s) throw new StateError(`cannot parse version specifier "${part.trim()}" in "${text}"`);
      specs.push({ op: s[1]!, version: s[2]! });
    }
  }
  return { name: m[1]!, key: normalizeName(m[1]!), specs, raw: text.trim() };
}

/** Release numbers plus a pre-release rank; good enough for ordering ordinary PEP 440 versions. */
function versionKey(v: string): { nums: number[]; pre: number } {
  const main = /^(?:\d+!)?([0-9]+(?:\.[0-9]+)*)(.*)$/.exec(v.trim().toLowerCase());
  if (!main) return { nums: [], pre: 0 };
  const nums = main[1]!.split(".").map(Number);
  const tail = main[2]!;
  // dev < a < b < rc < final < post
  let pre = 0;
  if (/dev/.test(tail)) pre = -4;
  else if (/^[.-]?(a|alpha)/.test(tail)) pre = -3;
  else if (/^[.-]?(b|beta)/.test(tail)) pre = -2;
  else if (/^[.-]?(rc|c|pre|preview)/.test(tail)) pre = -1;
  else if (/post|^-\d/.test(tail)) pre = 1;
  return { nums, pre };
}

export function compareVersions(a: string, b: string): number {
  const ka = versionKey(a);
  const kb = versionKey(b);
  const n = Math.max(ka.nums.length, kb.nums.length);
  for (let i = 0; i < n; i++) {
    const d = (ka.nums[i] ?? 0) - (kb.nums[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return Math.sign(ka.pre - kb.pre);
}

export function satisfies(version: string, req: Requirement): boolean {
  return req.specs.every(({ op, version: want }) => {
    if (op === "===") return version === want;
    if ((op === "==" || op === "!=") && want.endsWith(".*")) {
      const prefix = want.slice(0, -2);
      const hit = version === prefix || version.startsWith(`${prefix}.`);
      return op === "==" ? hit : !hit;
    }
    const c = compareVersions(version, want);
    switch (op) {
      case "==":
        return c === 0;
      case "!=":
        return c !== 0;
      case ">=":
        return c >= 0;
      case "<=":
        return c <= 0;
      case ">":
        return c > 0;
      case "<":
        return c < 0;
      case "~=": {
        const parts = want.split(".");
        const prefix = parts.slice(0, Math.max(1, parts.length - 1)).join(".");
        return c >= 0 && (version === prefix || version.startsWith(`${prefix}.`));
      }
      default:
        return false;
    }
  });
}

/** bin_env: a pip executable, or a virtualenv directory (its bin/pip); default `python3 -m pip`. */
async function pipArgv(binEnv: string | undefined): Promise<string[]> {
  if (!binEnv) return ["python3", "-m", "pip"];
  const st = await statOrUndefined(binEnv);
  if (!st) throw new StateError(`bin_env ${binEnv} does not exist`);
  if (st.isDirectory()) {
    const python = join(binEnv, "bin", "python");
    if (!(await statOrUndefined(python))) throw new StateError(`bin_env ${binEnv} has no bin/python`);
    return [python, "-m", "pip"];
  }
  return [binEnv];
}

function pipOptions(params: Params, ctx: ModuleContext): ExecOptions {
  const opts: ExecOptions = {
    env: { PIP_DISABLE_PIP_VERSION_CHECK: "1", PIP_NO_INPUT: "1", PYTHONDONTWRITEBYTECODE: "1" },
    timeoutMs: 900_000,
  };
  const user = optString(params.user);
  if (user) opts.runas = user;
  if (ctx.signal) opts.signal = ctx.signal;
  return opts;
}

async function pipList(pip: string[], opts: ExecOptions): Promise<Map<string, string>> {
  const r = await run([...pip, "list", "--format=json"], opts);
  if (r.retcode !== 0) throw new StateError(failure("pip list", r));
  const out = new Map<string, string>();
  for (const p of JSON.parse(r.stdout) as { name: string; version: string }[])
    out.set(normalizeName(p.name), p.version);
  return out;
}

function indexArgs(params: Params): string[] {
  const args: string[] = [];
  if (boolParam(params.no_index, false)) args.push("--no-index");
  const index = optString(params.index_url);
  if (index) args.push("--index-url", index);
  for (const x of listParam(params.extra_index_url)) args.push("--extra-index-url", x);
  for (const f of listParam(params.find_links)) args.push("--find-links", f);
  return args;
}

function requirements(params: Params): Requirement[] {
  const pkgs = listParam(params.pkgs);
  const list = pkgs.length > 0 ? pkgs : [String(params.name)];
  return list.map(parseRequirement);
}

function installPlan(
  pip: string[],
  opts: ExecOptions,
  params: Params,
  reqs: Requirement[],
  before: Map<string, string>,
): Plan {
  const todo = reqs.filter((r) => {
    const have = before.get(r.key);
    return have === undefined || !satisfies(have, r);
  });
  if (todo.length === 0) {
    return {
      changes: {},
      comment: `${reqs.map((r) => `${r.name} ${before.get(r.key)}`).join(", ")} already installed`,
    };
  }
  const changes: Record<string, unknown> = {};
  for (const r of todo) changes[r.name] = { old: before.get(r.key) ?? "", new: r.raw };
  return {
    changes,
    comment: `${todo.map((r) => r.raw).join(", ")} would be installed`,
    apply: async () => {
      let res: ExecResult;
      try {
        const argv = [...pip, "install", "-q", ...indexArgs(params)];
        if (boolParam(params.upgrade, false)) argv.push("--upgrade");
        res = await run([...argv, "--", ...todo.map((r) => r.raw)], opts);
        const after = await pipList(pip, opts);
        const done: Record<string, unknown> = {};
        for (const r of todo) {
          if (after.get(r.key) !== before.get(r.key))
            done[r.name] = { old: before.get(r.key) ?? "", new: after.get(r.key) ?? "" };
        }
        const wrong = todo.filter((r) => {
          const v = after.get(r.key);
          return v === undefined || !satisfies(v, r);
        });
        if (res.retcode !== 0 || wrong.length > 0) {
          return {
            result: false,
            changes: done,
            comment:
              res.retcode !== 0
                ? failure("pip install", res)
                : `${wrong.map((r) => r.raw).join(", ")} not satisfied after install`,
          };
        }
        return { result: true, changes: done, comment: `${todo.map((r) => r.raw).join(", ")} installed` };
      } catch (err) {
        return applyFailed(errText(err));
      }
    },
  };
}

async function planInstalled(params: Params, ctx: ModuleContext): Promise<Plan> {
  try {
    const reqs = requirements(params);
    const pip = await pipArgv(optString(params.bin_env));
    const opts = pipOptions(params, ctx);
    return installPlan(pip, opts, params, reqs, await pipList(pip, opts));
  } catch (err) {
    return failed(errText(err));
  }
}

async function planRemoved(params: Params, ctx: ModuleContext): Promise<Plan> {
  try {
    const reqs = requirements(params);
    const pip = await pipArgv(optString(params.bin_env));
    const opts = pipOptions(params, ctx);
    const before = await pipList(pip, opts);
    const present = reqs.filter((r) => before.has(r.key));
    if (present.length === 0) return unchanged(`${reqs.map((r) => r.name).join(", ")} not installed`);
    const changes: Record<string, unknown> = {};
    for (const r of present) changes[r.name] = { old: before.get(r.key), new: "" };
    return {
      changes,
      comment: `${present.map((r) => r.name).join(", ")} would be removed`,
      apply: async () => {
        const res = await run([...pip, "uninstall", "-y", "-q", "--", ...present.map((r) => r.name)], opts);
        if (res.retcode !== 0) return applyFailed(failure("pip uninstall", res));
        return { result: true, changes, comment: `${present.map((r) => r.name).join(", ")} removed` };
      },
    };
  } catch (err) {
    return failed(errText(err));
  }
}

const COMMON: Record<string, ParamSpec> = {
  pkgs: { type: "list", doc: "Several requirements at once (same forms as name)." },
  bin_env: { type: "string", doc: "A pip executable or a virtualenv directory; default: python3 -m pip." },
  user: { type: "string", doc: "Run pip as this user." },
};

const installed: StateFunction = {
  doc:
    "Makes sure a Python package is installed and satisfies its version specifiers " +
    "(name, name==1.2, name>=1,<2). Runs pip non-interactively.",
  primary: "name",
  params: {
    name: {
      type: "string",
      doc: "A requirement: package name with optional version specifiers.",
      aliases: ["pkg"],
    },
    ...COMMON,
    index_url: { type: "string", doc: "Base URL of the package index." },
    extra_index_url: { type: ["string", "list"], doc: "Additional package indexes." },
    find_links: { type: ["string", "list"], doc: "Local directories or URLs with wheels/sdists." },
    no_index: { type: "boolean", doc: "Do not use the package index (only find_links).", default: false },
    upgrade: { type: "boolean", doc: "Pass --upgrade when installing.", default: false },
  },
  plan: planInstalled,
};

const removed: StateFunction = {
  doc: "Makes sure a Python package is not installed.",
  primary: "name",
  params: {
    name: { type: "string", doc: "The package name.", aliases: ["pkg"] },
    ...COMMON,
  },
  plan: planRemoved,
};

export const family: ModuleFamily = {
  name: "pip",
  doc: "Python packages via pip, system-wide or in a virtualenv.",
  states: withRevertDocs(
    { installed, removed },
    {
      installed: "cannot be reverted: previous Python package versions are not kept yet.",
      removed: "cannot be reverted: previous Python package versions are not kept yet.",
    },
  ),
};
