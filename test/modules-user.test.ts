import { randomBytes } from "node:crypto";
import { readFile, rm, stat } from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import { family } from "../src/modules/user.js";
import { run } from "../src/util/exec.js";
import { moduleContext, runState } from "./support/module-context.js";

const present = family.states.present!;
const absent = family.states.absent!;

const hasTools =
  (await run(["sh", "-c", "command -v useradd usermod userdel groupadd groupdel"])).retcode === 0;
const isRoot = process.getuid?.() === 0;
// Without mkhomedir_helper a restored home is an empty directory (no skeleton files).
const hasHelper =
  (await run(["sh", "-c", "PATH=$PATH:/usr/sbin:/sbin command -v mkhomedir_helper"])).retcode === 0;
const reason = !isRoot ? "not running as root" : "useradd/usermod/userdel/groupadd are not installed";
if (!hasTools || !isRoot) console.warn(`skipping user module tests: ${reason}`);

const users: string[] = [];
const groups: string[] = [];
function newName(list: string[]): string {
  const n = `zt-${randomBytes(4).toString("hex")}`;
  list.push(n);
  return n;
}

afterEach(async () => {
  for (const u of users.splice(0)) {
    await run(["userdel", "-r", "-f", u]);
    await rm(`/home/${u}`, { recursive: true, force: true });
  }
  for (const g of groups.splice(0)) await run(["groupdel", g]);
});

const ctx = (test = false) => moduleContext({ test });
// Random high ids: useradd/groupadd in other test files allocate "highest id + 1" concurrently.
const base = 30000 + Math.floor(Math.random() * 9000);
const id = (n: number) => String(base + n);
const passwdLine = async (name: string) =>
  (await readFile("/etc/passwd", "utf8")).split("\n").find((l) => l.startsWith(`${name}:`));
const groupLine = async (name: string) =>
  (await readFile("/etc/group", "utf8")).split("\n").find((l) => l.startsWith(`${name}:`));

describe.skipIf(!hasTools || !isRoot)("user.present", () => {
  it("creates a user, then reports no change; test mode changes nothing", async () => {
    const name = newName(users);
    const g1 = newName(groups);
    await run(["groupadd", g1]);
    const params = { name, shell: "/bin/sh", fullname: "Zester Test", groups: [g1], uid: base + 11 };

    const dry = await runState(present, params, ctx(true));
    expect(dry.result, dry.comment).toBe(true);
    expect(dry.pending).toBe(true);
    expect(dry.comment).toMatch(/would be created/);
    expect(await passwdLine(name)).toBeUndefined();

    const first = await runState(present, params, ctx());
    expect(first.result, first.comment).toBe(true);
    expect(first.changed).toBe(true);
    expect(first.changes).toMatchObject({ user: name, created: true, uid: base + 11, groups: [g1] });
    expect(await passwdLine(name)).toBe(`${name}:x:${id(11)}:${id(11)}:Zester Test:/home/${name}:/bin/sh`);
    expect(await groupLine(g1)).toMatch(new RegExp(`:${name}$`));
    expect((await stat(`/home/${name}`)).isDirectory()).toBe(true);

    const second = await runState(present, params, ctx());
    expect(second.result, second.comment).toBe(true);
    expect(second.changed).toBe(false);
    expect(second.comment).toMatch(/up to date/);

    // A deleted home comes back when home is given (createhome defaults to true), owned by the user.
    await rm(`/home/${name}`, { recursive: true });
    expect((await runState(present, params, ctx())).changed).toBe(false);
    const withHome = { ...params, home: `/home/${name}` };
    const home = await runState(present, withHome, ctx());
    expect(home.changes).toEqual({ home_created: `/home/${name}` });
    expect((await stat(`/home/${name}`)).uid).toBe(base + 11);
    if (hasHelper) expect((await stat(`/home/${name}/.profile`)).isFile()).toBe(true);
    expect((await runState(present, withHome, ctx())).changed).toBe(false);

    const info = await family.exec!.info!.run({ name }, ctx());
    expect(info).toMatchObject({ name, uid: base + 11, shell: "/bin/sh", fullname: "Zester Test" });
    expect((info as { groups: string[] }).groups).toContain(g1);
    expect(await family.exec!.list_users!.run({}, ctx())).toContain(name);
  });

  it("repairs drift: shell, full name, groups (remove_groups) and password hash", async () => {
    const name = newName(users);
    const [g1, g2] = [newName(groups), newName(groups)];
    await run(["groupadd", g1]);
    await run(["groupadd", g2]);
    const hash = "$6$saltsalt$abcdefghijklmnopqrstuv";
    const params = { name, shell: "/bin/sh", fullname: "A", groups: [g1], password: hash };
    expect((await runState(present, params, ctx())).result).toBe(true);

    await run(["usermod", "-s", "/bin/bash", "-c", "B,room 1", "-G", `${g1},${g2}`, "-p", "!", name]);
    const dry = await runState(present, params, ctx(true));
    expect(dry.pending).toBe(true);
    expect(dry.changes).toEqual({
      shell: { old: "/bin/bash", new: "/bin/sh" },
      fullname: { old: "B", new: "A" },
      password: "changed",
      groups: { removed: [g2] },
    });
    const fixed = await runState(present, params, ctx());
    expect(fixed.result, fixed.comment).toBe(true);
    expect(fixed.changed).toBe(true);
    const [, , , , gecos, home, shell] = (await passwdLine(name))!.split(":");
    expect([gecos, home, shell]).toEqual(["A,room 1", `/home/${name}`, "/bin/sh"]);
    const shadow = (await readFile("/etc/shadow", "utf8")).split("\n").find((l) => l.startsWith(`${name}:`));
    expect(shadow!.split(":")[1]).toBe(hash);
    expect(await groupLine(g2)).not.toMatch(name);
    expect((await runState(present, params, ctx())).changed).toBe(false);

    // remove_groups: false only adds.
    await run(["usermod", "-a", "-G", g2, name]);
    const keep = await runState(present, { ...params, remove_groups: false }, ctx());
    expect(keep.changed).toBe(false);
  });

  it("optional_groups joins only groups that exist; a missing required group fails clearly", async () => {
    const name = newName(users);
    const g1 = newName(groups);
    await run(["groupadd", g1]);
    const ok = await runState(
      present,
      { name, createhome: false, optional_groups: [g1, "zt-no-such-group"] },
      ctx(),
    );
    expect(ok.result, ok.comment).toBe(true);
    expect(await groupLine(g1)).toMatch(new RegExp(`:${name}$`));

    const bad = await runState(present, { name, groups: ["zt-no-such-group"] }, ctx());
    expect(bad.result).toBe(false);
    expect(bad.comment).toMatch(/groups: "zt-no-such-group" does not exist/);
  });

  it("gid by name or number; primary group changes", async () => {
    const name = newName(users);
    const g1 = newName(groups);
    await run(["groupadd", "-g", id(99), g1]);
    const r = await runState(present, { name, gid: g1, createhome: false }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect((await passwdLine(name))!.split(":")[3]).toBe(id(99));
    expect((await runState(present, { name, gid: base + 99 }, ctx())).changed).toBe(false);

    // Ids of an existing user change only with allow_uid_change / allow_gid_change (like Salt).
    const g2 = newName(groups);
    await run(["groupadd", "-g", id(98), g2]);
    const refused = await runState(present, { name, gid: g2, uid: base + 97 }, ctx());
    expect(refused.result).toBe(false);
    expect(refused.comment).toMatch(/set allow_uid_change: true/);
    expect((await passwdLine(name))!.split(":")[3]).toBe(id(99));
    const moved = await runState(
      present,
      { name, gid: g2, uid: base + 97, allow_uid_change: true, allow_gid_change: true },
      ctx(),
    );
    expect(moved.result, moved.comment).toBe(true);
    expect(moved.changes).toEqual({
      uid: { old: expect.any(Number), new: base + 97 },
      gid: { old: g1, new: g2 },
    });
    expect((await passwdLine(name))!.split(":").slice(2, 4)).toEqual([id(97), id(98)]);

    const bad = await runState(present, { name, gid: "zt-nope" }, ctx());
    expect(bad.result).toBe(false);
    expect(bad.comment).toMatch(/gid: group "zt-nope" does not exist/);
  });

  it("uses an existing same-named group as primary group; createhome: false makes no home", async () => {
    const name = newName(users);
    groups.push(name);
    await run(["groupadd", "-g", id(50), name]);
    const r = await runState(present, { name, createhome: false }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changes).toMatchObject({ gid: name });
    expect((await passwdLine(name))!.split(":")[3]).toBe(id(50));
    await expect(stat(`/home/${name}`)).rejects.toThrow(/ENOENT/);
  });

  it("rejects bad input with a clear error", async () => {
    for (const [params, msg] of [
      [{ name: "-rf" }, /not a valid user name/],
      [{ name: "a:b" }, /not a valid user name/],
      [{ name: "zt-ok", uid: "abc" }, /uid must be a non-negative integer/],
      [{ name: "zt-ok", home: "relative/home" }, /home must be an absolute path/],
      [{ name: "zt-ok", shell: "/bin/sh\nx" }, /shell must not contain/],
    ] as const) {
      const r = await runState(present, params, ctx());
      expect(r.result).toBe(false);
      expect(r.comment).toMatch(msg);
    }
  });
});

describe.skipIf(!hasTools || !isRoot)("user.absent", () => {
  it("removes the user (purge removes home); second run and test mode change nothing", async () => {
    const name = newName(users);
    await run(["useradd", "-m", name]);
    const dry = await runState(absent, { name, purge: true }, ctx(true));
    expect(dry.pending).toBe(true);
    expect(await passwdLine(name)).toBeDefined();

    const r = await runState(absent, { name, purge: true }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changes).toEqual({ user: name, removed: true, home: `/home/${name}` });
    expect(await passwdLine(name)).toBeUndefined();
    await expect(stat(`/home/${name}`)).rejects.toThrow(/ENOENT/);

    const again = await runState(absent, { name }, ctx());
    expect(again.changed).toBe(false);
    expect(again.comment).toMatch(/not present/);
  });
});
