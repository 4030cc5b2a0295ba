import * as nodeOs from "node:os";
import { readTextOrUndefined } from "./read.js";

export interface InterfaceFact {
  mac: string;
  ipv4: string[];
  ipv6: string[];
  addrs: Array<{ address: string; family: "inet" | "inet6"; netmask: string; cidr: string | null }>;
}

/**
 * The FQDN from /etc/hosts: the canonical (first) name on the line that lists our hostname.
 * Resolving through DNS would mean network traffic on every collection, which facts must not cause.
 */
export function fqdnFromHosts(hostsText: string, hostname: string): string | undefined {
  for (const raw of hostsText.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") continue;
    const [addr, ...names] = line.split(/\s+/);
    if (addr === undefined || names.length === 0) continue;
    const short = hostname.split(".")[0];
    if (!names.some((n) => n === hostname || n.split(".")[0] === short)) continue;
    const dotted = names.find((n) => n.includes(".") && n.split(".")[0] === short);
    if (dotted) return dotted;
  }
  return undefined;
}

/** Interfaces with addresses and MACs, flat address lists, hostname, FQDN and domain. */
export async function collectNetwork(): Promise<Record<string, unknown>> {
  const hostname = nodeOs.hostname();
  const hosts = await readTextOrUndefined("/etc/hosts");
  const fqdn = hostname.includes(".") ? hostname : (fqdnFromHosts(hosts ?? "", hostname) ?? hostname);
  const dot = fqdn.indexOf(".");
  const domain = dot > 0 ? fqdn.slice(dot + 1) : "";

  const interfaces: Record<string, InterfaceFact> = {};
  const ipv4: string[] = [];
  const ipv6: string[] = [];
  for (const [name, addrs] of Object.entries(nodeOs.networkInterfaces())) {
    const iface: InterfaceFact = { mac: "", ipv4: [], ipv6: [], addrs: [] };
    for (const a of addrs ?? []) {
      if (iface.mac === "" && a.mac) iface.mac = a.mac;
      const v4 = a.family === "IPv4";
      iface.addrs.push({
        address: a.address,
        family: v4 ? "inet" : "inet6",
        netmask: a.netmask,
        cidr: a.cidr,
      });
      (v4 ? iface.ipv4 : iface.ipv6).push(a.address);
      (v4 ? ipv4 : ipv6).push(a.address);
    }
    interfaces[name] = iface;
  }

  const ip4Interfaces: Record<string, string[]> = {};
  const ip6Interfaces: Record<string, string[]> = {};
  const hwaddrInterfaces: Record<string, string> = {};
  for (const [name, i] of Object.entries(interfaces)) {
    ip4Interfaces[name] = i.ipv4;
    ip6Interfaces[name] = i.ipv6;
    hwaddrInterfaces[name] = i.mac;
  }

  return {
    hostname,
    // Salt's `host` is the short name; `hostname` here is what the kernel reports.
    host: hostname.split(".")[0],
    fqdn,
    domain,
    ipv4,
    ipv6,
    ip4_interfaces: ip4Interfaces,
    ip6_interfaces: ip6Interfaces,
    hwaddr_interfaces: hwaddrInterfaces,
    network: { hostname, fqdn, domain, interfaces },
  };
}
