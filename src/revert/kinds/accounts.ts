/**
 * Local accounts: a user's passwd fields, supplementary groups and password hash; a group's gid
 * and members. Read from the files (as the user and group states do), restored with the shadow
 * tools. Password hashes stay in the kept pre-image only; observations carry their digest.
 */
import { createHash } from "node:crypto";
import { rm } from "node:fs/promises";
import { checkRun, failed, unchanged } from "../../modules/support.js";
import { groupByGid, readAccounts, supplementaryGroups } from "../../modules/system/accounts.js";
import type { Plan, UndoRef } from "../../modules/types.js";
import { run } from "../../util/exec.js";
import { statOrUndefined } from "../../util/files.js";
import type { Observed, PreImage } from "../record.js";
import type { RestoreContext, RevertKind } from "./kind.js";

type UserState =
  | { exists: false }
  | {
      exists: true;
      uid: number;
      gid: number;
      gecos: string;
      home: string;
      shell: string;
      groups: string[];
      password: string | null;
    };

const digest = (s: string) => createHash("sha256").update(s).digest("hex");

async function observeUser(
  name: string,
): Promise<{ state: UserState; hash?: string; primary?: { name: string; gid: number } }> {
  const db = await readAccounts(true);
  const u = db.users.get(name);
  if (!u) return { state: { exists: false } };
  const g = groupByGid(db, u.gid);
  const hash = db.shadow?.get(name);
  const state: UserState = {
    exists: true,
    uid: u.uid,
    gid: u.gid,
    gecos: u.gecos,
    home: u.home,
    shell: u.shell,
    groups: supplementaryGroups(db, name),
    password: hash === undefined ? null : digest(hash),
  };
  // userdel removes a user's private group with it: a recreated user needs it back.
  const primary = g ? { name: g.name, gid: g.gid } : undefined;
  return { state, ...(hash === undefined ? {} : { hash }), ...(primary ? { primary } : {}) };
}

function change(
  changes: Record<string, unknown>,
  comment: string,
  commands: string[][],
  after?: () => Promise<void>,
): Plan {
  return {
    changes,
    comment,
    apply: async () => {
      for (const argv of commands) checkRun(argv[0]!, await run(argv));
      await after?.();
      return undefined;
    },
  };
}

async function restoreUser(ref: UndoRef, pre: PreImage, nowObs: Observed): Promise<Plan> {
  const name = ref.key;
  const want = pre.state as unknown as UserState;
  const now = nowObs as unknown as UserState;
  const data = (pre.data ?? {}) as {
    hash?: string;
    home?: string;
    home_existed?: boolean;
    primary?: { name: string; gid: number };
  };
  if (!want.exists) {
    if (!now.exists) return unchanged(`User ${name} does not exist, as before the run`);
    // The home the run created goes with the user; one that existed before stays.
    const home = data.home !== undefined && data.home_existed === false ? data.home : undefined;
    return change(
      { user: name, removed: true, ...(home ? { home } : {}) },
      `User ${name} removed (the run created it)`,
      [["userdel", name]],
      home && home !== "/" ? () => rm(home, { recursive: true, force: true }) : undefined,
    );
  }
  const hash = data.hash;
  if (!now.exists) {
    const argv = ["useradd", "-u", String(want.uid), "-g", String(want.gid), "-d", want.home, "-M"];
    argv.push("-s", want.shell, "-c", want.gecos);
    if (want.groups.length > 0) argv.push("-G", want.groups.join(","));
    if (hash !== undefined) argv.push("-p", hash);
    argv.push(name);
    const commands = [argv];
    const p = data.primary;
    if (p && !groupByGid(await readAccounts(), p.gid))
      commands.unshift(["groupadd", "-g", String(p.gid), p.name]);
    return change(
      { user: name, created: true, uid: want.uid },
      `User ${name} recreated as before the run`,
      commands,
    );
  }
  const argv = ["usermod"];
  const changes: Record<string, unknown> = {};
  const field = (key: "uid" | "gid" | "home" | "shell" | "gecos", flag: string) => {
    if (now[key] === want[key]) return;
    changes[key] = { old: now[key], new: want[key] };
    argv.push(flag, String(want[key]));
  };
  field("uid", "-u");
  field("gid", "-g");
  field("home", "-d");
  field("shell", "-s");
  field("gecos", "-c");
  if (now.groups.join(",") !== want.groups.join(",")) {
    changes.groups = { old: now.groups, new: want.groups };
    argv.push("-G", want.groups.join(","));
  }
  if (now.password !== want.password) {
    if (hash === undefined)
      return failed(`the password hash of ${name} before the run was not readable; it cannot be restored`);
    changes.password = "restored";
    argv.push("-p", hash);
  }
  const home = data.home !== undefined && data.home_existed === false ? data.home : undefined;
  const homeNow = home ? await statOrUndefined(home) : undefined;
  if (homeNow) changes.home_removed = home;
  if (Object.keys(changes).length === 0) return unchanged(`User ${name} is as before the run`);
  argv.push(name);
  return change(
    changes,
    `User ${name} restored as before the run`,
    argv.length > 2 ? [argv] : [],
    homeNow && home !== "/" ? () => rm(home!, { recursive: true, force: true }) : undefined,
  );
}

export const userKind: RevertKind = {
  observe: async (ref) => (await observeUser(ref.key)).state as unknown as Observed,
  async capture(ref) {
    const { state, hash, primary } = await observeUser(ref.key);
    const data: Record<string, Observed> = {};
    if (hash !== undefined) data.hash = hash;
    if (primary) data.primary = primary;
    const home = ref.hint?.home;
    if (home !== undefined) {
      data.home = home;
      data.home_existed = (await statOrUndefined(home)) !== undefined;
    }
    return { state: state as unknown as Observed, data };
  },
  restore: (ref, pre, now, _ctx: RestoreContext) => restoreUser(ref, pre, now),
};

type GroupState = { exists: false } | { exists: true; gid: number; members: string[] };

async function observeGroup(name: string): Promise<GroupState> {
  const g = (await readAccounts()).groups.get(name);
  return g ? { exists: true, gid: g.gid, members: [...g.members].sort() } : { exists: false };
}

async function restoreGroup(name: string, want: GroupState, now: GroupState): Promise<Plan> {
  if (!want.exists) {
    if (!now.exists) return unchanged(`Group ${name} does not exist, as before the run`);
    return change({ group: name, removed: true }, `Group ${name} removed (the run created it)`, [
      ["groupdel", name],
    ]);
  }
  const members = ["gpasswd", "-M", want.members.join(","), name];
  if (!now.exists)
    return change(
      { group: name, created: true, gid: want.gid },
      `Group ${name} recreated as before the run`,
      [["groupadd", "-g", String(want.gid), name], ...(want.members.length > 0 ? [members] : [])],
    );
  const changes: Record<string, unknown> = {};
  const commands: string[][] = [];
  if (now.gid !== want.gid) {
    changes.gid = { old: now.gid, new: want.gid };
    commands.push(["groupmod", "-g", String(want.gid), name]);
  }
  if (now.members.join(",") !== want.members.join(",")) {
    changes.members = { old: now.members, new: want.members };
    commands.push(members);
  }
  if (commands.length === 0) return unchanged(`Group ${name} is as before the run`);
  return change(changes, `Group ${name} restored as before the run`, commands);
}

export const groupKind: RevertKind = {
  observe: async (ref) => (await observeGroup(ref.key)) as unknown as Observed,
  capture: async (ref) => ({ state: (await observeGroup(ref.key)) as unknown as Observed }),
  restore: (ref, pre, now) =>
    restoreGroup(ref.key, pre.state as unknown as GroupState, now as unknown as GroupState),
};
