/**
 * The `network` family: this machine's addresses as Salt's network module returns them, read
 * from the facts (the usual basket functions: `network.ip_addrs`).
 */
import type { ExecFunction, ModuleContext, ModuleFamily } from "./types.js";

function addresses(ctx: ModuleContext, key: "ipv4" | "ipv6", loopback: boolean): string[] {
  const raw = ctx.facts[key];
  const all = Array.isArray(raw) ? raw.filter((a): a is string => typeof a === "string") : [];
  const isLoop = (a: string) => (key === "ipv4" ? a.startsWith("127.") : a === "::1");
  return [...new Set(all.filter((a) => loopback || !isLoop(a)))].sort();
}

const addrs = (key: "ipv4" | "ipv6"): ExecFunction => ({
  doc: `This machine's ${key === "ipv4" ? "IPv4" : "IPv6"} addresses, sorted, loopback left out unless \`include_loopback\`.`,
  params: { include_loopback: { type: "boolean", default: false, doc: "Also list loopback addresses." } },
  positional: ["include_loopback"],
  readOnly: true,
  run: async (p, ctx) => addresses(ctx, key, p.include_loopback === true),
});

export const family: ModuleFamily = {
  name: "network",
  doc: "Network information of this machine (from its facts).",
  states: {},
  exec: {
    ip_addrs: addrs("ipv4"),
    ip_addrs6: addrs("ipv6"),
    interfaces: {
      doc: "Interfaces with their addresses, as the `interfaces` fact reports them.",
      params: {},
      readOnly: true,
      run: async (_p, ctx) => ctx.facts.interfaces ?? {},
    },
    get_hostname: {
      doc: "The kernel host name (the `hostname` fact).",
      params: {},
      readOnly: true,
      run: async (_p, ctx) => ctx.facts.hostname ?? ctx.facts.host ?? "",
    },
  },
};
