/**
 * The `host` family: name-to-address lines in /etc/hosts.
 *
 * plan() reads the hosts file once and computes its new text, touching only the lines that carry
 * the managed address or name: a name is appended to an existing line of its address (spacing and
 * trailing comments kept), or a new line is added. apply() writes that text atomically.
 */
import { isIP } from "node:net";
import { unifiedDiff } from "./diff.js";
import { pathParam } from "./footprints.js";
import {
  applying,
  bool,
  guard,
  joinText,
  readTextOrUndefined,
  replaceFile,
  reqStr,
  StateError,
  splitText,
  str,
  strList,
  type TextLines,
  unchanged,
  withRevertDocs,
} from "./support.js";
import type { ExecFunction, ModuleFamily, ParamSpec, Params, Plan, StateFunction } from "./types.js";

interface HostLine {
  ip: string;
  names: string[];
  /** The part before any `#`. */
  body: string;
  /** The `#...` tail, or "". */
  comment: string;
}

export function parseHostLine(line: string): HostLine | undefined {
  const hash = line.indexOf("#");
  const body = hash >= 0 ? line.slice(0, hash) : line;
  const comment = hash >= 0 ? line.slice(hash) : "";
  const tokens = body.trim().split(/\s+/);
  if (tokens[0] === undefined || tokens[0] === "") return undefined;
  return { ip: tokens[0], names: tokens.slice(1), body, comment };
}

function addName(line: HostLine, name: string): string {
  const body = line.body.trimEnd();
  return `${body} ${name}${line.comment ? ` ${line.comment}` : ""}`;
}

/** The line without `name`, or undefined when no name would be left on it. */
function removeName(line: HostLine, name: string): string | undefined {
  if (line.names.every((n) => n === name)) return undefined;
  const parts = line.body.split(/(\s+)/);
  const out: string[] = [];
  for (const part of parts) {
    if (part === name) {
      // Drop the separator in front of the name together with it.
      if (out.length > 0 && /^\s+$/.test(out[out.length - 1]!)) out.pop();
      continue;
    }
    out.push(part);
  }
  return out.join("") + line.comment;
}

function hostName(params: Params): string {
  const name = reqStr(params, "name");
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.startsWith("-")) {
    throw new StateError(`"${name}" is not a valid host name`);
  }
  return name;
}

function ipList(params: Params, required: boolean): string[] | undefined {
  const ips = strList(params, "ip");
  if (ips === undefined || ips.length === 0) {
    if (required) throw new StateError("ip is required (an address or a list of addresses)");
    return undefined;
  }
  for (const ip of ips) if (isIP(ip) === 0) throw new StateError(`ip: "${ip}" is not an IP address`);
  return [...new Set(ips)];
}

function hostsFile(params: Params): string {
  const file = str(params, "file") ?? "/etc/hosts";
  if (!file.startsWith("/")) throw new StateError(`file must be an absolute path, got "${file}"`);
  return file;
}

function filePlan(
  file: string,
  before: string,
  after: TextLines,
  changes: Record<string, unknown>,
  what: string,
): Plan {
  const text = joinText(after);
  return {
    changes,
    comment: `${file} would be updated: ${what}`,
    diff: unifiedDiff(before, text, file, file),
    undo: { refs: [{ kind: "file", key: file }] },
    apply: applying(async () => {
      await replaceFile(file, text);
      return { comment: `${file} updated: ${what}` };
    }),
  };
}

async function planPresent(params: Params): Promise<Plan> {
  const name = hostName(params);
  const ips = ipList(params, true)!;
  const clean = bool(params, "clean", false);
  const file = hostsFile(params);
  const before = (await readTextOrUndefined(file)) ?? "";
  const text = splitText(before);
  const lines: (string | undefined)[] = [...text.lines];
  const added: string[] = [];
  const removed: string[] = [];
  const append: string[] = [];
  for (const ip of ips) {
    const idx = lines.map((l, i) => ({ p: parseHostLine(l!), i })).filter((x) => x.p?.ip === ip);
    if (idx.some((x) => x.p!.names.includes(name))) continue;
    added.push(ip);
    if (idx.length > 0) lines[idx[0]!.i] = addName(idx[0]!.p!, name);
    else append.push(`${ip}\t${name}`);
  }
  if (clean) {
    lines.forEach((l, i) => {
      const p = parseHostLine(l!);
      if (!p || ips.includes(p.ip) || !p.names.includes(name)) return;
      removed.push(p.ip);
      lines[i] = removeName(p, name);
    });
  }
  if (added.length === 0 && removed.length === 0) {
    return unchanged(`Host ${name} already points to ${ips.join(", ")} in ${file}`);
  }
  const changes: Record<string, unknown> = { host: name };
  if (added.length > 0) changes.added = added;
  if (removed.length > 0) changes.removed = removed;
  const kept = lines.filter((l): l is string => l !== undefined);
  const after =
    append.length > 0 ? { lines: [...kept, ...append], eol: true } : { lines: kept, eol: text.eol };
  const what = [
    added.length > 0 ? `${name} added for ${added.join(", ")}` : "",
    removed.length > 0 ? `${name} removed from ${removed.join(", ")}` : "",
  ]
    .filter(Boolean)
    .join("; ");
  return filePlan(file, before, after, changes, what);
}

async function planAbsent(params: Params): Promise<Plan> {
  const name = hostName(params);
  const ips = ipList(params, false);
  const file = hostsFile(params);
  const before = await readTextOrUndefined(file);
  if (before === undefined) return unchanged(`${file} does not exist`);
  const text = splitText(before);
  const removed: string[] = [];
  const lines = text.lines.map((l) => {
    const p = parseHostLine(l);
    if (!p?.names.includes(name) || (ips && !ips.includes(p.ip))) return l;
    removed.push(p.ip);
    return removeName(p, name);
  });
  if (removed.length === 0) return unchanged(`Host ${name} is not in ${file}`);
  const after = { lines: lines.filter((l): l is string => l !== undefined), eol: text.eol };
  return filePlan(file, before, after, { host: name, removed }, `${name} removed from ${removed.join(", ")}`);
}

/**
 * Salt's host.only: the address carries exactly these names. As Salt's hosts.set_host, the first
 * line of the address is replaced by `ip<TAB><TAB>names`, any further lines of it are removed,
 * and a new line is appended when the address had none; no names removes its lines.
 */
async function planOnly(params: Params): Promise<Plan> {
  const ip = reqStr(params, "name");
  if (isIP(ip) === 0) throw new StateError(`name: "${ip}" is not an IP address`);
  const names = (strList(params, "hostnames") ?? []).map((n) => n.trim()).filter((n) => n !== "");
  for (const n of names) {
    if (!/^[A-Za-z0-9_.-]+$/.test(n) || n.startsWith("-"))
      throw new StateError(`"${n}" is not a valid host name`);
  }
  const file = hostsFile(params);
  const before = (await readTextOrUndefined(file)) ?? "";
  const text = splitText(before);
  const own = (l: string) => !l.trim().startsWith("#") && parseHostLine(l)?.ip === ip;
  const old = text.lines.filter(own).flatMap((l) => parseHostLine(l)!.names);
  const want = names.join(" ");
  if (old.join(" ") === want) return unchanged(`IP address ${ip} already set to "${want}"`);
  const line = names.length > 0 ? `${ip}\t\t${want}` : undefined;
  let placed = false;
  const lines: string[] = [];
  for (const l of text.lines) {
    if (!own(l)) lines.push(l);
    else if (!placed) {
      placed = true;
      if (line !== undefined) lines.push(line);
    }
  }
  if (!placed && line !== undefined) lines.push(line);
  const after = { lines, eol: text.eol || (!placed && line !== undefined) };
  const changes = { [ip]: { old: old.join(" "), new: want } };
  return filePlan(file, before, after, changes, `${ip} changed from "${old.join(" ")}" to "${want}"`);
}

const fileParam: ParamSpec = {
  type: "string",
  doc: "The hosts file to edit.",
  default: "/etc/hosts",
  aliases: ["hosts_file"],
};

const present: StateFunction = {
  doc: "Ensures a host name resolves to the given address(es) in /etc/hosts; other lines are kept exactly.",
  primary: "name",
  footprint: (p) => ({ writes: [pathParam(p, "file") ?? "/etc/hosts"] }),
  params: {
    name: { type: "string", doc: "The host name.", required: true, aliases: ["hostname"] },
    ip: { type: ["string", "list"], items: "string", doc: "Address or list of addresses.", required: true },
    clean: {
      type: "boolean",
      doc: "Also remove the name from lines of other addresses.",
      default: false,
    },
    file: fileParam,
  },
  plan: (params) => guard(() => planPresent(params)),
};

const absent: StateFunction = {
  doc: "Ensures a host name is not listed for the given address(es), or for any address when ip is omitted.",
  primary: "name",
  footprint: (p) => ({ writes: [pathParam(p, "file") ?? "/etc/hosts"] }),
  params: {
    name: { type: "string", doc: "The host name.", required: true, aliases: ["hostname"] },
    ip: { type: ["string", "list"], items: "string", doc: "Address or list of addresses (default: all)." },
    file: fileParam,
  },
  plan: (params) => guard(() => planAbsent(params)),
};

const only: StateFunction = {
  doc:
    "Ensures an address has exactly the given host names, in order, on one line of /etc/hosts " +
    "(Salt's host.only); other lines of that address are removed, other addresses are untouched.",
  primary: "name",
  footprint: (p) => ({ writes: [pathParam(p, "file") ?? "/etc/hosts"] }),
  params: {
    name: { type: "string", doc: "The IP address.", required: true, aliases: ["ip"] },
    hostnames: {
      type: ["string", "list"],
      items: "string",
      doc: "The host name or names the address must carry (empty: the address is removed).",
      required: true,
    },
    file: fileParam,
  },
  plan: (params) => guard(() => planOnly(params)),
};

const exec: Record<string, ExecFunction> = {
  list_hosts: {
    doc: "Returns the hosts file as a map of address to names.",
    params: { file: fileParam },
    readOnly: true,
    run: async (params) => {
      const out: Record<string, string[]> = {};
      const text = (await readTextOrUndefined(hostsFile(params))) ?? "";
      for (const l of text.split("\n")) {
        const p = parseHostLine(l);
        if (p) out[p.ip] = [...(out[p.ip] ?? []), ...p.names];
      }
      return out;
    },
  },
};

const HOST_REVERT =
  "Restores the hosts file's previous bytes (every entry as it was); refused when the file changed since the run.";

export const family: ModuleFamily = {
  name: "host",
  doc: "Entries of the hosts file (/etc/hosts).",
  states: withRevertDocs(
    { present, absent, only },
    {
      present: HOST_REVERT,
      absent: HOST_REVERT,
      only: HOST_REVERT,
    },
  ),
  exec,
};
