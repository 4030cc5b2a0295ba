/**
 * The `cmd` family: running commands and scripts.
 *
 * A command is opaque: plan() cannot know whether it would change anything, so a plan says "would
 * run" (unless `creates` says the work is already done) and apply() runs it and reports its output.
 */
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { homedir } from "node:os";
import { isAbsolute, resolve, sep } from "node:path";
import { errText } from "../util/errors.js";
import { type ExecOptions, type ExecResult, run } from "../util/exec.js";
import { statOrUndefined } from "../util/files.js";
import { applyFailed, failed, listParam, StateError, unchanged, withRevertDocs } from "./support.js";
import type {
  ExecFunction,
  ModuleContext,
  ModuleFamily,
  ParamSpec,
  Params,
  Plan,
  StateFunction,
} from "./types.js";

/** `env` may be a map or Salt's list of one-key maps. */
function envParam(value: unknown): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  const maps = Array.isArray(value) ? value : [value];
  const env: Record<string, string> = {};
  for (const m of maps) {
    if (!m || typeof m !== "object" || Array.isArray(m)) {
      throw new StateError("env must be a map of NAME: value (or a list of such maps)");
    }
    for (const [k, v] of Object.entries(m as Record<string, unknown>)) {
      env[k] = v === null || v === undefined ? "" : String(v);
    }
  }
  return env;
}

function retcodes(value: unknown): number[] {
  const codes = listParam(value).map(Number);
  for (const c of codes) {
    if (!Number.isInteger(c)) throw new StateError("success_retcodes must be a list of integers");
  }
  return codes.length > 0 ? codes : [0];
}

/**
 * Salt runs commands in the home directory of the user they run as; service users often have none
 * (nobody's is /nonexistent), so a missing home falls back to "/" rather than failing.
 */
async function defaultCwd(runas: string | undefined): Promise<string> {
  let home = homedir();
  if (runas) {
    const res = await run(["getent", "passwd", runas]);
    if (res.retcode !== 0) throw new StateError(`runas: user "${runas}" does not exist`);
    home = res.stdout.trim().split(":")[5] ?? "";
  }
  if (!home) return "/";
  const st = await statOrUndefined(home).catch(() => undefined);
  return st?.isDirectory() ? home : "/";
}

async function execOptions(params: Params, ctx: ModuleContext | undefined): Promise<ExecOptions> {
  const runas = params.runas === undefined || params.runas === null ? undefined : String(params.runas);
  const opts: ExecOptions = {
    cwd: params.cwd === undefined || params.cwd === null ? await defaultCwd(runas) : String(params.cwd),
  };
  const env = envParam(params.env);
  if (env) opts.env = env;
  if (runas) opts.runas = runas;
  if (params.shell !== undefined && params.shell !== null) opts.shell = String(params.shell);
  if (params.stdin !== undefined && params.stdin !== null) opts.input = String(params.stdin);
  if (params.timeout !== undefined && params.timeout !== null) {
    const t = Number(params.timeout);
    if (!(t > 0)) throw new StateError("timeout must be a positive number of seconds");
    opts.timeoutMs = Math.round(t * 1000);
  }
  if (ctx?.signal) opts.signal = ctx.signal;
  return opts;
}

/** Salt skips a command when every path in `creates` exists. */
async function createsSatisfied(params: Params): Promise<string | undefined> {
  const paths = listParam(params.creates);
  if (paths.length === 0) return undefined;
  for (const p of paths) {
    let st: Awaited<ReturnType<typeof statOrUndefined>>;
    try {
      st = await statOrUndefined(p);
    } catch (err) {
      throw new StateError(`Cannot check creates path ${p}: ${errText(err)}`);
    }
    if (!st) return undefined;
  }
  return paths.length === 1 ? `${paths[0]} exists` : `All files in creates exist`;
}

function outcome(label: string, res: ExecResult, ok: readonly number[], timeout?: number) {
  const changes = { retcode: res.retcode, stdout: res.stdout.trimEnd(), stderr: res.stderr.trimEnd() };
  if (res.killed === "timeout") {
    return { result: false, changes, comment: `${label} timed out after ${timeout}s` };
  }
  if (res.killed === "canceled") return { result: false, changes, comment: `${label} was canceled` };
  if (res.signal) {
    return {
      result: false,
      changes: { ...changes, signal: res.signal },
      comment: `${label} was killed by ${res.signal}`,
    };
  }
  if (!ok.includes(res.retcode)) {
    return { result: false, changes, comment: `${label} failed with exit code ${res.retcode}` };
  }
  return { result: true, changes, comment: `${label} ran successfully` };
}

type Runner = (params: Params, opts: ExecOptions, ctx: ModuleContext) => Promise<ExecResult>;

const runCommand: Runner = (params, opts) => run(String(params.name), opts);

/** The shared plan of cmd.run, cmd.script and cmd.wait's watch. */
async function planRun(
  params: Params,
  ctx: ModuleContext,
  label: string,
  planned: Record<string, unknown>,
  runner: Runner,
): Promise<Plan> {
  try {
    const done = await createsSatisfied(params);
    if (done) return unchanged(`${done}; ${label} not run`);
    const ok = retcodes(params.success_retcodes);
    const opts = await execOptions(params, ctx);
    if (opts.cwd) {
      const st = await statOrUndefined(opts.cwd).catch(() => undefined);
      if (!st?.isDirectory()) return failed(`cwd ${opts.cwd} is not a directory`);
    }
    return {
      changes: planned,
      comment: `${label} would run`,
      apply: async () => {
        try {
          return outcome(label, await runner(params, opts, ctx), ok, Number(params.timeout) || undefined);
        } catch (err) {
          return applyFailed(`${label} could not start: ${errText(err)}`);
        }
      },
    };
  } catch (err) {
    return failed(errText(err));
  }
}

const COMMON: Record<string, ParamSpec> = {
  cwd: { type: "string", doc: "Working directory (default: the home directory of the user it runs as)." },
  env: {
    type: ["map", "list"],
    doc: "Extra environment variables: a map, or Salt's list of one-key maps.",
  },
  runas: { type: "string", doc: "Run as this user (we must be root)." },
  shell: { type: "string", doc: "Shell that interprets the command.", default: "/bin/sh" },
  stdin: { type: "string", doc: "Text written to the command's standard input." },
  timeout: { type: "number", doc: "Kill the command after this many seconds; the state then fails." },
  success_retcodes: {
    type: ["list", "integer"],
    items: "integer",
    doc: "Exit codes that count as success (default [0]).",
  },
  creates: {
    type: ["string", "list"],
    doc: "Skip the command when this path (or every path in the list) exists.",
  },
};

const runParams: Record<string, ParamSpec> = {
  name: {
    type: "string",
    doc: "The command line, run by the shell.",
    required: true,
    aliases: ["command", "cmd"],
  },
  ...COMMON,
};

const cmdRun: StateFunction = {
  doc:
    "Runs a command. Reports retcode, stdout and stderr as changes; fails on an exit code not in " +
    "success_retcodes. Guard it with creates, onlyif or unless to keep runs idempotent.",
  primary: "name",
  params: runParams,
  plan: (params, ctx) =>
    planRun(params, ctx, `Command "${String(params.name)}"`, { command: params.name }, runCommand),
  watch: (params, ctx) =>
    planRun(params, ctx, `Command "${String(params.name)}"`, { command: params.name }, runCommand),
};

const cmdWait: StateFunction = {
  doc: "Like cmd.run, but runs only when a state it watches (watch/listen) reports changes.",
  primary: "name",
  params: runParams,
  plan: async (params) => ({
    changes: {},
    comment: `Command "${String(params.name)}" runs only when a watched state changes`,
  }),
  watch: (params, ctx) =>
    planRun(params, ctx, `Command "${String(params.name)}"`, { command: params.name }, runCommand),
};

/** Splits an argument string like a POSIX shell would for words and quotes (no expansion). */
export function splitArgs(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < text.length) cur += text[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < text.length) {
      cur += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw new StateError(`Unterminated ${quote} quote in args`);
  if (inWord) out.push(cur);
  return out;
}

function scriptArgs(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value.map((v) => String(v));
  return splitArgs(String(value));
}

function scriptPath(params: Params, ctx: ModuleContext): string {
  const src = String(params.source ?? params.name);
  let rel: string;
  if (src.startsWith("salt://")) rel = src.slice("salt://".length);
  else if (isAbsolute(src)) return src;
  else rel = src;
  if (!ctx.statesDir) throw new StateError(`Script ${src} is relative but no states directory is known`);
  const root = resolve(ctx.statesDir);
  const full = resolve(root, rel);
  if (!full.startsWith(root + sep)) throw new StateError(`Script ${src} escapes the states tree`);
  return full;
}

/** Runs a script: directly when executable (its #! line decides), else through the shell. */
async function runScript(path: string, params: Params, opts: ExecOptions): Promise<ExecResult> {
  const args = scriptArgs(params.args);
  const explicitShell = params.shell !== undefined && params.shell !== null && params.shell !== "/bin/sh";
  let executable = false;
  if (!explicitShell) {
    executable = await access(path, constants.X_OK).then(
      () => true,
      () => false,
    );
  }
  const argv = executable ? [path, ...args] : [opts.shell ?? "/bin/sh", path, ...args];
  return run(argv, opts);
}

const scriptParams: Record<string, ParamSpec> = {
  name: {
    type: "string",
    doc: "The script: absolute path, path relative to the states tree, or salt://path.",
    required: true,
  },
  source: { type: "string", doc: "Script location when `name` is only a label (same forms as name)." },
  args: { type: ["string", "list"], doc: "Arguments: a list, or a string split like a shell would." },
  ...COMMON,
};

const cmdScript: StateFunction = {
  doc: "Runs a local script (from the states tree or an absolute path) with arguments; reports like cmd.run.",
  primary: "name",
  params: scriptParams,
  plan: async (params, ctx) => {
    let path: string;
    let args: string[];
    try {
      path = scriptPath(params, ctx);
      args = scriptArgs(params.args);
      const st = await statOrUndefined(path);
      if (!st) return failed(`Script ${path} does not exist`);
      if (!st.isFile()) return failed(`Script ${path} is not a regular file`);
    } catch (err) {
      return failed(errText(err));
    }
    return planRun(params, ctx, `Script "${path}"`, { script: path, args }, (p, opts) =>
      runScript(path, p, opts),
    );
  },
};

// ---------------------------------------------------------------------------------------------
// Execution functions: `zester '*' cmd.run 'uptime'`.

const RETCODE_PARAMS: Record<string, ParamSpec> = {
  ignore_retcode: {
    type: "boolean",
    doc: "Do not fail the call when the command exits non-zero.",
    default: false,
  },
  success_retcodes: {
    type: ["list", "integer"],
    items: "integer",
    doc: "Exit codes that count as success besides 0.",
  },
};

const execParams: Record<string, ParamSpec> = {
  cmd: {
    type: "string",
    doc: "The command line, run by the shell.",
    required: true,
    aliases: ["name", "command"],
  },
  cwd: COMMON.cwd!,
  env: COMMON.env!,
  runas: COMMON.runas!,
  shell: COMMON.shell!,
  stdin: COMMON.stdin!,
  timeout: COMMON.timeout!,
};

const failingParams = { ...execParams, ...RETCODE_PARAMS };

async function execRun(params: Params, ctx: ModuleContext, merge = false): Promise<ExecResult> {
  const opts = await execOptions(params, ctx);
  if (merge) opts.mergeStderr = true;
  return run(String(params.cmd), opts);
}

/**
 * Salt's retcode rule for execution functions: a code outside 0 and success_retcodes (or a kill)
 * fails the call unless ignore_retcode; the value is still returned.
 */
function reportRetcode(res: ExecResult, params: Params, ctx: ModuleContext): void {
  if (params.ignore_retcode === true) return;
  if (res.signal || res.killed) {
    ctx.retcode?.(res.retcode === 0 ? 1 : res.retcode);
    return;
  }
  const ok = params.success_retcodes === undefined ? [0] : [0, ...retcodes(params.success_retcodes)];
  if (!ok.includes(res.retcode)) ctx.retcode?.(res.retcode);
}

function allOf(res: ExecResult) {
  const out: Record<string, unknown> = {
    retcode: res.retcode,
    stdout: res.stdout.trimEnd(),
    stderr: res.stderr.trimEnd(),
  };
  if (res.signal) out.signal = res.signal;
  if (res.killed) out.killed = res.killed;
  return out;
}

/** The executable `name` resolves to on PATH (or as a path), as `which` finds it. */
async function which(name: string): Promise<string | undefined> {
  const dirs = name.includes("/") ? [""] : (process.env.PATH ?? "").split(":").filter(Boolean);
  for (const dir of dirs) {
    const full = dir === "" ? name : `${dir}/${name}`;
    try {
      if (!(await statOrUndefined(full))?.isFile()) continue;
      await access(full, constants.X_OK);
      return full;
    } catch (err) {
      // Not a directory on PATH, or not executable for us: keep looking, as `which` does.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOTDIR" && code !== "EACCES") throw err;
    }
  }
  return undefined;
}

/** cmd.run and cmd.shell: stdout and stderr merged in the order written, as Salt's redirect_stderr. */
const runMerged: ExecFunction = {
  doc:
    "Runs a command and returns its output, stdout and stderr merged in order (trailing newline " +
    "removed). A non-zero exit fails the call (exit 2) unless ignore_retcode or success_retcodes.",
  params: failingParams,
  positional: ["cmd"],
  run: async (params, ctx) => {
    const res = await execRun(params, ctx, true);
    reportRetcode(res, params, ctx);
    return res.stdout.trimEnd();
  },
};

const exec: Record<string, ExecFunction> = {
  has_exec: {
    doc: "True when the executable is found on PATH (or at the given path) and may be run.",
    params: { cmd: { type: "string", required: true, doc: "Program name or path." } },
    positional: ["cmd"],
    readOnly: true,
    run: async (params) => (await which(String(params.cmd))) !== undefined,
  },
  which: {
    doc: "The full path of an executable found on PATH, or None.",
    params: { cmd: { type: "string", required: true, doc: "Program name." } },
    positional: ["cmd"],
    readOnly: true,
    run: async (params) => (await which(String(params.cmd))) ?? null,
  },
  run: runMerged,
  shell: runMerged,
  run_all: {
    doc:
      "Runs a command and returns {retcode, stdout, stderr}, the streams kept apart. A non-zero " +
      "exit fails the call unless ignore_retcode or success_retcodes.",
    params: failingParams,
    positional: ["cmd"],
    run: async (params, ctx) => {
      const res = await execRun(params, ctx);
      reportRetcode(res, params, ctx);
      return allOf(res);
    },
  },
  retcode: {
    doc: "Runs a command and returns its exit code (any code is an answer, not a failure).",
    params: execParams,
    positional: ["cmd"],
    run: async (params, ctx) => (await execRun(params, ctx)).retcode,
  },
  script: {
    doc:
      "Runs a local script with arguments and returns {retcode, stdout, stderr}. A non-zero exit " +
      "fails the call unless ignore_retcode or success_retcodes.",
    params: {
      source: {
        type: "string",
        doc: "The script: absolute path, path relative to the states tree, or salt://path.",
        required: true,
        aliases: ["name"],
      },
      args: scriptParams.args!,
      cwd: COMMON.cwd!,
      env: COMMON.env!,
      runas: COMMON.runas!,
      shell: COMMON.shell!,
      stdin: COMMON.stdin!,
      timeout: COMMON.timeout!,
      ...RETCODE_PARAMS,
    },
    positional: ["source", "args"],
    run: async (params, ctx) => {
      const path = scriptPath(params, ctx);
      const res = await runScript(path, params, await execOptions(params, ctx));
      reportRetcode(res, params, ctx);
      return allOf(res);
    },
  },
};

const CMD_REVERT =
  "cannot be reverted: a command's effects are unknown (undo them with a state that says what to restore).";

export const family: ModuleFamily = {
  name: "cmd",
  doc: "Run commands and scripts.",
  states: withRevertDocs(
    { run: cmdRun, wait: cmdWait, script: cmdScript },
    {
      run: CMD_REVERT,
      wait: CMD_REVERT,
      script:
        "cannot be reverted: a script's effects are unknown (undo them with a state that says what to restore).",
    },
  ),
  exec,
};
