/**
 * Live mounts by mount point (the fstab is a `file` resource): what is mounted there now, as
 * /proc/self/mounts says. Restore unmounts what the run mounted, mounts again what it unmounted
 * (device, type and options as they were) and remounts with the earlier options what it
 * remounted; a mount from another device since is refused as a change like any other.
 */
import { type FstabEntry, liveMounts } from "../../modules/mount.js";
import { failed, unchanged } from "../../modules/support.js";
import type { Plan } from "../../modules/types.js";
import { type ExecOptions, run } from "../../util/exec.js";
import type { Observed } from "../record.js";
import type { RevertKind } from "./kind.js";

type MountState = { mounted: false } | { mounted: true; device: string; fstype: string; opts: string };

async function observeMount(mountpoint: string): Promise<MountState> {
  // The last mount on a point is the one in effect (over-mounts hide earlier ones).
  const m: FstabEntry | undefined = (await liveMounts()).filter((e) => e.mountpoint === mountpoint).at(-1);
  return m
    ? { mounted: true, device: m.device, fstype: m.fstype, opts: m.opts.join(",") }
    : { mounted: false };
}

function same(a: MountState, b: MountState): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function restoreMount(mountpoint: string, want: MountState, signal?: AbortSignal): Promise<Plan> {
  const now = await observeMount(mountpoint);
  if (same(now, want)) return unchanged(`${mountpoint} is as before the run`);
  const opts: ExecOptions = { timeoutMs: 120_000 };
  if (signal) opts.signal = signal;
  let argv: string[][];
  let comment: string;
  let changes: Record<string, unknown>;
  if (!want.mounted) {
    argv = [["umount", "--", mountpoint]];
    comment = `${mountpoint} unmounted`;
    changes = { umount: true };
  } else if (!now.mounted) {
    argv = [["mount", "-t", want.fstype, "-o", want.opts, "--", want.device, mountpoint]];
    comment = `${want.device} mounted again on ${mountpoint}`;
    changes = { mount: true };
  } else if (now.device === want.device && now.fstype === want.fstype) {
    // Remounting keeps what is on the filesystem (a tmpfs keeps its files).
    argv = [["mount", "-o", `remount,${want.opts}`, "--", mountpoint]];
    comment = `${mountpoint} remounted with ${want.opts}`;
    changes = { remount: { opts: { old: now.opts, new: want.opts } } };
  } else {
    return failed(`${mountpoint} is mounted from ${now.device}, not ${want.device} as before the run`);
  }
  return {
    changes,
    comment,
    apply: async () => {
      for (const a of argv) {
        const r = await run(a, opts);
        if (r.retcode !== 0)
          return { result: false, comment: `${a.join(" ")} failed: ${(r.stderr || r.stdout).trim()}` };
      }
      const got = await observeMount(mountpoint);
      if (!same(got, want))
        return { result: false, comment: `${mountpoint} is not as before the run after ${argv[0]![0]}` };
      return undefined;
    },
  };
}

export const mountKind: RevertKind = {
  observe: async (ref) => (await observeMount(ref.key)) as Observed,
  capture: async (ref) => ({ state: (await observeMount(ref.key)) as Observed }),
  restore: (ref, pre, _now, ctx) => restoreMount(ref.key, pre.state as MountState, ctx.signal),
};
