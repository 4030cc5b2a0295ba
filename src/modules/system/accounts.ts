/**
 * Reads the local account databases (/etc/passwd, /etc/group, /etc/shadow) directly. The user and
 * group states manage local accounts, so they compare against the files useradd/groupadd edit,
 * not against NSS (which would mix in LDAP users these tools cannot change).
 */
import { readTextOrUndefined, StateError } from "../support.js";

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  gecos: string;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export interface AccountDb {
  users: Map<string, PasswdEntry>;
  groups: Map<string, GroupEntry>;
  /** Password hashes by user; undefined when the shadow file could not be read. */
  shadow?: Map<string, string>;
}

export const ACCOUNT_FILES = { passwd: "/etc/passwd", group: "/etc/group", shadow: "/etc/shadow" };

function fields(line: string): string[] | undefined {
  if (line === "" || line.startsWith("#") || line.startsWith("+") || line.startsWith("-")) return undefined;
  return line.split(":");
}

export function parsePasswd(text: string): Map<string, PasswdEntry> {
  const out = new Map<string, PasswdEntry>();
  for (const line of text.split("\n")) {
    const f = fields(line);
    if (!f || f.length < 7) continue;
    out.set(f[0]!, {
      name: f[0]!,
      uid: Number(f[2]),
      gid: Number(f[3]),
      gecos: f[4]!,
      home: f[5]!,
      shell: f[6]!,
    });
  }
  return out;
}

export function parseGroup(text: string): Map<string, GroupEntry> {
  const out = new Map<string, GroupEntry>();
  for (const line of text.split("\n")) {
    const f = fields(line);
    if (!f || f.length < 4) continue;
    out.set(f[0]!, {
      name: f[0]!,
      gid: Number(f[2]),
      members: f[3]!.split(",").filter((m) => m !== ""),
    });
  }
  return out;
}

export function parseShadow(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const f = fields(line);
    if (!f || f.length < 2) continue;
    out.set(f[0]!, f[1]!);
  }
  return out;
}

/** Reads all three files; passwd and group must exist, shadow is optional. */
export async function readAccounts(withShadow = false): Promise<AccountDb> {
  const passwd = await readTextOrUndefined(ACCOUNT_FILES.passwd);
  const group = await readTextOrUndefined(ACCOUNT_FILES.group);
  if (passwd === undefined || group === undefined) {
    throw new StateError(`${ACCOUNT_FILES.passwd} or ${ACCOUNT_FILES.group} is missing`);
  }
  const db: AccountDb = { users: parsePasswd(passwd), groups: parseGroup(group) };
  if (withShadow) {
    const shadow = await readTextOrUndefined(ACCOUNT_FILES.shadow);
    if (shadow !== undefined) db.shadow = parseShadow(shadow);
  }
  return db;
}

export function groupByGid(db: AccountDb, gid: number): GroupEntry | undefined {
  for (const g of db.groups.values()) if (g.gid === gid) return g;
  return undefined;
}

/** Supplementary groups of a user: the groups that list it as a member. */
export function supplementaryGroups(db: AccountDb, user: string): string[] {
  const out: string[] = [];
  for (const g of db.groups.values()) if (g.members.includes(user)) out.push(g.name);
  return out.sort();
}

/**
 * Account names the shadow tools accept: no separators, no whitespace, not starting with a dash
 * (it would read as an option). Checked before any command runs so the error is ours, not theirs.
 */
export function checkAccountName(kind: "user" | "group", name: string): void {
  if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/.test(name) || name.length > 32 || /^\d+$/.test(name)) {
    throw new StateError(
      `"${name}" is not a valid ${kind} name (letters, digits, "_", "." and "-", at most 32 characters, not all digits, not starting with "-")`,
    );
  }
}
