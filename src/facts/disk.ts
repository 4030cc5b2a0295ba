import { readdir, statfs } from "node:fs/promises";
import { isENOENT } from "../util/files.js";
import { readTextOrUndefined } from "./read.js";

/** Kernel/virtual filesystems that say nothing about storage. */
const PSEUDO_FS = new Set([
  "proc",
  "sysfs",
  "devtmpfs",
  "tmpfs",
  "ramfs",
  "devpts",
  "cgroup",
  "cgroup2",
  "mqueue",
  "debugfs",
  "tracefs",
  "securityfs",
  "pstore",
  "bpf",
  "configfs",
  "fusectl",
  "hugetlbfs",
  "autofs",
  "binfmt_misc",
  "rpc_pipefs",
  "nsfs",
  "selinuxfs",
  "efivarfs",
  "squashfs",
  "nfsd",
  "fuse.lxcfs",
  "fuse.gvfsd-fuse",
  "fuse.portal",
]);

/**
 * Network filesystems are listed but not statfs'd: a hung NFS server would block the call (and a
 * libuv thread) forever, and facts are collected on a timer.
 */
const NETWORK_FS = new Set(["nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.sshfs", "9p"]);

export interface MountFact {
  device: string;
  mountpoint: string;
  fstype: string;
  options: string[];
  readonly: boolean;
  /** Bytes; absent for network filesystems and when statfs failed. */
  total?: number;
  used?: number;
  available?: number;
}

/** /proc/mounts escapes space, tab, newline and backslash as octal (\040 etc.). */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Parses /proc/mounts, dropping pseudo filesystems; a later mount over the same point wins. */
export function parseMounts(text: string): MountFact[] {
  const byPoint = new Map<string, MountFact>();
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f.length < 4) continue;
    const fstype = f[2]!;
    if (PSEUDO_FS.has(fstype)) continue;
    const options = f[3]!.split(",");
    const mountpoint = unescapeMountField(f[1]!);
    byPoint.delete(mountpoint);
    byPoint.set(mountpoint, {
      device: unescapeMountField(f[0]!),
      mountpoint,
      fstype,
      options,
      readonly: options.includes("ro"),
    });
  }
  return [...byPoint.values()];
}

async function addSizes(m: MountFact): Promise<void> {
  if (NETWORK_FS.has(m.fstype)) return;
  try {
    const s = await statfs(m.mountpoint);
    m.total = s.blocks * s.bsize;
    m.available = s.bavail * s.bsize;
    m.used = (s.blocks - s.bfree) * s.bsize;
  } catch {
    // A mount we cannot stat (permissions, vanished) still belongs in the list, just without sizes.
  }
}

/** Whole block devices, Salt's `disks` grain; loop and RAM devices are not disks. */
async function blockDevices(): Promise<string[]> {
  try {
    const names = await readdir("/sys/block");
    return names.filter((n) => !/^(loop|ram|zram)\d+$/.test(n)).sort();
  } catch (err) {
    if (isENOENT(err)) return [];
    throw err;
  }
}

/** Mounted filesystems with sizes, and block device names. */
export async function collectDisk(): Promise<Record<string, unknown>> {
  const [text, disks] = await Promise.all([readTextOrUndefined("/proc/mounts"), blockDevices()]);
  const mounts = parseMounts(text ?? "");
  await Promise.all(mounts.map(addSizes));
  return { disks, disk: { mounts } };
}
