/**
 * The `mount` family: filesystems in fstab and in the live mount table.
 *
 * The plan compares the fstab entry for the mount point with the wanted one (and rewrites only that
 * line), and the live mount (/proc/self/mounts) with the wanted device. A mounted filesystem is
 * never remounted unless its options differ and `remount: true` asks for it.
 */
import { realpath } from "node:fs/promises";
import { resolve } from "node:path";
import { errText } from "../util/errors.js";
import { type ExecOptions, run } from "../util/exec.js";
import { statOrUndefined, writeFileAtomic } from "../util/files.js";
import { unifiedDiff } from "./diff.js";
import { pathParam } from "./footprints.js";
import {
  applyFailed,
  boolParam,
  failed,
  failure,
  listParam,
  optString,
  readTextOrUndefined,
  StateError,
  unchanged,
  withRevertDocs,
} from "./support.js";
import type { ExecFunction, ModuleContext, ModuleFamily, Params, Plan, StateFunction } from "./types.js";

export interface FstabEntry {
  device: string;
  mountpoint: string;
  fstype: string;
  opts: string[];
  dump: number;
  pass: number;
}

/** fstab and /proc/mounts escape space, tab, newline and backslash as octal. */
export function decodeField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

export function encodeField(s: string): string {
  return s.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`);
}

/** Parses one fstab (or /proc/mounts) line; undefined for comments and blank lines. */
export function parseFstabLine(line: string): FstabEntry | undefined {
  const t = line.trim();
  if (!t || t.startsWith("#")) return undefined;
  const f = t.split(/\s+/);
  if (f.length < 3) return undefined;
  return {
    device: decodeField(f[0]!),
    mountpoint: decodeField(f[1]!),
    fstype: f[2]!,
    opts: (f[3] ?? "defaults").split(","),
    dump: Number(f[4] ?? 0) || 0,
    pass: Number(f[5] ?? 0) || 0,
  };
}

export function formatFstabLine(e: FstabEntry): string {
  return [encodeField(e.device), encodeField(e.mountpoint), e.fstype, e.opts.join(","), e.dump, e.pass].join(
    "\t",
  );
}

function sameEntry(a: FstabEntry, b: FstabEntry): boolean {
  return formatFstabLine(a) === formatFstabLine(b);
}

/** Replaces (or appends) the entry for `want.mountpoint`; other lines and comments are kept verbatim. */
export function editFstab(text: string, want: FstabEntry): { text: string; old?: FstabEntry } {
  const lines = text === "" ? [] : text.replace(/\n$/, "").split("\n");
  let old: FstabEntry | undefined;
  let replaced = false;
  const out: string[] = [];
  for (const line of lines) {
    const e = parseFstabLine(line);
    if (e && e.mountpoint === want.mountpoint) {
      old ??= e;
      if (!replaced) out.push(formatFstabLine(want));
      replaced = true;
      continue;
    }
    out.push(line);
  }
  if (!replaced) out.push(formatFstabLine(want));
  const res: { text: string; old?: FstabEntry } = { text: `${out.join("\n")}\n` };
  if (old) res.old = old;
  return res;
}

/** Options that only matter to fstab or mount(8) itself and never show in /proc/mounts. */
const FSTAB_ONLY = new Set([
  "defaults",
  "auto",
  "noauto",
  "nofail",
  "user",
  "users",
  "nouser",
  "owner",
  "group",
  "_netdev",
  "comment",
]);

/** Kernel-reported sizes are normalized (size=1m shows as size=1024k): compare bytes. */
function sizeBytes(v: string): number | undefined {
  const m = /^(\d+)([kmgt]?)$/i.exec(v);
  if (!m) return undefined;
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase()] ?? 1;
  return Number(m[1]) * mult;
}

function optSatisfied(want: string, live: readonly string[]): boolean {
  if (live.includes(want)) return true;
  const eq = want.indexOf("=");
  if (eq < 0) return false;
  const key = want.slice(0, eq + 1);
  const wantBytes = sizeBytes(want.slice(eq + 1));
  return live.some((o) => {
    if (!o.startsWith(key)) return false;
    const b = sizeBytes(o.slice(key.length));
    return wantBytes !== undefined && b === wantBytes;
  });
}

/** Requested options missing from the live mount's option list. */
export function missingOpts(wanted: readonly string[], live: readonly string[]): string[] {
  return wanted.filter(
    (o) => !FSTAB_ONLY.has(o) && !o.startsWith("x-") && !o.startsWith("comment=") && !optSatisfied(o, live),
  );
}

export async function liveMounts(): Promise<FstabEntry[]> {
  const text = (await readTextOrUndefined("/proc/self/mounts")) ?? "";
  return text
    .split("\n")
    .map(parseFstabLine)
    .filter((e): e is FstabEntry => e !== undefined);
}

/** UUID=/LABEL=/PARTUUID= and device symlinks resolve to the kernel's device path. */
async function canonicalDevice(dev: string): Promise<string> {
  const m = /^(UUID|LABEL|PARTUUID|PARTLABEL)=(.*)$/.exec(dev);
  const path = m ? `/dev/disk/by-${m[1]!.toLowerCase()}/${m[2]}` : dev;
  if (!path.startsWith("/")) return dev;
  try {
    return await realpath(path);
  } catch {
    return dev;
  }
}

function optsParam(value: unknown): string[] {
  const list = Array.isArray(value) ? listParam(value) : String(value ?? "defaults").split(",");
  const opts = list.map((o) => o.trim()).filter(Boolean);
  return opts.length > 0 ? opts : ["defaults"];
}

async function planMounted(params: Params, ctx: ModuleContext): Promise<Plan> {
  try {
    const mountpoint = resolve(String(params.name));
    const device = optString(params.device);
    const fstype = optString(params.fstype);
    if (!device) throw new StateError("device is required");
    if (!fstype) throw new StateError("fstype is required");
    if (/\s/.test(fstype)) throw new StateError("fstype must not contain whitespace");
    const opts = optsParam(params.opts);
    const want: FstabEntry = {
      device,
      mountpoint,
      fstype,
      opts,
      dump: Number(params.dump ?? 0),
      pass: Number(params.pass_num ?? 0),
    };
    const config = String(params.config ?? "/etc/fstab");
    const persist = boolParam(params.persist, true);
    const doMount = boolParam(params.mount, true);
    const remount = boolParam(params.remount, false);
    const mkmnt = boolParam(params.mkmnt, false);
    const execOpts: ExecOptions = { timeoutMs: 120_000 };
    if (ctx.signal) execOpts.signal = ctx.signal;

    const changes: Record<string, unknown> = {};
    const notes: string[] = [];
    let newFstab: string | undefined;
    let diff = "";
    if (persist) {
      const before = (await readTextOrUndefined(config)) ?? "";
      const edited = editFstab(before, want);
      if (!edited.old || !sameEntry(edited.old, want)) {
        newFstab = edited.text;
        diff = unifiedDiff(before, edited.text, config, config);
        changes.persist = edited.old ? "update" : "new";
        notes.push(`${config} entry would be ${edited.old ? "updated" : "added"}`);
      }
    }
    let action: "mount" | "remount" | undefined;
    if (doMount) {
      const live = (await liveMounts()).filter((m) => m.mountpoint === mountpoint).at(-1);
      if (!live) {
        const st = await statOrUndefined(mountpoint);
        if (!st && !mkmnt)
          throw new StateError(`mount point ${mountpoint} does not exist (set mkmnt: true to create it)`);
        if (st && !st.isDirectory()) throw new StateError(`mount point ${mountpoint} is not a directory`);
        action = "mount";
        changes.mount = true;
        notes.push(`${device} would be mounted on ${mountpoint}`);
      } else {
        const [a, b] = await Promise.all([canonicalDevice(live.device), canonicalDevice(device)]);
        if (a !== b && live.device !== device) {
          throw new StateError(
            `${mountpoint} is mounted from ${live.device}, not ${device}; unmount it first`,
          );
        }
        const missing = missingOpts(opts, live.opts);
        if (missing.length > 0) {
          if (remount) {
            action = "remount";
            changes.remount = { opts: missing };
            notes.push(`${mountpoint} would be remounted with ${missing.join(",")}`);
          } else {
            notes.push(
              `${mountpoint} is mounted without ${missing.join(",")} (not remounting: remount is false)`,
            );
          }
        }
      }
    }
    if (Object.keys(changes).length === 0) {
      const comment = notes.length > 0 ? notes.join("; ") : `${mountpoint} is already as wanted`;
      return unchanged(comment);
    }
    const plan: Plan = {
      changes,
      comment: notes.join("; "),
      // In apply's order: the fstab first, then the live mount (revert undoes the mount first).
      undo: {
        refs: [
          ...(newFstab !== undefined ? [{ kind: "file" as const, key: config }] : []),
          ...(action !== undefined ? [{ kind: "mount" as const, key: mountpoint }] : []),
        ],
      },
      apply: async () => {
        try {
          if (newFstab !== undefined) await writeFileAtomic(config, newFstab, { mode: 0o644 });
          if (action === "mount") {
            if (mkmnt) await run(["mkdir", "-p", "--", mountpoint], execOpts);
            const r = await run(
              ["mount", "-t", fstype, "-o", opts.join(","), "--", device, mountpoint],
              execOpts,
            );
            if (r.retcode !== 0)
              return {
                result: false,
                changes: newFstab ? { persist: changes.persist } : {},
                comment: failure(`mount ${mountpoint}`, r),
              };
          } else if (action === "remount") {
            const r = await run(
              [
                "mount",
                "-o",
                ["remount", ...opts.filter((o) => o !== "defaults")].join(","),
                "--",
                mountpoint,
              ],
              execOpts,
            );
            if (r.retcode !== 0)
              return {
                result: false,
                changes: newFstab ? { persist: changes.persist } : {},
                comment: failure(`remount ${mountpoint}`, r),
              };
          }
          return { result: true, changes, comment: notes.join("; ").replace(/would be /g, "") };
        } catch (err) {
          return applyFailed(errText(err));
        }
      },
    };
    if (diff) plan.diff = diff;
    return plan;
  } catch (err) {
    return failed(errText(err));
  }
}

async function planUnmounted(params: Params, ctx: ModuleContext): Promise<Plan> {
  try {
    const mountpoint = resolve(String(params.name));
    const config = String(params.config ?? "/etc/fstab");
    const persist = boolParam(params.persist, false);
    const execOpts: ExecOptions = { timeoutMs: 120_000 };
    if (ctx.signal) execOpts.signal = ctx.signal;
    const changes: Record<string, unknown> = {};
    const notes: string[] = [];
    const mounted = (await liveMounts()).some((m) => m.mountpoint === mountpoint);
    if (mounted) {
      changes.umount = true;
      notes.push(`${mountpoint} would be unmounted`);
    }
    let newFstab: string | undefined;
    let diff = "";
    if (persist) {
      const before = (await readTextOrUndefined(config)) ?? "";
      const kept = before.split("\n").filter((l) => parseFstabLine(l)?.mountpoint !== mountpoint);
      const after = kept.join("\n");
      if (after !== before) {
        newFstab = after;
        diff = unifiedDiff(before, after, config, config);
        changes.persist = "purged";
        notes.push(`${config} entry would be removed`);
      }
    }
    if (notes.length === 0) return unchanged(`${mountpoint} is not mounted`);
    const plan: Plan = {
      changes,
      comment: notes.join("; "),
      undo: {
        refs: [
          ...(mounted ? [{ kind: "mount" as const, key: mountpoint }] : []),
          ...(newFstab !== undefined ? [{ kind: "file" as const, key: config }] : []),
        ],
      },
      apply: async () => {
        if (mounted) {
          const r = await run(["umount", "--", mountpoint], execOpts);
          if (r.retcode !== 0) return applyFailed(failure(`umount ${mountpoint}`, r));
        }
        if (newFstab !== undefined) await writeFileAtomic(config, newFstab, { mode: 0o644 });
        return { result: true, changes, comment: notes.join("; ").replace(/would be /g, "") };
      },
    };
    if (diff) plan.diff = diff;
    return plan;
  } catch (err) {
    return failed(errText(err));
  }
}

const mounted: StateFunction = {
  doc:
    "Makes sure a filesystem is in fstab (persist) and mounted (mount). A live mount is never remounted " +
    "unless its options differ and remount: true.",
  primary: "name",
  footprint: (p) => ({
    writes: [pathParam(p, "name") ?? "/", pathParam(p, "config") ?? "/etc/fstab", "mount"],
  }),
  params: {
    name: { type: "string", doc: "The mount point.", required: true, aliases: ["mountpoint"] },
    device: {
      type: "string",
      doc: "Device, UUID=..., LABEL=..., host:/export or a pseudo device like tmpfs.",
      required: true,
    },
    fstype: { type: "string", doc: "Filesystem type (ext4, xfs, nfs, tmpfs...).", required: true },
    opts: {
      type: ["string", "list"],
      doc: "Mount options: a comma-separated string or a list.",
      default: "defaults",
    },
    dump: { type: "integer", doc: "fstab dump field.", default: 0 },
    pass_num: { type: "integer", doc: "fstab fsck pass field.", default: 0 },
    persist: { type: "boolean", doc: "Keep the entry in the fstab file.", default: true },
    config: { type: "string", doc: "The fstab file to edit.", default: "/etc/fstab" },
    mount: { type: "boolean", doc: "Mount it now when it is not mounted.", default: true },
    remount: { type: "boolean", doc: "Remount a live mount whose options differ.", default: false },
    mkmnt: { type: "boolean", doc: "Create the mount point directory when missing.", default: false },
  },
  plan: planMounted,
};

const unmounted: StateFunction = {
  doc: "Makes sure nothing is mounted on a mount point; with persist: true also removes its fstab entry.",
  primary: "name",
  footprint: (p) => ({
    writes: [pathParam(p, "name") ?? "/", pathParam(p, "config") ?? "/etc/fstab", "mount"],
  }),
  params: {
    name: mounted.params.name!,
    config: mounted.params.config!,
    persist: { type: "boolean", doc: "Also remove the entry from the fstab file.", default: false },
  },
  plan: planUnmounted,
};

const exec: Record<string, ExecFunction> = {
  active: {
    doc: "The live mounts as {mountpoint: {device, fstype, opts}}.",
    params: {},
    readOnly: true,
    run: async () => {
      const out: Record<string, unknown> = {};
      for (const m of await liveMounts())
        out[m.mountpoint] = { device: m.device, fstype: m.fstype, opts: m.opts };
      return out;
    },
  },
};

export const family: ModuleFamily = {
  name: "mount",
  doc: "Filesystem mounts and fstab entries.",
  states: withRevertDocs(
    { mounted, unmounted },
    {
      mounted:
        "Unmounts what the run mounted (or remounts with the earlier options) and restores the fstab file's previous bytes; a mount point directory made by mkmnt stays.",
      unmounted:
        "Mounts again what the run unmounted (same device, type and options) and restores the fstab file's previous bytes.",
    },
  ),
  exec,
};
