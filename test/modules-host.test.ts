import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { family } from "../src/modules/host.js";
import { moduleContext, runState, tempDir } from "./support/module-context.js";

const present = family.states.present!;
const absent = family.states.absent!;

const ORIGINAL = [
  "127.0.0.1\tlocalhost",
  "::1     localhost ip6-localhost ip6-loopback   # v6",
  "",
  "# a comment with 10.0.0.9 zt-web",
  "10.0.0.5    db.internal\tdb   # database",
  "",
].join("\n");

let dir = "";
let file = "";
let cleanup: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir("zester-host-"));
  file = join(dir, "hosts");
  await writeFile(file, ORIGINAL, { mode: 0o640 });
});
afterEach(() => cleanup());

const ctx = (test = false) => moduleContext({ test });
const hosts = () => readFile(file, "utf8");

describe("host.present", () => {
  it("adds a new line, then no change; test mode changes nothing; the mode is kept", async () => {
    const p = { name: "zt-web", ip: "10.0.0.9", file };
    const dry = await runState(present, p, ctx(true));
    expect(dry.result, dry.comment).toBe(true);
    expect(dry.pending).toBe(true);
    expect(dry.diff).toMatch(/^\+10\.0\.0\.9\tzt-web$/m);
    expect(await hosts()).toBe(ORIGINAL);

    const first = await runState(present, p, ctx());
    expect(first.result, first.comment).toBe(true);
    expect(first.changes).toEqual({ host: "zt-web", added: ["10.0.0.9"] });
    expect(await hosts()).toBe(`${ORIGINAL}10.0.0.9\tzt-web\n`);
    expect((await stat(file)).mode & 0o777).toBe(0o640);

    const second = await runState(present, p, ctx());
    expect(second.changed).toBe(false);
    expect(second.comment).toMatch(/already points to 10\.0\.0\.9/);
  });

  it("appends the name to an existing line of the address, keeping spacing and comment", async () => {
    const r = await runState(present, { name: "pg", ip: ["10.0.0.5", "::1"], hosts_file: file }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changes).toEqual({ host: "pg", added: ["10.0.0.5", "::1"] });
    expect(await hosts()).toBe(
      ORIGINAL.replace(
        "10.0.0.5    db.internal\tdb   # database",
        "10.0.0.5    db.internal\tdb pg # database",
      ).replace(
        "::1     localhost ip6-localhost ip6-loopback   # v6",
        "::1     localhost ip6-localhost ip6-loopback pg # v6",
      ),
    );
  });

  it("repairs drift: clean moves the name off other addresses", async () => {
    await writeFile(file, `${ORIGINAL}10.0.0.1 zt-app other\n10.0.0.2 zt-app\n`);
    const p = { name: "zt-app", ip: "10.0.0.3", clean: true, file };
    const r = await runState(present, p, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changes).toEqual({ host: "zt-app", added: ["10.0.0.3"], removed: ["10.0.0.1", "10.0.0.2"] });
    expect(await hosts()).toBe(`${ORIGINAL}10.0.0.1 other\n10.0.0.3\tzt-app\n`);
    expect((await runState(present, p, ctx())).changed).toBe(false);
  });

  it("rejects bad input clearly and leaves the file alone", async () => {
    const cases = [
      [{ name: "web", ip: "10.0.0.300", file }, /ip: "10\.0\.0\.300" is not an IP address/],
      [{ name: "bad name", ip: "10.0.0.1", file }, /not a valid host name/],
      [{ name: "web", file }, /ip is required|required parameter "ip"/],
      [{ name: "web", ip: "10.0.0.1", file: "relative/hosts" }, /file must be an absolute path/],
    ] as const;
    for (const [params, msg] of cases) {
      const r = await runState(present, params, ctx());
      expect(r.result).toBe(false);
      expect(r.comment).toMatch(msg);
    }
    expect(await hosts()).toBe(ORIGINAL);
  });

  it("a hosts path that is a directory fails instead of being treated as empty", async () => {
    const r = await runState(present, { name: "web", ip: "10.0.0.1", file: dir }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/EISDIR/);
  });
});

describe("host on a copy of this machine's /etc/hosts", () => {
  it("adding then removing a name gives back the exact original bytes", async () => {
    const real = await readFile("/etc/hosts", "utf8");
    await writeFile(file, real);
    const add = await runState(
      present,
      { name: "zt-copy.example", ip: ["192.0.2.7", "127.0.0.1"], file },
      ctx(),
    );
    expect(add.result, add.comment).toBe(true);
    expect(await hosts()).not.toBe(real);
    const del = await runState(absent, { name: "zt-copy.example", file }, ctx());
    expect(del.result, del.comment).toBe(true);
    expect(await hosts()).toBe(real);
  });
});

describe("host.absent", () => {
  it("removes the name from one address or all; drops lines left without names", async () => {
    await writeFile(file, `${ORIGINAL}10.0.0.1 zt-app other\n10.0.0.2 zt-app\n`);
    const dry = await runState(absent, { name: "zt-app", ip: "10.0.0.1", file }, ctx(true));
    expect(dry.pending).toBe(true);
    const one = await runState(absent, { name: "zt-app", ip: "10.0.0.1", file }, ctx());
    expect(one.changes).toEqual({ host: "zt-app", removed: ["10.0.0.1"] });
    expect(await hosts()).toBe(`${ORIGINAL}10.0.0.1 other\n10.0.0.2 zt-app\n`);
    const all = await runState(absent, { name: "zt-app", file }, ctx());
    expect(all.changes).toEqual({ host: "zt-app", removed: ["10.0.0.2"] });
    expect(await hosts()).toBe(`${ORIGINAL}10.0.0.1 other\n`);
    expect((await runState(absent, { name: "zt-app", file }, ctx())).changed).toBe(false);
    expect(await family.exec!.list_hosts!.run({ file }, ctx())).toMatchObject({ "10.0.0.1": ["other"] });
  });
});

describe("host.only", () => {
  const only = family.states.only!;
  it("sets exactly the names of an address on its first line, drops its other lines, then no change", async () => {
    await writeFile(file, `${ORIGINAL}10.0.0.5 db-old\n`);
    const p = { name: "10.0.0.5", hostnames: ["db.example.net", "db"], file };
    const dry = await runState(only, p, ctx(true));
    expect(dry).toMatchObject({ result: true, pending: true });
    expect(await hosts()).toBe(`${ORIGINAL}10.0.0.5 db-old\n`);

    const r = await runState(only, p, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changes).toEqual({ "10.0.0.5": { old: "db.internal db db-old", new: "db.example.net db" } });
    expect(await hosts()).toBe(
      ORIGINAL.replace("10.0.0.5    db.internal\tdb   # database", "10.0.0.5\t\tdb.example.net db"),
    );
    const again = await runState(only, p, ctx());
    expect(again.changed).toBe(false);
    expect(again.comment).toBe('IP address 10.0.0.5 already set to "db.example.net db"');
  });

  it("appends a line for a new address (one name as a string); comments naming it are left alone", async () => {
    const r = await runState(only, { name: "10.0.0.9", hostnames: "zt-web", file }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(await hosts()).toBe(`${ORIGINAL}10.0.0.9\t\tzt-web\n`);
  });

  it("no names removes the address; a bad address is refused and nothing is written", async () => {
    await runState(only, { name: "10.0.0.5", hostnames: [], file }, ctx());
    expect(await hosts()).not.toContain("10.0.0.5 ");
    expect(await hosts()).toContain("# a comment with 10.0.0.9");
    const before = await hosts();
    const bad = await runState(only, { name: "db.internal", hostnames: ["x"], file }, ctx());
    expect(bad.result).toBe(false);
    expect(bad.comment).toMatch(/not an IP address/);
    expect(await hosts()).toBe(before);
  });
});
