import { randomBytes } from "node:crypto";
import { lstat, mkdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { family, parseKeyLine } from "../src/modules/ssh_auth.js";
import { run } from "../src/util/exec.js";
import { moduleContext, runState, tempDir } from "./support/module-context.js";

const present = family.states.present!;
const absent = family.states.absent!;

const canUsers = process.getuid?.() === 0 && (await run(["sh", "-c", "command -v useradd"])).retcode === 0;
if (!canUsers) console.warn("skipping ssh_auth tests that need a real user: not root or useradd missing");

const KEY1 = "AAAAC3NzaC1lZDI1NTE5AAAAIJ0gxT6yvNqgmNwqHd0lNqg3q7o2a3N0ZXN0a2V5MQ";
const KEY2 = "AAAAC3NzaC1lZDI1NTE5AAAAIHZlcnlmYWtla2V5Zm9ydGVzdGluZ29ubHkwMDAwMA";

let user = "";
let home = "";
let cleanup: () => Promise<void> = async () => {};
beforeEach(async () => {
  if (!canUsers) return;
  const t = await tempDir("zester-ssh-");
  cleanup = t.cleanup;
  user = `zt-${randomBytes(4).toString("hex")}`;
  home = join(t.dir, "home");
  const r = await run(["useradd", "-m", "-N", "-d", home, user]);
  expect(r.retcode, r.stderr).toBe(0);
});
afterEach(async () => {
  if (user) await run(["userdel", "-f", user]);
  user = "";
  await cleanup();
});

const ctx = (test = false) => moduleContext({ test });
const keysFile = () => join(home, ".ssh", "authorized_keys");

describe("parseKeyLine", () => {
  it("reads options with quoted spaces, type, key and comment", () => {
    expect(parseKeyLine(`from="10.0.0.1, 10.0.0.2",no-pty ssh-ed25519 ${KEY1} me@host extra`)).toEqual({
      options: 'from="10.0.0.1, 10.0.0.2",no-pty',
      enc: "ssh-ed25519",
      key: KEY1,
      comment: "me@host extra",
    });
    expect(parseKeyLine(`ssh-rsa ${KEY2}`)).toEqual({ enc: "ssh-rsa", key: KEY2 });
    expect(parseKeyLine("# ssh-rsa AAAA")).toBeUndefined();
    expect(parseKeyLine("garbage here")).toBeUndefined();
  });
});

describe.skipIf(!canUsers)("ssh_auth.present / absent", () => {
  it("creates ~/.ssh 0700 and the file 0600 owned by the user; second run no change; test mode", async () => {
    const p = { name: KEY1, user, enc: "ssh-ed25519", comment: "zester test" };
    const dry = await runState(present, p, ctx(true));
    expect(dry.result, dry.comment).toBe(true);
    expect(dry.pending).toBe(true);
    await expect(stat(join(home, ".ssh"))).rejects.toThrow(/ENOENT/);

    const first = await runState(present, p, ctx());
    expect(first.result, first.comment).toBe(true);
    expect(first.changes).toMatchObject({ user, added: true });
    expect(await readFile(keysFile(), "utf8")).toBe(`ssh-ed25519 ${KEY1} zester test\n`);
    const uid = Number((await run(["id", "-u", user])).stdout.trim());
    const dirSt = await stat(join(home, ".ssh"));
    const fileSt = await stat(keysFile());
    expect(dirSt.mode & 0o777).toBe(0o700);
    expect(fileSt.mode & 0o777).toBe(0o600);
    expect([dirSt.uid, fileSt.uid]).toEqual([uid, uid]);

    const second = await runState(present, p, ctx());
    expect(second.changed).toBe(false);
    expect(second.comment).toMatch(/already authorized/);
  });

  it("a full line works as name; changed options rewrite the line in place, others kept", async () => {
    const other = `# keep me\nssh-rsa ${KEY2} other@host\n`;
    await runState(present, { name: `ssh-ed25519 ${KEY1} a@b`, user }, ctx());
    await writeFile(keysFile(), `${other}ssh-ed25519 ${KEY1} a@b\n# tail`);
    const r = await runState(present, { name: `ssh-ed25519 ${KEY1} a@b`, user, options: ["no-pty"] }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changes).toMatchObject({
      old: `ssh-ed25519 ${KEY1} a@b`,
      new: `no-pty ssh-ed25519 ${KEY1} a@b`,
    });
    expect(await readFile(keysFile(), "utf8")).toBe(`${other}no-pty ssh-ed25519 ${KEY1} a@b\n# tail`);

    const dry = await runState(absent, { name: KEY1, user }, ctx(true));
    expect(dry.pending).toBe(true);
    const gone = await runState(absent, { name: `ssh-ed25519 ${KEY1}`, user }, ctx());
    expect(gone.result, gone.comment).toBe(true);
    expect(await readFile(keysFile(), "utf8")).toBe(`${other}# tail`);
    expect((await runState(absent, { name: KEY1, user }, ctx())).changed).toBe(false);
    expect(await family.exec!.auth_keys!.run({ user }, ctx())).toEqual([
      { enc: "ssh-rsa", key: KEY2, comment: "other@host" },
    ]);
  });

  it("rejects bad input clearly", async () => {
    const cases = [
      [{ name: "not a key at all", user }, /not an authorized_keys line/],
      [{ name: "!!notbase64", user }, /not a public key/],
      [{ name: KEY1, user, enc: "rsa" }, /enc: "rsa" is not an SSH key type/],
      [{ name: KEY1, user: "zt-no-such-user" }, /user "zt-no-such-user" does not exist/],
    ] as const;
    for (const [params, msg] of cases) {
      const r = await runState(present, params, ctx());
      expect(r.result).toBe(false);
      expect(r.comment).toMatch(msg);
    }
    await expect(stat(join(home, ".ssh"))).rejects.toThrow(/ENOENT/);
  });

  it("refuses to write through a symlinked key file or .ssh directory", async () => {
    await mkdir(join(home, ".ssh"));
    await symlink("/etc/passwd", keysFile());
    const r = await runState(present, { name: KEY1, user }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/authorized_keys is a symbolic link; refusing/);
    await rm(join(home, ".ssh"), { recursive: true });
    await symlink("/etc", join(home, ".ssh"));
    const d = await runState(present, { name: KEY1, user }, ctx());
    expect(d.result).toBe(false);
    expect(d.comment).toMatch(/\.ssh is a symbolic link/);
    expect((await lstat("/etc/passwd")).isFile()).toBe(true);
  });
});
