/**
 * The `git` family: working copies that follow a remote.
 *
 * plan() only reads: the local HEAD, the worktree status and the remote's commit (`git ls-remote`);
 * apply() clones, or fetches and moves the branch (fast-forward, or a hard reset with force_reset).
 * Local modifications are never thrown away unless force_reset says so.
 */
import { readdir } from "node:fs/promises";
import { resolve } from "node:path";
import { errText } from "../util/errors.js";
import { type ExecOptions, type ExecResult, run } from "../util/exec.js";
import { statOrUndefined } from "../util/files.js";
import { pathParam } from "./footprints.js";
import {
  applyFailed,
  boolParam,
  failed,
  failure,
  optString,
  StateError,
  unchanged,
  withRevertDocs,
} from "./support.js";
import type {
  ApplyOutcome,
  ModuleContext,
  ModuleFamily,
  ParamSpec,
  Params,
  Plan,
  StateFunction,
} from "./types.js";

const SHA = /^[0-9a-f]{40}$/;

interface GitCtx {
  opts: ExecOptions;
  target: string;
}

/**
 * Every git call: never prompt for credentials, and trust the target even when another user owns
 * it (root managing a user's checkout), which git otherwise refuses.
 */
function git(g: GitCtx, args: readonly string[], cwd = true): Promise<ExecResult> {
  const argv = ["git", "-c", `safe.directory=${g.target}`];
  if (cwd) argv.push("-C", g.target);
  return run([...argv, ...args], g.opts);
}

async function gitOut(g: GitCtx, args: readonly string[], what: string, cwd = true): Promise<string> {
  const r = await git(g, args, cwd);
  if (r.retcode !== 0) throw new StateError(failure(what, r));
  return r.stdout.trim();
}

export interface RemoteRef {
  sha: string;
  /** Branch name the rev resolves to (for HEAD: the remote's default branch), if it is a branch. */
  branch?: string;
}

/** Parses `git ls-remote --symref <url> <refs...>` into the commit a rev names. */
export function parseLsRemote(text: string, rev: string): RemoteRef | undefined {
  const refs = new Map<string, string>();
  let headBranch: string | undefined;
  for (const line of text.split("\n")) {
    const sym = /^ref: refs\/heads\/(\S+)\s+HEAD$/.exec(line);
    if (sym) {
      headBranch = sym[1];
      continue;
    }
    const m = /^([0-9a-f]{40})\s+(\S+)$/.exec(line);
    if (m) refs.set(m[2]!, m[1]!);
  }
  if (rev === "HEAD") {
    const sha = refs.get("HEAD");
    if (!sha) return undefined;
    return headBranch ? { sha, branch: headBranch } : { sha };
  }
  const branch = refs.get(`refs/heads/${rev}`);
  if (branch) return { sha: branch, branch: rev };
  // Annotated tags: the peeled ^{} line names the commit.
  const tag = refs.get(`refs/tags/${rev}^{}`) ?? refs.get(`refs/tags/${rev}`);
  if (tag) return { sha: tag };
  return undefined;
}

async function remoteRef(g: GitCtx, url: string, rev: string): Promise<RemoteRef> {
  if (SHA.test(rev)) return { sha: rev };
  const args = ["ls-remote", "--symref", "--", url];
  if (rev === "HEAD") args.push("HEAD");
  else args.push(`refs/heads/${rev}`, `refs/tags/${rev}`, `refs/tags/${rev}^{}`);
  const out = await gitOut(g, args, `git ls-remote ${url}`, false);
  const ref = parseLsRemote(out, rev);
  if (!ref) throw new StateError(`Revision "${rev}" not found in ${url}`);
  return ref;
}

interface Checkout {
  head?: string;
  branch?: string;
  url?: string;
  dirty: string[];
}

async function isEmptyDir(path: string): Promise<boolean> {
  return (await readdir(path)).length === 0;
}

/** Reads the checkout at target; undefined when there is nothing there (or an empty directory). */
async function readCheckout(g: GitCtx, remote: string): Promise<Checkout | undefined> {
  const st = await statOrUndefined(g.target);
  if (!st) return undefined;
  if (!st.isDirectory()) throw new StateError(`${g.target} exists and is not a directory`);
  if (await isEmptyDir(g.target)) return undefined;
  const top = await git(g, ["rev-parse", "--show-toplevel"]);
  if (top.retcode !== 0 || resolve(top.stdout.trim()) !== resolve(g.target)) {
    throw new StateError(`${g.target} exists, is not empty and is not a git checkout`);
  }
  const head = await git(g, ["rev-parse", "--verify", "-q", "HEAD"]);
  const branch = await git(g, ["symbolic-ref", "-q", "--short", "HEAD"]);
  const url = await git(g, ["config", "--get", `remote.${remote}.url`]);
  const status = await gitOut(g, ["status", "--porcelain", "--untracked-files=no"], "git status");
  const c: Checkout = { dirty: status ? status.split("\n") : [] };
  if (head.retcode === 0) c.head = head.stdout.trim();
  if (branch.retcode === 0) c.branch = branch.stdout.trim();
  if (url.retcode === 0) c.url = url.stdout.trim();
  return c;
}

function gitCtx(params: Params, ctx: ModuleContext): GitCtx {
  const target = optString(params.target);
  if (!target) throw new StateError("target is required");
  if (!target.startsWith("/")) throw new StateError("target must be an absolute path");
  const opts: ExecOptions = {
    env: { GIT_TERMINAL_PROMPT: "0", GIT_ASKPASS: "/bin/true", SSH_ASKPASS: "/bin/true", LC_ALL: "C" },
    timeoutMs: 600_000,
  };
  const user = optString(params.user);
  if (user) opts.runas = user;
  const identity = optString(params.identity);
  if (identity) opts.env!.GIT_SSH_COMMAND = `ssh -i '${identity.replace(/'/g, "'\\''")}' -o BatchMode=yes`;
  if (ctx.signal) opts.signal = ctx.signal;
  return { opts, target: resolve(target) };
}

function depthArgs(params: Params): string[] {
  const d = params.depth;
  if (d === undefined || d === null) return [];
  const n = Number(d);
  if (!Number.isInteger(n) || n < 1) throw new StateError("depth must be a positive integer");
  return ["--depth", String(n)];
}

function short(sha: string | undefined): string {
  return sha ? sha.slice(0, 10) : "(none)";
}

async function clone(
  g: GitCtx,
  params: Params,
  url: string,
  ref: RemoteRef | undefined,
  rev: string,
): Promise<ApplyOutcome> {
  const remote = String(params.remote ?? "origin");
  const args = ["clone", "--origin", remote, ...depthArgs(params)];
  if (ref?.branch && rev !== "HEAD") args.push("--branch", ref.branch);
  else if (!ref?.branch && rev !== "HEAD" && !SHA.test(rev)) args.push("--branch", rev);
  args.push("--", url, g.target);
  const r = await git(g, args, false);
  if (r.retcode !== 0) return applyFailed(failure(`git clone ${url}`, r));
  if (ref && !ref.branch && SHA.test(rev)) {
    const co = await git(g, ["checkout", "-q", "--detach", rev]);
    if (co.retcode !== 0) return applyFailed(failure(`git checkout ${rev}`, co));
  }
  const head = await gitOut(g, ["rev-parse", "HEAD"], "git rev-parse");
  return {
    result: true,
    changes: { new: url, revision: { old: null, new: head } },
    comment: `Repository ${url} cloned to ${g.target} at ${short(head)}`,
  };
}

async function planLatest(params: Params, ctx: ModuleContext): Promise<Plan> {
  let g: GitCtx;
  let checkout: Checkout | undefined;
  let ref: RemoteRef;
  const url = String(params.name);
  const rev = optString(params.rev) ?? optString(params.branch) ?? "HEAD";
  const remote = String(params.remote ?? "origin");
  const forceReset = boolParam(params.force_reset, false);
  try {
    g = gitCtx(params, ctx);
    depthArgs(params);
    checkout = await readCheckout(g, remote);
    ref = await remoteRef(g, url, rev);
  } catch (err) {
    return failed(errText(err));
  }
  if (!checkout) {
    return {
      changes: { new: url, revision: { old: null, new: ref.sha } },
      comment: `Repository ${url} would be cloned to ${g.target} (${short(ref.sha)})`,
      apply: () => clone(g, params, url, ref, rev),
    };
  }
  const changes: Record<string, unknown> = {};
  const notes: string[] = [];
  const urlChange = checkout.url !== url;
  if (urlChange) {
    changes.remote_url = { old: checkout.url ?? null, new: url };
    notes.push(`remote ${remote} would be set to ${url}`);
  }
  const wantBranch = ref.branch;
  const branchChange = wantBranch !== undefined && checkout.branch !== wantBranch;
  const moves = checkout.head !== ref.sha;
  const dirty = checkout.dirty.length > 0;
  if (moves || branchChange) {
    if (dirty && !forceReset) {
      return failed(
        `${g.target} has local modifications (${checkout.dirty.slice(0, 5).join("; ")}); ` +
          "refusing to update: commit or discard them, or set force_reset: true",
      );
    }
    changes.revision = { old: checkout.head ?? null, new: ref.sha };
    if (branchChange) changes.branch = { old: checkout.branch ?? null, new: wantBranch };
    notes.push(`would be updated from ${short(checkout.head)} to ${short(ref.sha)}`);
  } else if (dirty) {
    if (forceReset) {
      changes.forced_reset = true;
      notes.push("local modifications would be discarded");
    } else {
      notes.push(`(local modifications present: ${checkout.dirty.length} file(s))`);
    }
  }
  if (Object.keys(changes).length === 0) {
    return {
      changes: {},
      comment: `Repository ${g.target} is up to date at ${short(ref.sha)} ${notes.join(" ")}`.trim(),
    };
  }
  const head = checkout.head;
  return {
    changes,
    comment: `Repository ${g.target}: ${notes.join("; ")}`,
    apply: async () => {
      try {
        if (urlChange) {
          const set =
            checkout.url === undefined ? ["remote", "add", remote, url] : ["remote", "set-url", remote, url];
          await gitOut(g, set, "git remote");
        }
        if (moves || branchChange || changes.forced_reset) {
          const fetchArgs = ["fetch", "-q", ...depthArgs(params), remote];
          if (wantBranch) fetchArgs.push(`+refs/heads/${wantBranch}:refs/remotes/${remote}/${wantBranch}`);
          await gitOut(g, fetchArgs, "git fetch");
          // A tag or a bare commit may not come with the branch refspec.
          if ((await git(g, ["cat-file", "-e", `${ref.sha}^{commit}`])).retcode !== 0) {
            await gitOut(g, ["fetch", "-q", "--tags", remote], "git fetch --tags");
          }
          // Only the local branch being moved can lose commits; switching away from another branch
          // or detaching at a tag leaves that branch (and its commits) alone.
          const local = wantBranch
            ? await git(g, ["rev-parse", "--verify", "-q", `refs/heads/${wantBranch}`])
            : undefined;
          const localSha = local?.retcode === 0 ? local.stdout.trim() : undefined;
          const ff =
            localSha === undefined ||
            (await git(g, ["merge-base", "--is-ancestor", localSha, ref.sha])).retcode === 0;
          if (!ff && !forceReset) {
            return {
              result: false,
              changes: {},
              comment: `${g.target} has local commits not in ${url} (${wantBranch} at ${short(localSha)} is not an ancestor of ${short(ref.sha)}); set force_reset: true to discard them`,
            };
          }
          if (wantBranch && checkout.branch !== wantBranch) {
            await gitOut(
              g,
              ["checkout", "-q", ...(forceReset ? ["-f"] : []), "-B", wantBranch, ref.sha],
              "git checkout",
            );
          } else if (!wantBranch) {
            await gitOut(
              g,
              ["checkout", "-q", ...(forceReset ? ["-f"] : []), "--detach", ref.sha],
              "git checkout",
            );
          }
          if (forceReset) await gitOut(g, ["reset", "-q", "--hard", ref.sha], "git reset --hard");
          else if (wantBranch) await gitOut(g, ["merge", "-q", "--ff-only", ref.sha], "git merge --ff-only");
          if (wantBranch) {
            await git(g, ["branch", "-q", `--set-upstream-to=${remote}/${wantBranch}`, wantBranch]);
          }
        }
        const now = await gitOut(g, ["rev-parse", "HEAD"], "git rev-parse");
        const done: Record<string, unknown> = { ...changes };
        if (done.revision) done.revision = { old: head ?? null, new: now };
        if (now !== ref.sha) {
          return {
            result: false,
            changes: done,
            comment: `${g.target} is at ${short(now)}, expected ${short(ref.sha)}`,
          };
        }
        return { result: true, changes: done, comment: `Repository ${g.target} updated to ${short(now)}` };
      } catch (err) {
        return applyFailed(errText(err));
      }
    },
  };
}

async function planCloned(params: Params, ctx: ModuleContext): Promise<Plan> {
  let g: GitCtx;
  let checkout: Checkout | undefined;
  const url = String(params.name);
  const branch = optString(params.branch);
  try {
    g = gitCtx(params, ctx);
    depthArgs(params);
    checkout = await readCheckout(g, "origin");
  } catch (err) {
    return failed(errText(err));
  }
  if (!checkout) {
    return {
      changes: { new: url },
      comment: `Repository ${url} would be cloned to ${g.target}`,
      apply: () => clone(g, params, url, undefined, branch ?? "HEAD"),
    };
  }
  if (checkout.url !== url) {
    return failed(`${g.target} is a clone of ${checkout.url ?? "(no origin)"}, not ${url}`);
  }
  if (branch && checkout.branch !== branch) {
    return {
      changes: { branch: { old: checkout.branch ?? null, new: branch } },
      comment: `Branch ${branch} would be checked out in ${g.target}`,
      apply: async () => {
        const r = await git(g, ["checkout", "-q", branch]);
        if (r.retcode !== 0) return applyFailed(failure(`git checkout ${branch}`, r));
        return { result: true, comment: `Branch ${branch} checked out in ${g.target}` };
      },
    };
  }
  return unchanged(`Repository ${url} is already cloned to ${g.target}`);
}

const REMOTE_URL: ParamSpec = {
  type: "string",
  doc: "The remote repository URL (or a local path).",
  required: true,
  aliases: ["url", "repo"],
};

const COMMON: Record<string, ParamSpec> = {
  target: { type: "string", doc: "Absolute path of the working copy.", required: true },
  user: { type: "string", doc: "Run git as this user (the checkout is then owned by them)." },
  identity: { type: "string", doc: "SSH private key to use for ssh:// and scp-style remotes." },
  depth: { type: "integer", doc: "Shallow clone/fetch with this many commits of history." },
};

const latest: StateFunction = {
  doc:
    "Makes sure target is a clone of the remote at the latest commit of rev (default: the remote's HEAD). " +
    "Updates fast-forward; local modifications or local commits fail the state unless force_reset: true.",
  primary: "name",
  footprint: (p) => ({ writes: [pathParam(p, "target") ?? "/"], reads: ["*"] }),
  params: {
    name: REMOTE_URL,
    ...COMMON,
    rev: {
      type: "string",
      doc: "Branch, tag or commit to follow (default HEAD: the remote's default branch).",
    },
    branch: { type: "string", doc: "Branch to follow when rev is not given." },
    remote: { type: "string", doc: "Name of the remote.", default: "origin" },
    force_reset: {
      type: "boolean",
      doc: "Discard local modifications and local commits (git reset --hard) to reach the remote commit.",
      default: false,
    },
  },
  plan: planLatest,
};

const cloned: StateFunction = {
  doc: "Makes sure target is a clone of the remote; never updates an existing clone (see git.latest).",
  primary: "name",
  footprint: (p) => ({ writes: [pathParam(p, "target") ?? "/"], reads: ["*"] }),
  params: {
    name: REMOTE_URL,
    ...COMMON,
    branch: { type: "string", doc: "Branch to clone and keep checked out." },
  },
  plan: planCloned,
};

export const family: ModuleFamily = {
  name: "git",
  doc: "Git working copies: clone and follow a remote branch, tag or commit.",
  states: withRevertDocs(
    { latest, cloned },
    {
      latest: "cannot be reverted: the previous checkout is not kept (pin rev to go back).",
      cloned: "cannot be reverted: the clone is not kept (remove it with file.absent).",
    },
  ),
};
