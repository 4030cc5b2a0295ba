/**
 * Salt's address filters (`salt/utils/network.py`): `ipaddr`, `ipv4`, `ipv6`, `ip_host`,
 * `network_hosts`, `network_size`, with Python's `ipaddress` rules for what an address or an
 * interface (`10.0.0.1/24`) is, how it prints (IPv6 compressed), and its properties
 * (`private`, `loopback`, ... as the `options` argument). Written from those modules' behaviour.
 */
import { iterate, PyError } from "./values.js";

interface Ip {
  version: 4 | 6;
  /** The address as a big integer. */
  value: bigint;
  /** Prefix length when written as an interface (`a/len`), else undefined. */
  prefix?: number;
}

const BITS = { 4: 32, 6: 128 } as const;

function parseV4(s: string): bigint | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  let v = 0n;
  for (const p of parts) {
    // Python refuses leading zeros (ambiguous octal) and anything but 0-255.
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p.startsWith("0")) || Number(p) > 255) return undefined;
    v = (v << 8n) | BigInt(p);
  }
  return v;
}

function parseV6(s: string): bigint | undefined {
  let text = s;
  // An embedded IPv4 tail (::ffff:10.0.0.1) is two 16-bit words.
  const lastColon = text.lastIndexOf(":");
  if (lastColon >= 0 && text.slice(lastColon + 1).includes(".")) {
    const v4 = parseV4(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const group = (h: string) => (h === "" ? [] : h.split(":"));
  const head = group(halves[0]!);
  const rest = halves.length === 2 ? group(halves[1]!) : [];
  if (![...head, ...rest].every((w) => /^[0-9a-fA-F]{1,4}$/.test(w))) return undefined;
  const count = head.length + rest.length;
  if (halves.length === 1 ? count !== 8 : count > 7) return undefined;
  const zeros: string[] = Array(8 - count).fill("0");
  return [...head, ...(halves.length === 2 ? zeros : []), ...rest].reduce(
    (acc, w) => (acc << 16n) | BigInt(`0x${w}`),
    0n,
  );
}

/** Python's ip_address, else ip_interface; undefined when the text is neither. */
export function parseIp(text: string): Ip | undefined {
  const [addr, len, extra] = text.split("/");
  if (extra !== undefined || addr === undefined) return undefined;
  const v4 = parseV4(addr);
  const version = v4 !== undefined ? 4 : 6;
  const value = v4 ?? parseV6(addr);
  if (value === undefined) return undefined;
  if (len === undefined) return { version, value };
  if (!/^\d{1,3}$/.test(len) || Number(len) > BITS[version]) return undefined;
  return { version, value, prefix: Number(len) };
}

function v4Text(v: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join(".");
}

/** RFC 5952 text, as Python prints an IPv6 address: lower case, longest zero run (≥ 2) as `::`. */
function v6Text(v: bigint): string {
  const words = Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestLen < 2) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

function addrText(version: 4 | 6, v: bigint): string {
  return version === 4 ? v4Text(v) : v6Text(v);
}

function ipText(ip: Ip): string {
  return ip.prefix === undefined
    ? addrText(ip.version, ip.value)
    : `${addrText(ip.version, ip.value)}/${ip.prefix}`;
}

function inNet(ip: Ip, net: string): boolean {
  const n = parseIp(net)!;
  if (n.version !== ip.version) return false;
  const shift = BigInt(BITS[ip.version] - n.prefix!);
  return ip.value >> shift === n.value >> shift;
}

// Python's ipaddress tables (3.11).
const PRIVATE_V4 = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.0.0.0/29",
  "192.0.0.170/31",
  "192.0.2.0/24",
  "192.168.0.0/16",
  "198.18.0.0/15",
  "198.51.100.0/24",
  "203.0.113.0/24",
  "240.0.0.0/4",
  "255.255.255.255/32",
];
const PRIVATE_V6 = [
  "::1/128",
  "::/128",
  "::ffff:0:0/96",
  "100::/64",
  "2001::/23",
  "2001:2::/48",
  "2001:db8::/32",
  "2001:10::/28",
  "fc00::/7",
  "fe80::/10",
];

const PROPS: Record<string, (ip: Ip) => boolean> = {
  private: (ip) => (ip.version === 4 ? PRIVATE_V4 : PRIVATE_V6).some((n) => inNet(ip, n)),
  loopback: (ip) => (ip.version === 4 ? inNet(ip, "127.0.0.0/8") : ip.value === 1n),
  multicast: (ip) => inNet(ip, ip.version === 4 ? "224.0.0.0/4" : "ff00::/8"),
  link_local: (ip) => inNet(ip, ip.version === 4 ? "169.254.0.0/16" : "fe80::/10"),
  reserved: (ip) =>
    ip.version === 4
      ? inNet(ip, "240.0.0.0/4")
      : [
          "::/8",
          "100::/8",
          "200::/7",
          "400::/6",
          "800::/5",
          "1000::/4",
          "4000::/3",
          "6000::/3",
          "8000::/3",
          "a000::/3",
          "c000::/3",
          "e000::/4",
          "f000::/5",
          "f800::/6",
          "fe00::/9",
        ].some((n) => inNet(ip, n)),
  site_local: (ip) => ip.version === 6 && inNet(ip, "fec0::/10"),
  unspecified: (ip) => ip.value === 0n,
};
PROPS.global = (ip) => !PROPS.private!(ip);

/** Salt's option names, checked in its table's order; the first failed one rejects the address. */
const OPTIONS: [string, (ip: Ip) => boolean][] = [
  ["global", PROPS.global],
  ["link-local", PROPS.link_local!],
  ["linklocal", PROPS.link_local!],
  ["ll", PROPS.link_local!],
  ["link_local", PROPS.link_local!],
  ["loopback", PROPS.loopback!],
  ["lo", PROPS.loopback!],
  ["multicast", PROPS.multicast!],
  ["private", PROPS.private!],
  ["public", PROPS.global],
  ["reserved", PROPS.reserved!],
  ["site-local", PROPS.site_local!],
  ["sl", PROPS.site_local!],
  ["site_local", PROPS.site_local!],
  ["unspecified", PROPS.unspecified!],
];

/** Salt's `_is_ipv`: the address text when it has the version and every option, else None. */
function isIpv(value: unknown, version: 4 | 6, options: unknown): string | null {
  const ip = typeof value === "string" ? parseIp(value) : undefined;
  if (!ip || ip.version !== version) return null;
  if (options !== null && options !== undefined && options !== "") {
    const wanted = String(options)
      .split(",")
      .map((o) => o.trim());
    for (const [name, test] of OPTIONS) if (wanted.includes(name) && !test(ip)) return null;
  }
  return ipText(ip);
}

function isSequence(v: unknown): boolean {
  return Array.isArray(v);
}

/** `ipv4` / `ipv6`: a string gives the address or None; a list keeps the matching items. */
export function ipvFilter(value: unknown, version: 4 | 6, options: unknown): unknown {
  if (typeof value === "string") return isIpv(value, version, options);
  if (isSequence(value))
    return iterate(value)
      .map((x) => isIpv(x, version, options))
      .filter((x) => x !== null);
  return null;
}

/** `ipaddr`: either version; for a list the IPv4 matches, then the IPv6 ones (as Salt adds them). */
export function ipaddrFilter(value: unknown, options: unknown): unknown {
  const v4 = ipvFilter(value, 4, options);
  const v6 = ipvFilter(value, 6, options);
  if (v4 === null || v6 === null) return v4 ?? v6;
  return [...(v4 as unknown[]), ...(v6 as unknown[])];
}

function filtered(value: unknown, options: unknown, version: unknown): string[] | undefined {
  const out =
    version === 4
      ? ipvFilter(value, 4, options)
      : version === 6
        ? ipvFilter(value, 6, options)
        : ipaddrFilter(value, options);
  if (out === null || out === undefined || (Array.isArray(out) && out.length === 0) || out === "")
    return undefined;
  return Array.isArray(out) ? (out as string[]) : [out as string];
}

/** The network of an interface text (`strict=False`): host bits cleared. */
function network(text: string): { version: 4 | 6; base: bigint; prefix: number } {
  const ip = parseIp(text);
  if (!ip) throw new PyError("ValueError", `'${text}' does not appear to be an IPv4 or IPv6 network`);
  const prefix = ip.prefix ?? BITS[ip.version];
  const host = BITS[ip.version] - prefix;
  return { version: ip.version, base: (ip.value >> BigInt(host)) << BigInt(host), prefix };
}

const MAX_HOSTS = 65536n;

function hostsOf(text: string): string[] {
  const n = network(text);
  const bits = BITS[n.version];
  const size = 1n << BigInt(bits - n.prefix);
  // Python's hosts(): all but the network and broadcast addresses for IPv4, all but the
  // Subnet-Router anycast for IPv6; /31 and /32 (/127, /128) keep every address.
  const edge = bits - n.prefix <= 1;
  const first = edge ? 0n : 1n;
  const last = edge ? size : n.version === 4 ? size - 1n : size;
  if (last - first > MAX_HOSTS)
    throw new PyError("OverflowError", `network ${text} has more than ${MAX_HOSTS} hosts to list`);
  const out: string[] = [];
  for (let i = first; i < last; i++) out.push(addrText(n.version, n.base + i));
  return out;
}

function sizeOf(text: string): bigint | number {
  const n = network(text);
  const size = 1n << BigInt(BITS[n.version] - n.prefix);
  return size <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(size) : size;
}

function interfaceText(text: string): string {
  const ip = parseIp(text)!;
  return `${addrText(ip.version, ip.value)}/${ip.prefix ?? BITS[ip.version]}`;
}

/** Salt's `ip_host`, `network_hosts`, `network_size`: one value for a string, a list for a list. */
export function perNetwork(kind: "ip_host" | "network_hosts" | "network_size") {
  const one: (text: string) => unknown =
    kind === "ip_host" ? interfaceText : kind === "network_hosts" ? hostsOf : sizeOf;
  return (value: unknown, options: unknown, version: unknown): unknown => {
    const addrs = filtered(value, options, version);
    if (!addrs) return null;
    return isSequence(value) ? addrs.map(one) : one(addrs[0]!);
  };
}
