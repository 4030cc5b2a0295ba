/**
 * Paths: a regular file (content, mode, owner), a directory (mode, owner), a symlink (target,
 * owner) or "did not exist". Restoring "did not exist" removes what the run created, and the
 * parent directories it created on the way (makedirs) when they are empty again.
 */
import { createHash } from "node:crypto";
import {
  chmod,
  chown,
  lchown,
  mkdir,
  readdir,
  readFile,
  readlink,
  rm,
  rmdir,
  symlink,
  unlink,
  writeFile,
} from "node:fs/promises";
import { dirname } from "node:path";
import { unifiedDiff } from "../../modules/diff.js";
import { failed, unchanged } from "../../modules/support.js";
import type { Plan, UndoRef } from "../../modules/types.js";
import { errnoText } from "../../util/errors.js";
import { isENOENT, lstatOrUndefined, writeFileAtomic } from "../../util/files.js";
import type { Observed, PreImage } from "../record.js";
import type { ContentRef } from "../store.js";
import type { RestoreContext, RevertKind } from "./kind.js";

type FileState =
  | { type: "absent" }
  | { type: "file"; mode: string; uid: number; gid: number; sha256: string; size: number }
  | { type: "directory"; mode: string; uid: number; gid: number }
  | { type: "symlink"; target: string; uid: number; gid: number }
  | { type: "other" };

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, "0");

async function observePath(path: string): Promise<FileState> {
  const st = await lstatOrUndefined(path);
  if (!st) return { type: "absent" };
  if (st.isFile()) {
    const sha256 = createHash("sha256")
      .update(await readFile(path))
      .digest("hex");
    return { type: "file", mode: octal(st.mode), uid: st.uid, gid: st.gid, sha256, size: st.size };
  }
  if (st.isDirectory()) return { type: "directory", mode: octal(st.mode), uid: st.uid, gid: st.gid };
  if (st.isSymbolicLink()) return { type: "symlink", target: await readlink(path), uid: st.uid, gid: st.gid };
  return { type: "other" };
}

/** Ancestors of a path that do not exist, outermost first: what makedirs will create. */
async function missingParents(path: string): Promise<string[]> {
  const out: string[] = [];
  for (let d = dirname(path); d !== dirname(d); d = dirname(d)) {
    if (await lstatOrUndefined(d)) break;
    out.unshift(d);
  }
  return out;
}

function isText(buf: Buffer): boolean {
  return !buf.includes(0) && Buffer.from(buf.toString("utf8"), "utf8").equals(buf);
}

function textDiff(path: string, from: Buffer | undefined, to: Buffer | undefined): string {
  const a = from ?? Buffer.alloc(0);
  const b = to ?? Buffer.alloc(0);
  if (!isText(a) || !isText(b)) return `Binary file ${path} differs\n`;
  return unifiedDiff(
    a.toString("utf8"),
    b.toString("utf8"),
    from ? path : "/dev/null",
    to ? path : "/dev/null",
  );
}

async function readCurrent(path: string, now: FileState): Promise<Buffer | undefined> {
  return now.type === "file" ? readFile(path) : undefined;
}

async function isEmptyDir(path: string): Promise<boolean> {
  return (await readdir(path)).length === 0;
}

/** Removes the parents makedirs created, deepest first, while they are empty. */
async function removeCreatedParents(parents: readonly string[]): Promise<void> {
  for (const d of [...parents].reverse()) {
    try {
      if (!(await isEmptyDir(d))) return;
      await rmdir(d);
    } catch (err) {
      if (!isENOENT(err)) throw err;
    }
  }
}

/**
 * Atomic replacement; a file that is a mount point (a container's /etc/hosts) cannot be renamed
 * over and is rewritten in place instead.
 */
async function writeContent(path: string, content: Buffer, mode: number): Promise<void> {
  try {
    await writeFileAtomic(path, content, { mode });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EBUSY" && code !== "EXDEV") throw err;
    await writeFile(path, content);
  }
}

function metaChanges(now: FileState, pre: { mode: string; uid: number; gid: number }) {
  const out: Record<string, unknown> = {};
  if (!("mode" in now) || now.mode !== pre.mode)
    out.mode = { old: "mode" in now ? now.mode : null, new: pre.mode };
  if (!("uid" in now) || now.uid !== pre.uid) out.uid = { old: "uid" in now ? now.uid : null, new: pre.uid };
  if (!("gid" in now) || now.gid !== pre.gid) out.gid = { old: "gid" in now ? now.gid : null, new: pre.gid };
  return out;
}

async function setMeta(path: string, m: { mode: string; uid: number; gid: number }): Promise<void> {
  await chown(path, m.uid, m.gid);
  // chmod after chown: chown clears setuid/setgid bits.
  await chmod(path, Number.parseInt(m.mode, 8));
}

function change(
  changes: Record<string, unknown>,
  comment: string,
  apply: () => Promise<void>,
  diff?: string,
): Plan {
  const plan: Plan = {
    changes,
    comment,
    apply: async () => {
      await apply();
      return undefined;
    },
  };
  if (diff) plan.diff = diff;
  return plan;
}

async function restorePath(
  path: string,
  pre: PreImage,
  nowObs: Observed,
  ctx: RestoreContext,
): Promise<Plan> {
  const want = pre.state as FileState;
  const now = nowObs as FileState;
  const data = (pre.data ?? {}) as { content?: ContentRef; parents?: string[] };
  switch (want.type) {
    case "absent": {
      if (now.type === "absent") return unchanged(`${path} does not exist, as before the run`);
      if (now.type === "directory" && !(await isEmptyDir(path)) && !ctx.force)
        return failed(
          `${path} did not exist before the run and is now a directory that is not empty (force=true removes it)`,
        );
      const old = await readCurrent(path, now);
      return change(
        { removed: path },
        `${path} did not exist before the run: removed`,
        async () => {
          if (now.type === "directory") await rm(path, { recursive: true });
          else await unlink(path);
          await removeCreatedParents(data.parents ?? []);
        },
        now.type === "file" ? textDiff(path, old, undefined) : undefined,
      );
    }
    case "file": {
      if (now.type === "directory") return failed(`${path} was a file before the run and is now a directory`);
      if (!data.content) return failed(`the run kept no content for ${path}`);
      let content: Buffer;
      try {
        content = await ctx.store.content(data.content);
      } catch (err) {
        return failed(`cannot restore ${path}: ${errnoText(err)}`);
      }
      const old = await readCurrent(path, now);
      const changes: Record<string, unknown> = {};
      const sameContent = now.type === "file" && now.sha256 === want.sha256;
      if (!sameContent)
        changes.content = now.type === "absent" ? "restored (it had been removed)" : "restored";
      Object.assign(changes, metaChanges(now, want));
      return change(
        changes,
        `${path} restored to its content and metadata before the run`,
        async () => {
          if (now.type === "symlink" || now.type === "other") await unlink(path);
          if (!sameContent) await writeContent(path, content, Number.parseInt(want.mode, 8));
          await setMeta(path, want);
        },
        sameContent ? undefined : textDiff(path, old, content),
      );
    }
    case "directory": {
      if (now.type !== "absent" && now.type !== "directory")
        return failed(`${path} was a directory before the run and is now a ${now.type}`);
      const changes: Record<string, unknown> = now.type === "absent" ? { directory: "recreated" } : {};
      Object.assign(changes, metaChanges(now, want));
      return change(changes, `${path} restored to its mode and owner before the run`, async () => {
        if (now.type === "absent") await mkdir(path, { recursive: true });
        await setMeta(path, want);
      });
    }
    case "symlink": {
      if (now.type === "directory")
        return failed(`${path} was a symlink before the run and is now a directory`);
      return change(
        { symlink: { old: now.type === "symlink" ? now.target : now.type, new: want.target } },
        `${path} restored as a symlink to ${want.target}`,
        async () => {
          if (now.type !== "absent") await unlink(path);
          await symlink(want.target, path);
          await lchown(path, want.uid, want.gid);
        },
      );
    }
    case "other":
      return failed(`${path} was a special file (device, fifo or socket) before the run; it is not restored`);
  }
}

export const fileKind: RevertKind = {
  observe: (ref: UndoRef) => observePath(ref.key) as Promise<Observed>,
  async capture(ref, store): Promise<PreImage> {
    const state = await observePath(ref.key);
    if (state.type === "file") {
      const content = await store.keep(await readFile(ref.key));
      return { state: state as Observed, data: { content: content as Observed } };
    }
    if (state.type === "absent")
      return { state: state as Observed, data: { parents: await missingParents(ref.key) } };
    return { state: state as Observed };
  },
  restore: (ref, pre, now, ctx) => restorePath(ref.key, pre, now, ctx),
};
