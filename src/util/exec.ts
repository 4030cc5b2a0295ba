import { spawn } from "node:child_process";

export interface ExecOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Run as this user (via runuser/su when we are root). */
  runas?: string;
  /** Shell for string commands; default /bin/sh. */
  shell?: string;
  /** Data written to stdin; stdin is closed either way so nothing can wait on a prompt. */
  input?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Send stderr into the stdout pipe, so both arrive interleaved in the order written (stderr is then ""). */
  mergeStderr?: boolean;
}

export interface ExecResult {
  retcode: number;
  stdout: string;
  stderr: string;
  /** Set when the process was killed by a signal. */
  signal?: string;
  /** "timeout" or "canceled" when we killed it. */
  killed?: string;
}

/**
 * Runs a command and collects its output. A string is run by the shell; an array is exec'd
 * directly (no quoting issues). A non-zero exit is a result, not an exception; only failing to
 * start at all (ENOENT for the binary, bad cwd) rejects.
 */
export function run(command: string | readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  let file: string;
  let args: string[];
  if (typeof command === "string") {
    file = opts.shell ?? "/bin/sh";
    // One pipe for both streams keeps their order; a redirect in the shell is the portable way.
    args = ["-c", opts.mergeStderr ? `exec 2>&1; ${command}` : command];
  } else {
    if (command.length === 0) return Promise.reject(new Error("empty command"));
    if (opts.mergeStderr) {
      file = "/bin/sh";
      args = ["-c", 'exec 2>&1; exec "$0" "$@"', ...command];
    } else {
      file = command[0]!;
      args = command.slice(1);
    }
  }
  if (opts.runas !== undefined) {
    args = ["-u", opts.runas, "--", file, ...args];
    file = "runuser";
  }
  return new Promise((resolve, reject) => {
    // Own process group, so a timeout or cancel kills the whole tree (a shell's children too),
    // not just the shell while its children keep our pipes open.
    const child = spawn(file, args, {
      cwd: opts.cwd,
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let killedBy: string | undefined;
    const killTree = (why: string) => {
      if (killedBy !== undefined || child.pid === undefined) return;
      killedBy = why;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    };
    const timer =
      opts.timeoutMs !== undefined ? setTimeout(() => killTree("timeout"), opts.timeoutMs) : undefined;
    const onAbort = () => killTree("canceled");
    if (opts.signal?.aborted) onAbort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
    let startError: Error | undefined;
    child.on("error", (e) => {
      startError = e;
    });
    child.on("close", (code, sig) => {
      if (timer) clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      if (startError) {
        reject(startError);
        return;
      }
      const res: ExecResult = {
        retcode: code ?? 128,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      };
      if (sig) res.signal = sig;
      if (killedBy !== undefined) res.killed = killedBy;
      resolve(res);
    });
  });
}
