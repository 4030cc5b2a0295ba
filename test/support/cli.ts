/**
 * Runs a built entry point the way an operator would, but without blocking this process: tests
 * that keep a master or peels in-process need the event loop free while the CLI talks to them.
 */
import { type ExecFileOptions, execFile } from "node:child_process";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall time from start to exit. */
  ms: number;
}

export interface RunCliOptions {
  cwd?: string;
  /** Added to this process's environment; without it the child inherits it unchanged. */
  env?: NodeJS.ProcessEnv;
  /** Kill the child after this many ms; none by default. */
  timeout?: number;
  /** Bytes of stdout or stderr before the child is killed; Node's default (1 MiB) without it. */
  maxBuffer?: number;
  /** Written to the child's stdin, which is then closed; without it stdin stays an open pipe. */
  stdin?: string;
  /** The code reported when the child ends without one (timeout, signal, maxBuffer); default 1. */
  noExitCode?: number;
}

/** Runs `node bin ...args` and resolves (never rejects) with its exit code and output. */
export function runCli(bin: string, args: readonly string[], opts: RunCliOptions = {}): Promise<CliResult> {
  const options: ExecFileOptions = {};
  // Only set what was asked for: execFile takes an explicit `undefined` maxBuffer as "no limit".
  if (opts.cwd !== undefined) options.cwd = opts.cwd;
  if (opts.env !== undefined) options.env = { ...process.env, ...opts.env };
  if (opts.timeout !== undefined) options.timeout = opts.timeout;
  if (opts.maxBuffer !== undefined) options.maxBuffer = opts.maxBuffer;
  const started = Date.now();
  return new Promise((done) => {
    const child = execFile(
      process.execPath,
      [bin, ...args],
      { ...options, encoding: "utf8" },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : (opts.noExitCode ?? 1)) : 0;
        done({ code, stdout, stderr, ms: Date.now() - started });
      },
    );
    if (opts.stdin !== undefined) child.stdin?.end(opts.stdin);
  });
}

/**
 * For the fleet CLI as an operator runs it against a test server: admin creds from its auth dir,
 * a minute at most, and 99 for "no exit code" so a killed CLI never passes for an exit code.
 */
export function fleetCliOptions(nats: { url: string; authDir: string }, cwd: string): RunCliOptions {
  return {
    cwd,
    env: { ZESTER_NATS_URL: nats.url, ZESTER_AUTH_DIR: nats.authDir, NO_COLOR: "1" },
    timeout: 60_000,
    noExitCode: 99,
  };
}

/** The CLI's stdout as JSON; otherwise a failure that shows all it printed, and `context()` after. */
export function cliJson<T>(r: CliResult, context?: () => string): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    const extra = context ? `\n${context()}` : "";
    throw new Error(`not JSON (exit ${r.code}):\n${r.stdout}\nstderr:\n${r.stderr}${extra}`);
  }
}

/**
 * Runs the CLI's `main()` in this process with stdout and stderr captured: for commands that need
 * no separate process (argument checks, offline tooling, admin requests), where spawning one would
 * only cost time.
 */
export async function runMain(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const { main } = await import("../../src/cli/main.js");
  let out = "";
  let err = "";
  const { write: stdout } = process.stdout;
  const { write: stderr } = process.stderr;
  process.stdout.write = ((s: string | Uint8Array) => {
    out += String(s);
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => {
    err += String(s);
    return true;
  }) as typeof process.stderr.write;
  try {
    return { code: await main(argv), out, err };
  } finally {
    process.stdout.write = stdout;
    process.stderr.write = stderr;
  }
}
