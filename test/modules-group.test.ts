import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import { family } from "../src/modules/group.js";
import { run } from "../src/util/exec.js";
import { moduleContext, runState } from "./support/module-context.js";

const present = family.states.present!;
const absent = family.states.absent!;

const hasTools =
  (await run(["sh", "-c", "command -v groupadd groupmod groupdel gpasswd useradd userdel"])).retcode === 0;
const isRoot = process.getuid?.() === 0;
if (!hasTools || !isRoot) {
  console.warn(`skipping group module tests: ${isRoot ? "groupadd/gpasswd are not installed" : "not root"}`);
}

const users: string[] = [];
const groups: string[] = [];
function newName(list: string[]): string {
  const n = `zt-${randomBytes(4).toString("hex")}`;
  list.push(n);
  return n;
}

afterEach(async () => {
  for (const u of users.splice(0)) await run(["userdel", "-f", u]);
  for (const g of groups.splice(0)) await run(["groupdel", g]);
});

const ctx = (test = false) => moduleContext({ test });
// Random high gids: useradd in other test files allocates "highest gid + 1" concurrently.
const base = 20000 + Math.floor(Math.random() * 9000);
async function sh(argv: string[]) {
  const r = await run(argv);
  expect(r.retcode, r.stderr).toBe(0);
}
const groupLine = async (name: string) =>
  (await readFile("/etc/group", "utf8")).split("\n").find((l) => l.startsWith(`${name}:`));

async function newUsers(n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const u = newName(users);
    // -N: no same-named group, so cleanup only has to remove the user.
    await sh(["useradd", "-M", "-N", u]);
    out.push(u);
  }
  return out;
}

describe.skipIf(!hasTools || !isRoot)("group.present", () => {
  it("creates with gid and exact members; second run is a no-op; test mode changes nothing", async () => {
    const name = newName(groups);
    const [a, b] = await newUsers(2);
    const params = { name, gid: base + 1, members: [b!, a!] };
    const dry = await runState(present, params, ctx(true));
    expect(dry.pending).toBe(true);
    expect(await groupLine(name)).toBeUndefined();

    const first = await runState(present, params, ctx());
    expect(first.result, first.comment).toBe(true);
    expect(first.changes).toEqual({ group: name, created: true, gid: base + 1, members: [a, b].sort() });
    expect(await groupLine(name)).toBe(`${name}:x:${base + 1}:${[a, b].sort().join(",")}`);

    const second = await runState(present, params, ctx());
    expect(second.changed).toBe(false);
    expect(second.comment).toMatch(/up to date/);
    expect((await family.exec!.info!.run({ name }, ctx())) as object).toEqual({
      name,
      gid: base + 1,
      members: [a, b].sort(),
    });
  });

  it("repairs drift in gid and members", async () => {
    const name = newName(groups);
    const [a, b, c] = await newUsers(3);
    await sh(["groupadd", "-g", String(base + 200), name]);
    await sh(["gpasswd", "-M", `${a},${c}`, name]);
    const r = await runState(present, { name, gid: base + 700, members: [a!, b!] }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changes).toEqual({
      gid: { old: base + 200, new: base + 700 },
      members: { added: [b], removed: [c] },
    });
    expect(await groupLine(name)).toBe(`${name}:x:${base + 700}:${[a, b].sort().join(",")}`);

    const empty = await runState(present, { name, members: [] }, ctx());
    expect(empty.changes).toEqual({ members: { removed: [a, b].sort() } });
    expect(await groupLine(name)).toBe(`${name}:x:${base + 700}:`);
  });

  it("addusers and delusers keep other members", async () => {
    const name = newName(groups);
    const [a, b, c] = await newUsers(3);
    await sh(["groupadd", name]);
    await sh(["gpasswd", "-M", `${a},${b}`, name]);
    const r = await runState(present, { name, addusers: [c!], delusers: [a!] }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changes).toEqual({ members: { added: [c], removed: [a] } });
    // gpasswd keeps members in the order given; ours is sorted.
    expect((await groupLine(name))!.split(":")[3]).toBe([b, c].sort().join(","));
    expect((await runState(present, { name, addusers: [c!], delusers: [a!] }, ctx())).changed).toBe(false);
  });

  it("rejects bad input clearly", async () => {
    const name = newName(groups);
    const cases = [
      [{ name, members: ["zt-nobody-here"] }, /members: "zt-nobody-here" is not a local user/],
      [{ name, members: ["root"], addusers: ["root"] }, /cannot be combined/],
      [{ name: "bad name" }, /not a valid group name/],
      [{ name, gid: 0 }, /gid 0 is already used by group "root"/],
    ] as const;
    for (const [params, msg] of cases) {
      const r = await runState(present, params, ctx());
      expect(r.result).toBe(false);
      expect(r.comment).toMatch(msg);
    }
    expect(await groupLine(name)).toBeUndefined();
  });
});

describe.skipIf(!hasTools || !isRoot)("group.absent", () => {
  it("removes the group once", async () => {
    const name = newName(groups);
    await sh(["groupadd", name]);
    expect((await runState(absent, { name }, ctx(true))).pending).toBe(true);
    expect(await groupLine(name)).toBeDefined();
    const r = await runState(absent, { name }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changes).toEqual({ group: name, removed: true });
    expect(await groupLine(name)).toBeUndefined();
    expect((await runState(absent, { name }, ctx())).changed).toBe(false);
  });
});
