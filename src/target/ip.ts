/**
 * IPv4/IPv6 addresses and CIDR containment, for `S@`. Hand-rolled because
 * `node:net` validates addresses but cannot compare them against a prefix.
 */

/** IPv4 as an unsigned 32-bit number (fleet-sized scans stay off bigint), IPv6 as a bigint. */
export type Ip = { family: 4; value: number } | { family: 6; value: bigint };

export type Cidr = (
  | { family: 4; network: number; mask: number }
  | { family: 6; network: bigint; mask: bigint }
) & {
  prefix: number;
};

/** Strict dotted quad; hand-parsed because fleets mean hundreds of thousands of calls. */
export function parseIpv4(text: string): number | undefined {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0) return undefined;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      if (++dots > 3) return undefined;
    } else if (c >= 48 && c <= 57) {
      // No leading zeros: "010" is octal to some tools and decimal to others.
      if (digits === 1 && octet === 0) return undefined;
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return undefined;
    } else return undefined;
  }
  if (dots !== 3 || digits === 0) return undefined;
  return value * 256 + octet;
}

export function parseIpv6(input: string): bigint | undefined {
  // Zone ids (`fe80::1%eth0`) do not take part in prefix matching.
  const text = input.split("%", 1)[0]!.toLowerCase();
  if (text.length === 0 || text.length > 45) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string): number[] | undefined => {
    if (s === "") return [];
    const out: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIpv4(p);
        if (v4 === undefined) return undefined;
        out.push(Math.floor(v4 / 65536), v4 % 65536);
      } else if (/^[0-9a-f]{1,4}$/.test(p)) out.push(Number.parseInt(p, 16));
      else return undefined;
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  let all: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else all = head;
  if (all.length !== 8) return undefined;
  let v = 0n;
  for (const g of all) v = (v << 16n) | BigInt(g);
  return v;
}

export function parseIp(text: string): Ip | undefined {
  if (text.includes(":")) {
    const v = parseIpv6(text);
    return v === undefined ? undefined : { family: 6, value: v };
  }
  const v = parseIpv4(text);
  return v === undefined ? undefined : { family: 4, value: v };
}

/** `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128). Host bits are ignored. */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf("/");
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(addrText);
  if (!ip) return `"${addrText}" is not an IPv4 or IPv6 address`;
  const bits = ip.family === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > bits) return `prefix length "/${p}" must be 0 to ${bits}`;
    prefix = Number(p);
  }
  if (ip.family === 4) {
    // `>>> 0` keeps the mask unsigned; a shift by 32 would be a shift by 0 in JavaScript.
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    return { family: 4, network: (ip.value & mask) >>> 0, mask, prefix };
  }
  const all = (1n << 128n) - 1n;
  const mask = prefix === 0 ? 0n : (all >> BigInt(128 - prefix)) << BigInt(128 - prefix);
  return { family: 6, network: ip.value & mask, mask, prefix };
}

export function cidrContains(cidr: Cidr, ip: Ip): boolean {
  if (cidr.family === 4) return ip.family === 4 && (ip.value & cidr.mask) >>> 0 === cidr.network;
  return ip.family === 6 && (ip.value & cidr.mask) === cidr.network;
}
