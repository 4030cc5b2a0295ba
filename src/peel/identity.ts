/**
 * A peel's default id, from the machine's name. Ids are NATS subject tokens, so the dots of an
 * FQDN cannot stay: each becomes `_`. Host names never contain `_` (RFC 1123), which makes the
 * mapping reversible: `web_example_com` reads back as `web.example.com`.
 */
import * as nodeOs from "node:os";
import { isValidPeelId } from "../bus/names.js";
import { fqdnFromHosts } from "../facts/network.js";
import { readTextOrUndefined } from "../util/files.js";

/** `web.example.com` → `web_example_com`; undefined when the name cannot map to a valid id. */
export function peelIdForHost(host: string): string | undefined {
  if (host.includes("_")) return undefined;
  const id = host.replace(/\.$/, "").replace(/\./g, "_");
  return isValidPeelId(id) ? id : undefined;
}

/** The host name an id derived by peelIdForHost stands for (`web_example_com` → `web.example.com`). */
export function hostForPeelId(id: string): string {
  return id.replace(/_/g, ".");
}

export interface DefaultPeelId {
  id: string;
  /** The name it was made from, and which one it was. */
  from: string;
  source: "fqdn" | "hostname";
}

/** The FQDN (from /etc/hosts, never DNS), else the hostname, as an id; an error says how to fix it. */
export async function defaultPeelId(hostname = nodeOs.hostname()): Promise<DefaultPeelId> {
  const hosts = await readTextOrUndefined("/etc/hosts");
  const fqdn = hostname.includes(".") ? hostname : fqdnFromHosts(hosts ?? "", hostname);
  for (const [name, source] of [
    [fqdn, "fqdn"],
    [hostname, "hostname"],
  ] as const) {
    if (name === undefined || name === "") continue;
    const id = peelIdForHost(name);
    if (id !== undefined) return { id, from: name, source };
  }
  throw new Error(
    `cannot make a peel id from this machine's name ${JSON.stringify(fqdn ?? hostname)}: ` +
      "pass --id ID (1-128 characters from A-Z a-z 0-9 _ -)",
  );
}
