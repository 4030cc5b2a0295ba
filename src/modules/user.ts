/**
 * The `user` family: local user accounts.
 *
 * plan() reads /etc/passwd, /etc/group and /etc/shadow once, computes the exact useradd, usermod
 * or userdel command that brings the account to the wanted state, and apply() runs that command.
 * Nothing is looked up twice, so what test mode reports is what a real run does.
 */
import { chown, mkdir } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { run } from "../util/exec.js";
import { statOrUndefined } from "../util/files.js";
import { pathParam } from "./footprints.js";
import {
  applying,
  bool,
  checkRun,
  guard,
  nonNegInt,
  reqStr,
  requireTool,
  StateError,
  str,
  strList,
  unchanged,
  which,
  withRevertDocs,
} from "./support.js";
import {
  type AccountDb,
  checkAccountName,
  groupByGid,
  type PasswdEntry,
  readAccounts,
  supplementaryGroups,
} from "./system/accounts.js";
import type { ExecFunction, ModuleFamily, ParamSpec, Params, Plan, StateFunction } from "./types.js";

/** A value written into a colon-separated account file must not break its line. */
function fieldValue(key: string, value: string | undefined): string | undefined {
  if (value !== undefined && /[:\n]/.test(value))
    throw new StateError(`${key} must not contain ":" or a newline`);
  return value;
}

/** The primary group as a name, whether given as a name or a gid. */
function resolveGid(db: AccountDb, value: unknown): { gid: number; name: string } | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) {
    const g = groupByGid(db, Number(text));
    if (!g) throw new StateError(`gid: no group has gid ${text}`);
    return { gid: g.gid, name: g.name };
  }
  const g = db.groups.get(text);
  if (!g) throw new StateError(`gid: group "${text}" does not exist`);
  return { gid: g.gid, name: g.name };
}

interface Wanted {
  name: string;
  uid?: number;
  group?: { gid: number; name: string };
  /** Supplementary groups to be a member of, or undefined when groups are not managed. */
  groups?: string[];
  removeGroups: boolean;
  home?: string;
  createhome: boolean;
  shell?: string;
  fullname?: string;
  password?: string;
  system: boolean;
  allowUidChange: boolean;
  allowGidChange: boolean;
}

function wanted(params: Params, db: AccountDb): Wanted {
  const name = reqStr(params, "name");
  checkAccountName("user", name);
  const w: Wanted = {
    name,
    removeGroups: bool(params, "remove_groups", true),
    createhome: bool(params, "createhome", true),
    system: bool(params, "system", false),
    allowUidChange: bool(params, "allow_uid_change", false),
    allowGidChange: bool(params, "allow_gid_change", false),
  };
  const uid = nonNegInt(params, "uid");
  if (uid !== undefined) w.uid = uid;
  const group = resolveGid(db, params.gid);
  if (group) w.group = group;
  const groups = strList(params, "groups");
  const optional = strList(params, "optional_groups");
  if (groups !== undefined || optional !== undefined) {
    const missing = (groups ?? []).filter((g) => !db.groups.has(g));
    if (missing.length > 0) {
      throw new StateError(
        `groups: ${missing.map((g) => `"${g}"`).join(", ")} ${missing.length === 1 ? "does" : "do"} not exist (list groups that may be missing in optional_groups)`,
      );
    }
    const all = new Set([...(groups ?? []), ...(optional ?? []).filter((g) => db.groups.has(g))]);
    w.groups = [...all].sort();
  }
  const home = fieldValue("home", str(params, "home"));
  if (home !== undefined) {
    if (!isAbsolute(home)) throw new StateError(`home must be an absolute path, got "${home}"`);
    w.home = home;
  }
  const shell = fieldValue("shell", str(params, "shell"));
  if (shell !== undefined) w.shell = shell;
  const fullname = fieldValue("fullname", str(params, "fullname"));
  if (fullname !== undefined) {
    if (fullname.includes(",")) throw new StateError(`fullname must not contain ","`);
    w.fullname = fullname;
  }
  const password = fieldValue("password", str(params, "password"));
  if (password !== undefined) w.password = password;
  return w;
}

function planCreate(w: Wanted, db: AccountDb): Plan {
  const argv = ["useradd"];
  const changes: Record<string, unknown> = { user: w.name, created: true };
  if (w.uid !== undefined) {
    argv.push("-u", String(w.uid));
    changes.uid = w.uid;
  }
  if (w.group) {
    argv.push("-g", w.group.name);
    changes.gid = w.group.name;
  } else if (db.groups.has(w.name)) {
    // useradd refuses to create a user whose same-named group already exists unless told to use it.
    argv.push("-g", w.name);
    changes.gid = w.name;
  }
  const groups = w.groups?.filter((g) => g !== (w.group?.name ?? w.name)) ?? [];
  if (groups.length > 0) {
    argv.push("-G", groups.join(","));
    changes.groups = groups;
  }
  if (w.home !== undefined) {
    argv.push("-d", w.home);
    changes.home = w.home;
  }
  argv.push(w.createhome ? "-m" : "-M");
  if (w.shell !== undefined) {
    argv.push("-s", w.shell);
    changes.shell = w.shell;
  }
  if (w.fullname !== undefined) {
    argv.push("-c", w.fullname);
    changes.fullname = w.fullname;
  }
  if (w.password !== undefined) {
    argv.push("-p", w.password);
    changes.password = "set";
  }
  if (w.system) {
    argv.push("-r");
    changes.system = true;
  }
  argv.push(w.name);
  return {
    changes,
    comment: `User ${w.name} would be created`,
    undo: { refs: [{ kind: "user", key: w.name, hint: { home: w.home ?? `/home/${w.name}` } }] },
    apply: applying(async () => {
      checkRun("useradd", await run(argv));
      return { comment: `User ${w.name} created` };
    }),
  };
}

async function planModify(w: Wanted, cur: PasswdEntry, db: AccountDb): Promise<Plan> {
  const argv = ["usermod"];
  const changes: Record<string, unknown> = {};
  const diff = (key: string, old: unknown, now: unknown, flag: string, value: string) => {
    changes[key] = { old, new: now };
    argv.push(flag, value);
  };
  const primary = groupByGid(db, cur.gid)?.name ?? String(cur.gid);
  // Like Salt, ids of an existing account change only when asked: files keep their numeric owners.
  if (w.uid !== undefined && w.uid !== cur.uid) {
    if (!w.allowUidChange) {
      throw new StateError(
        `User ${w.name} has uid ${cur.uid}, not ${w.uid}; set allow_uid_change: true to change it`,
      );
    }
    diff("uid", cur.uid, w.uid, "-u", String(w.uid));
  }
  if (w.group && w.group.gid !== cur.gid) {
    if (!w.allowGidChange) {
      throw new StateError(
        `User ${w.name} has primary group ${primary}, not ${w.group.name}; set allow_gid_change: true to change it`,
      );
    }
    diff("gid", primary, w.group.name, "-g", w.group.name);
  }
  if (w.home !== undefined && w.home !== cur.home) diff("home", cur.home, w.home, "-d", w.home);
  if (w.shell !== undefined && w.shell !== cur.shell) diff("shell", cur.shell, w.shell, "-s", w.shell);
  const gecos = cur.gecos.split(",");
  if (w.fullname !== undefined && w.fullname !== gecos[0]) {
    diff("fullname", gecos[0], w.fullname, "-c", [w.fullname, ...gecos.slice(1)].join(","));
  }
  if (w.password !== undefined) {
    if (!db.shadow)
      throw new StateError("password: /etc/shadow is missing, cannot compare the password hash");
    if (db.shadow.get(w.name) !== w.password) {
      changes.password = "changed";
      argv.push("-p", w.password);
    }
  }
  if (w.groups !== undefined) {
    const newPrimary = w.group?.name ?? primary;
    const current = supplementaryGroups(db, w.name);
    const want = w.groups.filter((g) => g !== newPrimary);
    const added = want.filter((g) => !current.includes(g));
    const removed = w.removeGroups ? current.filter((g) => !want.includes(g) && g !== newPrimary) : [];
    if (added.length > 0 || removed.length > 0) {
      const final = [...new Set([...current.filter((g) => !removed.includes(g)), ...added])].sort();
      const groupChanges: Record<string, string[]> = {};
      if (added.length > 0) groupChanges.added = added;
      if (removed.length > 0) groupChanges.removed = removed;
      changes.groups = groupChanges;
      argv.push("-G", final.join(","));
    }
  }
  // Like Salt, an explicit home that is missing is created for an existing user too.
  const home = w.home ?? cur.home;
  const makeHome = w.createhome && w.home !== undefined && !(await statOrUndefined(home));
  if (makeHome) changes.home_created = home;
  if (Object.keys(changes).length === 0) return unchanged(`User ${w.name} is present and up to date`);
  argv.push(w.name);
  const uid = w.uid ?? cur.uid;
  const gid = w.group?.gid ?? cur.gid;
  return {
    changes,
    comment: `User ${w.name} would be updated`,
    undo: { refs: [{ kind: "user", key: w.name, ...(makeHome ? { hint: { home } } : {}) }] },
    apply: applying(async () => {
      if (argv.length > 2) checkRun("usermod", await run(argv));
      if (makeHome) await createHome(w.name, home, uid, gid);
      return { comment: `User ${w.name} updated` };
    }),
  };
}

/** A new home with the skeleton files, as useradd -m would make it. */
async function createHome(user: string, home: string, uid: number, gid: number): Promise<void> {
  if (await which("mkhomedir_helper")) {
    checkRun("mkhomedir_helper", await run(["mkhomedir_helper", user]));
    return;
  }
  await mkdir(home, { recursive: true, mode: 0o755 });
  await chown(home, uid, gid);
}

async function planPresent(params: Params): Promise<Plan> {
  const db = await readAccounts(true);
  const w = wanted(params, db);
  const cur = db.users.get(w.name);
  await requireTool(cur ? "usermod" : "useradd", "manage users");
  return cur ? planModify(w, cur, db) : planCreate(w, db);
}

async function planAbsent(params: Params): Promise<Plan> {
  const name = reqStr(params, "name");
  checkAccountName("user", name);
  const db = await readAccounts();
  if (!db.users.has(name)) return unchanged(`User ${name} is not present`);
  await requireTool("userdel", "remove users");
  const argv = ["userdel"];
  const purge = bool(params, "purge", false);
  if (purge) argv.push("-r");
  if (bool(params, "force", false)) argv.push("-f");
  argv.push(name);
  const changes: Record<string, unknown> = { user: name, removed: true };
  if (purge) changes.home = db.users.get(name)!.home;
  return {
    changes,
    comment: `User ${name} would be removed`,
    undo: { refs: [{ kind: "user", key: name }] },
    apply: applying(async () => {
      const res = await run(argv);
      // userdel -r exits 12 when the home directory was already gone; the user itself is removed.
      if (!(purge && res.retcode === 12)) checkRun("userdel", res);
      return { comment: `User ${name} removed` };
    }),
  };
}

const nameParam: ParamSpec = {
  type: "string",
  doc: "The user name.",
  required: true,
  aliases: ["user"],
};

/** The home directory a user state may create or remove (useradd's default when not given). */
function homeOf(p: Params): `/${string}`[] {
  return [pathParam(p, "home") ?? `/home/${String(p.name)}`];
}

const present: StateFunction = {
  doc:
    "Ensures a local user exists with the given properties (useradd/usermod). Only the properties " +
    "you give are managed; supplementary groups are managed when groups or optional_groups is set.",
  primary: "name",
  footprint: (p) => ({ writes: ["userdb", ...homeOf(p)], reads: ["/etc/skel"] }),
  params: {
    name: nameParam,
    uid: { type: ["integer", "string"], doc: "User id." },
    gid: { type: ["integer", "string"], doc: "Primary group, as a group name or a gid; it must exist." },
    groups: {
      type: ["list", "string"],
      items: "string",
      doc: "Supplementary groups; each must exist (a comma-separated string works too).",
    },
    optional_groups: {
      type: ["list", "string"],
      items: "string",
      doc: "Supplementary groups to join when they exist; missing ones are ignored.",
    },
    remove_groups: {
      type: "boolean",
      doc: "Leave supplementary groups not listed in groups/optional_groups (like Salt).",
      default: true,
    },
    home: { type: "string", doc: "Home directory (absolute). Changing it does not move existing files." },
    createhome: {
      type: "boolean",
      doc: "Create the home directory with the skeleton files: for a new user, or when `home` is given and missing.",
      default: true,
    },
    shell: { type: "string", doc: "Login shell." },
    password: {
      type: "string",
      doc: "Password hash as stored in /etc/shadow (e.g. from `mkpasswd -m sha-512`); never plain text.",
    },
    fullname: {
      type: "string",
      doc: "Full name: the first GECOS field (other GECOS fields are kept).",
    },
    system: { type: "boolean", doc: "Create a system account (useradd -r); ignored once the user exists." },
    allow_uid_change: {
      type: "boolean",
      doc: "Allow changing the uid of an existing user (otherwise a different uid fails the state).",
      default: false,
    },
    allow_gid_change: {
      type: "boolean",
      doc: "Allow changing the primary group of an existing user (otherwise a different gid fails the state).",
      default: false,
    },
  },
  plan: (params) => guard(() => planPresent(params)),
};

const absent: StateFunction = {
  doc: "Ensures a local user does not exist (userdel).",
  primary: "name",
  footprint: (p) => ({ writes: ["userdb", ...homeOf(p)], reads: ["/etc/skel"] }),
  params: {
    name: nameParam,
    purge: { type: "boolean", doc: "Also remove the home directory and mail spool.", default: false },
    force: {
      type: "boolean",
      doc: "Remove the user even while logged in (userdel -f).",
      default: false,
    },
  },
  plan: (params) => guard(() => planAbsent(params)),
};

/** Everything we know about one user, in the shape `user.info` returns. */
export async function userInfo(name: string): Promise<Record<string, unknown>> {
  const db = await readAccounts();
  const u = db.users.get(name);
  if (!u) return {};
  const primary = groupByGid(db, u.gid)?.name;
  const groups = supplementaryGroups(db, name);
  if (primary && !groups.includes(primary)) groups.push(primary);
  return {
    name: u.name,
    uid: u.uid,
    gid: u.gid,
    group: primary ?? String(u.gid),
    groups: groups.sort(),
    home: u.home,
    shell: u.shell,
    fullname: u.gecos.split(",")[0] ?? "",
    gecos: u.gecos,
  };
}

const exec: Record<string, ExecFunction> = {
  info: {
    doc: "Returns a local user's uid, gid, groups, home, shell and full name ({} if there is no such user).",
    params: { name: { type: "string", doc: "The user name.", required: true } },
    positional: ["name"],
    readOnly: true,
    run: (params) => userInfo(String(params.name)),
  },
  list_users: {
    doc: "Returns the names of all local users, sorted.",
    params: {},
    readOnly: true,
    run: async () => [...(await readAccounts()).users.keys()].sort(),
  },
};

export const family: ModuleFamily = {
  name: "user",
  doc: "Local user accounts, read from /etc/passwd, /etc/group and /etc/shadow and changed with useradd, usermod and userdel.",
  states: withRevertDocs(
    { present, absent },
    {
      present:
        "Restores the account's previous uid, primary group, supplementary groups, home, shell, comment and password hash, or removes a user the run created (with the home directory it created).",
      absent:
        "Recreates the removed account with its uid, groups, home, shell, comment and password hash; the contents of a home directory purge removed are not restored.",
    },
  ),
  exec,
};
