/**
 * The `group` family: local groups and their member lists.
 *
 * plan() reads /etc/group and /etc/passwd once and computes the groupadd/groupmod/gpasswd commands
 * that produce the wanted group; apply() runs exactly those commands.
 */
import { run } from "../util/exec.js";
import {
  applying,
  bool,
  checkRun,
  guard,
  nonNegInt,
  reqStr,
  requireTool,
  StateError,
  strList,
  unchanged,
  withRevertDocs,
} from "./support.js";
import { type AccountDb, checkAccountName, groupByGid, readAccounts } from "./system/accounts.js";
import type { ExecFunction, ModuleFamily, Params, Plan, StateFunction } from "./types.js";

function checkUsers(db: AccountDb, key: string, users: readonly string[]): void {
  const missing = users.filter((u) => !db.users.has(u));
  if (missing.length > 0) {
    throw new StateError(
      `${key}: ${missing.map((u) => `"${u}"`).join(", ")} ${missing.length === 1 ? "is not a local user" : "are not local users"}`,
    );
  }
}

/** The member list the group should end with, or undefined when members are not managed. */
function wantedMembers(params: Params, db: AccountDb, current: readonly string[]): string[] | undefined {
  const members = strList(params, "members");
  const add = strList(params, "addusers");
  const del = strList(params, "delusers");
  if (members !== undefined && (add !== undefined || del !== undefined)) {
    throw new StateError(
      "members sets the exact member list; it cannot be combined with addusers or delusers",
    );
  }
  if (members !== undefined) {
    checkUsers(db, "members", members);
    return [...new Set(members)].sort();
  }
  if (add === undefined && del === undefined) return undefined;
  const both = (add ?? []).filter((u) => (del ?? []).includes(u));
  if (both.length > 0) throw new StateError(`${both.join(", ")} is in both addusers and delusers`);
  checkUsers(db, "addusers", add ?? []);
  const kept = current.filter((u) => !(del ?? []).includes(u));
  return [...new Set([...kept, ...(add ?? [])])].sort();
}

function memberChanges(before: readonly string[], after: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  const added = after.filter((u) => !before.includes(u));
  const removed = before.filter((u) => !after.includes(u));
  if (added.length > 0) out.added = added;
  if (removed.length > 0) out.removed = removed;
  return out;
}

async function planPresent(params: Params): Promise<Plan> {
  const name = reqStr(params, "name");
  checkAccountName("group", name);
  const gid = nonNegInt(params, "gid");
  const db = await readAccounts();
  const cur = db.groups.get(name);
  if (gid !== undefined && gid !== cur?.gid) {
    const owner = groupByGid(db, gid);
    if (owner) throw new StateError(`gid ${gid} is already used by group "${owner.name}"`);
  }
  const members = wantedMembers(params, db, cur?.members ?? []);
  const commands: string[][] = [];
  const changes: Record<string, unknown> = {};
  if (!cur) {
    await requireTool("groupadd", "create groups");
    const argv = ["groupadd"];
    if (gid !== undefined) argv.push("-g", String(gid));
    if (bool(params, "system", false)) argv.push("-r");
    argv.push(name);
    commands.push(argv);
    changes.group = name;
    changes.created = true;
    if (gid !== undefined) changes.gid = gid;
    if (members !== undefined && members.length > 0) changes.members = members;
  } else {
    if (gid !== undefined && gid !== cur.gid) {
      await requireTool("groupmod", "change a group's gid");
      commands.push(["groupmod", "-g", String(gid), name]);
      changes.gid = { old: cur.gid, new: gid };
    }
    if (members !== undefined) {
      const mc = memberChanges(cur.members, members);
      if (Object.keys(mc).length > 0) changes.members = mc;
    }
  }
  if (members !== undefined && changes.members !== undefined) {
    await requireTool("gpasswd", "set group members");
    commands.push(["gpasswd", "-M", members.join(","), name]);
  }
  if (commands.length === 0) return unchanged(`Group ${name} is present and up to date`);
  return {
    changes,
    comment: `Group ${name} would be ${cur ? "updated" : "created"}`,
    undo: { refs: [{ kind: "group", key: name }] },
    apply: applying(async () => {
      for (const argv of commands) checkRun(argv[0]!, await run(argv));
      return { comment: `Group ${name} ${cur ? "updated" : "created"}` };
    }),
  };
}

async function planAbsent(params: Params): Promise<Plan> {
  const name = reqStr(params, "name");
  checkAccountName("group", name);
  const db = await readAccounts();
  if (!db.groups.has(name)) return unchanged(`Group ${name} is not present`);
  await requireTool("groupdel", "remove groups");
  return {
    changes: { group: name, removed: true },
    comment: `Group ${name} would be removed`,
    undo: { refs: [{ kind: "group", key: name }] },
    apply: applying(async () => {
      checkRun("groupdel", await run(["groupdel", name]));
      return { comment: `Group ${name} removed` };
    }),
  };
}

const listDoc = (what: string) => ({
  type: ["list", "string"] as const,
  items: "string" as const,
  doc: what,
});

const present: StateFunction = {
  doc:
    "Ensures a local group exists (groupadd/groupmod). Members are managed only when members, " +
    "addusers or delusers is given.",
  primary: "name",
  footprint: () => ({ writes: ["userdb"] }),
  params: {
    name: { type: "string", doc: "The group name.", required: true },
    gid: { type: ["integer", "string"], doc: "Group id." },
    members: listDoc("The exact list of member users; others are removed. Excludes addusers/delusers."),
    addusers: listDoc("Users to add to the group; other members stay."),
    delusers: listDoc("Users to remove from the group."),
    system: { type: "boolean", doc: "Create a system group (groupadd -r).", default: false },
  },
  plan: (params) => guard(() => planPresent(params)),
};

const absent: StateFunction = {
  doc: "Ensures a local group does not exist (groupdel).",
  primary: "name",
  footprint: () => ({ writes: ["userdb"] }),
  params: { name: { type: "string", doc: "The group name.", required: true } },
  plan: (params) => guard(() => planAbsent(params)),
};

const exec: Record<string, ExecFunction> = {
  info: {
    doc: "Returns a local group's name, gid and members ({} if there is no such group).",
    params: { name: { type: "string", doc: "The group name.", required: true } },
    positional: ["name"],
    readOnly: true,
    run: async (params) => {
      const g = (await readAccounts()).groups.get(String(params.name));
      return g ? { name: g.name, gid: g.gid, members: g.members } : {};
    },
  },
};

export const family: ModuleFamily = {
  name: "group",
  doc: "Local groups, read from /etc/group and changed with groupadd, groupmod, gpasswd and groupdel.",
  states: withRevertDocs(
    { present, absent },
    {
      present: "Restores the group's previous gid and members, or removes a group the run created.",
      absent: "Recreates the removed group with its gid and members.",
    },
  ),
  exec,
};
