/**
 * state.revert for users and groups on the real system (root): accounts created, changed and
 * removed by a run are put back; /etc/passwd, /etc/group and /etc/shadow are as before.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../src/util/exec.js";
import { requireBuilt } from "./support/built.js";
import { type CliResult, runCli } from "./support/cli.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester.js");
const USER = "zrv-user";
const OLD = "zrv-old";
const GROUP = "zrv-group";
const isRoot = process.getuid?.() === 0;
let tmp: string;
let states: string;
let skip: string | undefined;

const FILES = ["/etc/passwd", "/etc/group", "/etc/shadow"];
/**
 * Every line of the account files that names this test's accounts (entries and member lists):
 * other test files add and remove their own users at the same time.
 */
const OURS = new RegExp(`(^|[:,])(${USER}|${OLD}|${GROUP})([:,]|$)`);
const snapshot = async () =>
  Object.fromEntries(
    await Promise.all(
      FILES.map(async (f) => [f, (await readFile(f, "utf8")).split("\n").filter((l) => OURS.test(l))]),
    ),
  );
const entry = async (file: string, name: string) =>
  (await readFile(file, "utf8")).split("\n").find((l) => l.startsWith(`${name}:`));

async function cleanup(): Promise<void> {
  for (const u of [USER, OLD]) await run(["userdel", "-r", u]);
  await run(["groupdel", GROUP]);
  await rm(`/home/${USER}`, { recursive: true, force: true });
}

function zester(...args: string[]): Promise<CliResult> {
  return runCli(
    BIN,
    [
      "local",
      "--states-dir",
      states,
      "--no-cache",
      "--revert-dir",
      join(tmp, "revert"),
      "--format",
      "json",
      ...args,
    ],
    {
      env: { NO_COLOR: "1" },
    },
  );
}

type Res = { name: string; result: boolean; comment: string; changed: boolean };
function parse(r: CliResult): { results: Res[]; revert?: { run: string } } {
  try {
    return (JSON.parse(r.stdout) as never[])[0]!;
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

async function apply(sls: string): Promise<string> {
  await writeFile(join(states, "acct.sls"), sls);
  const r = await zester("state.apply", "acct");
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return parse(r).revert!.run;
}

beforeAll(async () => {
  requireBuilt(BIN);
  if (!isRoot) skip = "not root";
  else if ((await run(["sh", "-c", "command -v useradd && command -v gpasswd"])).retcode !== 0)
    skip = "no shadow tools";
  if (skip) {
    console.warn(`revert-accounts: skipped: ${skip}`);
    return;
  }
  tmp = await mkdtemp(join(tmpdir(), "zester-revert-acct-"));
  states = join(tmp, "states");
  await mkdir(states);
  await cleanup();
});

afterAll(async () => {
  if (skip) return;
  await cleanup();
  await rm(tmp, { recursive: true, force: true });
});

describe("state.revert, user and group families", () => {
  it("a user and group the run created are removed again (home too): account files as before", async (t) => {
    if (skip) return t.skip();
    const before = await snapshot();
    const id = await apply(`${GROUP}:
  group.present: []
${USER}:
  user.present:
    - shell: /bin/bash
    - fullname: Revert Probe
    - groups: [${GROUP}]
    - password: '$6$salt$hash'
    - require:
      - group: ${GROUP}
`);
    expect(await entry("/etc/passwd", USER)).toBeDefined();
    expect((await stat(`/home/${USER}`)).isDirectory()).toBe(true);
    const r = await zester("state.revert", id);
    expect(r.code, r.stdout).toBe(0);
    expect(await snapshot()).toEqual(before);
    await expect(stat(`/home/${USER}`)).rejects.toThrow(/ENOENT/);
  });

  it("changes to an existing user are undone; a change since is refused, force reverts", async (t) => {
    if (skip) return t.skip();
    await run(["groupadd", GROUP]);
    expect(
      (await run(["useradd", "-M", "-s", "/bin/sh", "-c", "Old Name", "-p", "$6$a$b", OLD])).retcode,
    ).toBe(0);
    const before = await snapshot();
    const sls = `${OLD}:
  user.present:
    - shell: /bin/bash
    - fullname: New Name
    - groups: [${GROUP}]
    - password: '$6$c$d'
`;
    const id = await apply(sls);
    expect(await entry("/etc/passwd", OLD)).toContain("New Name");
    const r = await zester("state.revert", id);
    expect(r.code, r.stdout).toBe(0);
    expect(await snapshot()).toEqual(before);

    const id2 = await apply(sls);
    await run(["usermod", "-s", "/bin/dash", OLD]);
    const refused = await zester("state.revert", id2);
    expect(refused.code).toBe(2);
    expect(parse(refused).results[0]!.comment).toMatch(
      /^refused: user zrv-old changed since the run \(shell \/bin\/bash → \/bin\/dash\)/,
    );
    expect((await zester("state.revert", id2, "force=true")).code).toBe(0);
    expect(await snapshot()).toEqual(before);
  });

  it("a removed user and group come back with their ids, fields, members and password hash", async (t) => {
    if (skip) return t.skip();
    const passwd = await entry("/etc/passwd", OLD);
    const shadow = (await entry("/etc/shadow", OLD))!.split(":").slice(0, 2).join(":");
    await run(["gpasswd", "-a", OLD, GROUP]);
    const group = await entry("/etc/group", GROUP);
    const id = await apply(`${OLD}:
  user.absent: []
${GROUP}:
  group.absent:
    - require:
      - user: ${OLD}
`);
    expect(await entry("/etc/passwd", OLD)).toBeUndefined();
    expect(await entry("/etc/group", GROUP)).toBeUndefined();
    const r = await zester("state.revert", id);
    expect(r.code, r.stdout).toBe(0);
    expect(await entry("/etc/passwd", OLD)).toBe(passwd);
    expect((await entry("/etc/shadow", OLD))!.split(":").slice(0, 2).join(":")).toBe(shadow);
    expect(await entry("/etc/group", GROUP)).toBe(group);
  });
});
