import * as nodeOs from "node:os";
import { readTextOrUndefined } from "./read.js";

export interface DefaultRoute {
  iface: string;
  /** Dotted quad; "0.0.0.0" for a directly connected default route. */
  gateway: string;
  metric: number;
}

const RTF_UP = 0x1;

/** /proc/net/route stores IPv4 addresses as host-order (little-endian on every Linux we target) hex. */
function hexToIpv4(hex: string): string {
  const n = Number.parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join(".");
}

/** The usable default route with the lowest metric, or undefined when there is none. */
export function parseDefaultRoute(text: string): DefaultRoute | undefined {
  let best: DefaultRoute | undefined;
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [iface, dest, gateway, flags, , , metric, mask] = f;
    if (dest !== "00000000" || mask !== "00000000") continue;
    if ((Number.parseInt(flags!, 16) & RTF_UP) === 0) continue;
    const route = { iface: iface!, gateway: hexToIpv4(gateway!), metric: Number(metric) };
    if (!best || route.metric < best.metric) best = route;
  }
  return best;
}

/**
 * The IPv4 this machine would use outbound: the address on the default route's interface, read
 * from the routing table. No packets are sent (unlike the usual "connect a UDP socket" trick).
 */
export async function collectDefaultIp(): Promise<Record<string, unknown>> {
  const text = await readTextOrUndefined("/proc/net/route");
  if (text === undefined) return {};
  const route = parseDefaultRoute(text);
  if (!route) return {};
  const facts: Record<string, unknown> = {
    default_interface: route.iface,
    default_gateway: route.gateway,
  };
  const addr = nodeOs.networkInterfaces()[route.iface]?.find((a) => a.family === "IPv4");
  if (addr) facts.default_ipv4 = addr.address;
  return facts;
}
