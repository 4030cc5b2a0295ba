import { pathExists, readTextOrUndefined } from "./read.js";

// DMI vendor/product substrings → Salt's `virtual` grain values.
const DMI_HINTS: ReadonlyArray<readonly [RegExp, string]> = [
  [/VMware/i, "VMware"],
  [/VirtualBox|innotek/i, "VirtualBox"],
  [/QEMU|KVM|Bochs/i, "kvm"],
  [/Amazon EC2/i, "kvm"],
  [/Google Compute Engine/i, "gce"],
  [/Microsoft Corporation|Hyper-V/i, "HyperV"],
  [/Xen/i, "xen"],
  [/Parallels/i, "Parallels"],
  [/OpenStack/i, "OpenStack"],
];

/**
 * Whether this is a container, a VM or bare metal, from marker files only — never by running
 * virt-what or systemd-detect-virt, which would cost a process spawn on every collection.
 */
export async function collectVirtual(): Promise<Record<string, unknown>> {
  if (await pathExists("/.dockerenv")) return { virtual: "container", virtual_subtype: "Docker" };
  if (await pathExists("/run/.containerenv")) return { virtual: "container", virtual_subtype: "Podman" };
  const containerEnv = await readTextOrUndefined("/run/systemd/container");
  if (containerEnv?.trim()) return { virtual: "container", virtual_subtype: containerEnv.trim() };

  const [vendor, product] = await Promise.all([
    readTextOrUndefined("/sys/class/dmi/id/sys_vendor"),
    readTextOrUndefined("/sys/class/dmi/id/product_name"),
  ]);
  const dmi = `${vendor ?? ""} ${product ?? ""}`;
  for (const [re, name] of DMI_HINTS) if (re.test(dmi)) return { virtual: name };

  // The CPU's hypervisor flag says "some VM" without saying which.
  const cpuinfo = await readTextOrUndefined("/proc/cpuinfo");
  if (cpuinfo !== undefined && /^flags\s*:.*\bhypervisor\b/m.test(cpuinfo)) return { virtual: "virtual" };
  if (vendor !== undefined || cpuinfo !== undefined) return { virtual: "physical" };
  return {};
}
