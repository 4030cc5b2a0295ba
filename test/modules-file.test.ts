import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import {
  chmod,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { unifiedDiff } from "../src/modules/diff.js";
import { family, formatMode, parseMode } from "../src/modules/file.js";
import type { Params } from "../src/modules/types.js";
import { moduleContext, type RunResult, runState, tempDir } from "./support/module-context.js";

const fn = (name: string) => {
  const f = family.states[name];
  if (!f) throw new Error(`no file.${name}`);
  return f;
};

/** Everything observable about a tree: type, mode, owner, mtime, content hash, link target. */
async function snapshot(root: string): Promise<string> {
  const out: string[] = [];
  const visit = async (path: string, rel: string) => {
    const st = await lstat(path);
    let extra = "";
    if (st.isFile())
      extra = createHash("sha256")
        .update(await readFile(path))
        .digest("hex");
    if (st.isSymbolicLink()) extra = `-> ${await readlink(path)}`;
    out.push(`${rel} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.mtimeMs} ${st.size} ${extra}`);
    if (st.isDirectory())
      for (const n of (await readdir(path)).sort()) await visit(join(path, n), `${rel}/${n}`);
  };
  await visit(root, ".");
  return out.join("\n");
}

const text = async (p: string) => (await readFile(p)).toString("utf8");
const exists = async (p: string) =>
  lstat(p).then(
    () => true,
    () => false,
  );

interface Case {
  state: string;
  setup?(dir: string): Promise<void>;
  params(dir: string): Params;
  verify(dir: string): Promise<void>;
  drift(dir: string): Promise<void>;
  bad(dir: string): Params;
  badComment: RegExp;
  /** Params where reading the system fails with something other than ENOENT. */
  unreadable?(dir: string): Params;
}

// A path below a regular file: stat/read fail with ENOTDIR, which must never mean "absent".
const blocked = (dir: string) => join(dir, "blocker", "target");
const unreadableComment = /ENOTDIR|not a directory/i;

const cases: Case[] = [
  {
    state: "managed",
    params: (d) => ({ name: join(d, "f.conf"), contents: "hello\n", mode: "0640" }),
    verify: async (d) => {
      expect(await text(join(d, "f.conf"))).toBe("hello\n");
      expect((await stat(join(d, "f.conf"))).mode & 0o7777).toBe(0o640);
    },
    drift: async (d) => {
      await writeFile(join(d, "f.conf"), "tampered\n");
      await chmod(join(d, "f.conf"), 0o666);
    },
    bad: () => ({ name: "relative/f.conf", contents: "x" }),
    badComment: /absolute path/,
    unreadable: (d) => ({ name: blocked(d), contents: "x" }),
  },
  {
    state: "directory",
    params: (d) => ({ name: join(d, "sub"), dir_mode: "0750" }),
    verify: async (d) => {
      const st = await stat(join(d, "sub"));
      expect(st.isDirectory()).toBe(true);
      expect(st.mode & 0o7777).toBe(0o750);
    },
    drift: async (d) => chmod(join(d, "sub"), 0o777),
    bad: (d) => ({ name: join(d, "sub"), dir_mode: "rwxr-x---" }),
    badComment: /not a valid file mode/,
    unreadable: (d) => ({ name: blocked(d) }),
  },
  {
    state: "absent",
    setup: async (d) => writeFile(join(d, "gone"), "x"),
    params: (d) => ({ name: join(d, "gone") }),
    verify: async (d) => expect(await exists(join(d, "gone"))).toBe(false),
    drift: async (d) => mkdir(join(d, "gone", "deep"), { recursive: true }).then(() => undefined),
    bad: () => ({ name: "/" }),
    badComment: /Refusing to remove/,
    unreadable: (d) => ({ name: blocked(d) }),
  },
  {
    state: "append",
    setup: async (d) => writeFile(join(d, "f"), "a\n"),
    params: (d) => ({ name: join(d, "f"), text: ["b", "c"] }),
    verify: async (d) => expect(await text(join(d, "f"))).toBe("a\nb\nc\n"),
    drift: async (d) => writeFile(join(d, "f"), "a\nb"),
    bad: (d) => ({ name: join(d, "f"), text: [] }),
    badComment: /text is required/,
    unreadable: (d) => ({ name: blocked(d), text: "x" }),
  },
  {
    state: "line",
    setup: async (d) => writeFile(join(d, "f"), "a\nb\n"),
    params: (d) => ({ name: join(d, "f"), content: "x", mode: "insert", after: "^a$" }),
    verify: async (d) => expect(await text(join(d, "f"))).toBe("a\nx\nb\n"),
    drift: async (d) => writeFile(join(d, "f"), "a\nb\n"),
    bad: (d) => ({ name: join(d, "f"), content: "x", mode: "ensure" }),
    badComment: /needs after or before/,
    unreadable: (d) => ({ name: blocked(d), content: "x", mode: "insert" }),
  },
  {
    state: "replace",
    setup: async (d) => writeFile(join(d, "f"), "# cfg\nport=80\n"),
    params: (d) => ({ name: join(d, "f"), pattern: "^port=\\d+$", repl: "port=8080" }),
    verify: async (d) => expect(await text(join(d, "f"))).toBe("# cfg\nport=8080\n"),
    drift: async (d) => writeFile(join(d, "f"), "# cfg\nport=81\n"),
    bad: (d) => ({ name: join(d, "f"), pattern: "(", repl: "x" }),
    badComment: /Invalid regular expression/,
    unreadable: (d) => ({ name: blocked(d), pattern: "a", repl: "b" }),
  },
  {
    state: "blockreplace",
    setup: async (d) => writeFile(join(d, "f"), "top\n#start\nold\n#end\nbottom\n"),
    params: (d) => ({
      name: join(d, "f"),
      marker_start: "#start",
      marker_end: "#end",
      content: "new1\nnew2",
    }),
    verify: async (d) => expect(await text(join(d, "f"))).toBe("top\n#start\nnew1\nnew2\n#end\nbottom\n"),
    drift: async (d) => writeFile(join(d, "f"), "top\n#start\nnew1\nhacked\n#end\nbottom\n"),
    bad: (d) => ({ name: join(d, "f"), marker_start: "#nothere", marker_end: "#end", content: "x" }),
    badComment: /marker_start "#nothere" not found/,
    unreadable: (d) => ({ name: blocked(d), marker_start: "a", marker_end: "b", content: "x" }),
  },
  {
    state: "symlink",
    setup: async (d) => writeFile(join(d, "target"), "t"),
    params: (d) => ({ name: join(d, "link"), target: join(d, "target") }),
    verify: async (d) => expect(await readlink(join(d, "link"))).toBe(join(d, "target")),
    drift: async (d) => {
      await rm(join(d, "link"));
      await symlink("/elsewhere", join(d, "link"));
    },
    bad: (d) => ({ name: join(d, "target"), target: "/x" }),
    badComment: /exists and is not a symlink.*force/,
    unreadable: (d) => ({ name: blocked(d), target: "/x" }),
  },
  {
    state: "touch",
    params: (d) => ({ name: join(d, "stamp") }),
    verify: async (d) => expect((await stat(join(d, "stamp"))).isFile()).toBe(true),
    drift: async (d) => rm(join(d, "stamp")),
    bad: (d) => ({ name: join(d, "stamp"), mtime: "not a date" }),
    badComment: /mtime must be/,
    unreadable: (d) => ({ name: blocked(d) }),
  },
  {
    state: "copy",
    setup: async (d) => writeFile(join(d, "src"), "payload\n"),
    params: (d) => ({ name: join(d, "dst"), source: join(d, "src"), force: true }),
    verify: async (d) => expect(await text(join(d, "dst"))).toBe("payload\n"),
    drift: async (d) => writeFile(join(d, "dst"), "changed\n"),
    bad: (d) => ({ name: join(d, "dst"), source: join(d, "missing") }),
    badComment: /Source .*missing does not exist/,
    unreadable: (d) => ({ name: join(d, "dst"), source: blocked(d) }),
  },
  {
    state: "recurse",
    setup: async (d) => {
      await mkdir(join(d, "src", "sub"), { recursive: true });
      await writeFile(join(d, "src", "a.txt"), "A\n");
      await writeFile(join(d, "src", "sub", "b.txt"), "B\n");
    },
    params: (d) => ({ name: join(d, "dst"), source: join(d, "src"), clean: true, file_mode: "0600" }),
    verify: async (d) => {
      expect(await text(join(d, "dst", "a.txt"))).toBe("A\n");
      expect(await text(join(d, "dst", "sub", "b.txt"))).toBe("B\n");
      expect((await stat(join(d, "dst", "a.txt"))).mode & 0o7777).toBe(0o600);
      expect((await readdir(join(d, "dst"))).sort()).toEqual(["a.txt", "sub"]);
    },
    drift: async (d) => {
      await writeFile(join(d, "dst", "a.txt"), "tampered\n");
      await writeFile(join(d, "dst", "extra"), "x");
      await mkdir(join(d, "dst", "extradir"));
    },
    bad: (d) => ({ name: join(d, "dst"), source: join(d, "nope") }),
    badComment: /Source directory .*nope does not exist/,
    unreadable: (d) => ({ name: blocked(d), source: join(d, "src") }),
  },
  {
    state: "comment",
    setup: async (d) => writeFile(join(d, "f"), "foo=1\nbar=2\n"),
    params: (d) => ({ name: join(d, "f"), regex: "^foo" }),
    verify: async (d) => expect(await text(join(d, "f"))).toBe("#foo=1\nbar=2\n"),
    drift: async (d) => writeFile(join(d, "f"), "foo=1\nbar=2\n"),
    bad: (d) => ({ name: join(d, "f"), regex: "[" }),
    badComment: /Invalid regular expression/,
    unreadable: (d) => ({ name: blocked(d), regex: "x" }),
  },
  {
    state: "uncomment",
    setup: async (d) => writeFile(join(d, "f"), "# foo=1\nbar=2\n"),
    params: (d) => ({ name: join(d, "f"), regex: "^foo" }),
    verify: async (d) => expect(await text(join(d, "f"))).toBe("foo=1\nbar=2\n"),
    drift: async (d) => writeFile(join(d, "f"), "#foo=1\nbar=2\n"),
    bad: (d) => ({ name: join(d, "missing"), regex: "x" }),
    badComment: /does not exist/,
    unreadable: (d) => ({ name: blocked(d), regex: "x" }),
  },
  {
    state: "keyvalue",
    setup: async (d) => writeFile(join(d, "sshd"), "#PermitRootLogin yes\nPort 22\n"),
    params: (d) => ({
      name: join(d, "sshd"),
      key_values: { PermitRootLogin: "no", Port: 2222, UseDNS: "no" },
      separator: " ",
      uncomment: "#",
      append_if_not_found: true,
    }),
    verify: async (d) =>
      expect(await text(join(d, "sshd"))).toBe("PermitRootLogin no\nPort 2222\nUseDNS no\n"),
    drift: async (d) => writeFile(join(d, "sshd"), "PermitRootLogin yes\nPort 2222\nUseDNS no\n"),
    bad: (d) => ({ name: join(d, "sshd"), key_values: { Port: 1 }, separator: "" }),
    badComment: /separator must not be empty/,
    unreadable: (d) => ({ name: blocked(d), key_values: { a: 1 } }),
  },
];

let dir = "";
let cleanup: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  await writeFile(join(dir, "blocker"), "I am a file, not a directory");
});
afterEach(() => cleanup());

const ctx = (test = false) => moduleContext({ test, statesDir: dir });

function expectChanged(r: RunResult) {
  expect(r.comment).toBeTypeOf("string");
  expect(r.result, r.comment).toBe(true);
  expect(r.changed, r.comment).toBe(true);
}

function expectClean(r: RunResult) {
  expect(r.result, r.comment).toBe(true);
  expect(r.changed, `${r.comment} ${JSON.stringify(r.changes)}`).toBe(false);
  expect(r.changes).toEqual({});
}

for (const c of cases) {
  describe(`file.${c.state}`, () => {
    it("test mode reports pending changes and touches nothing", async () => {
      await c.setup?.(dir);
      const before = await snapshot(dir);
      const r = await runState(fn(c.state), c.params(dir), ctx(true));
      expect(r.result, r.comment).toBe(true);
      expect(r.pending, r.comment).toBe(true);
      expect(Object.keys(r.changes).length).toBeGreaterThan(0);
      expect(await snapshot(dir)).toBe(before);
    });

    it("applies, then is idempotent, then repairs drift", async () => {
      await c.setup?.(dir);
      expectChanged(await runState(fn(c.state), c.params(dir), ctx()));
      await c.verify(dir);
      expectClean(await runState(fn(c.state), c.params(dir), ctx()));
      await c.verify(dir);
      await c.drift(dir);
      const fixed = await runState(fn(c.state), c.params(dir), ctx());
      expectChanged(fixed);
      await c.verify(dir);
      expectClean(await runState(fn(c.state), c.params(dir), ctx()));
    });

    it("fails on bad input with a clear comment", async () => {
      await c.setup?.(dir);
      const before = await snapshot(dir);
      const r = await runState(fn(c.state), c.bad(dir), ctx());
      expect(r.result).toBe(false);
      expect(r.comment).toMatch(c.badComment);
      expect(await snapshot(dir)).toBe(before);
    });

    if (c.unreadable) {
      const unreadable = c.unreadable;
      it("fails (never treats as absent) on a non-ENOENT error", async () => {
        await c.setup?.(dir);
        const r = await runState(fn(c.state), unreadable(dir), ctx());
        expect(r.result, r.comment).toBe(false);
        expect(r.comment).toMatch(unreadableComment);
        expect(await text(join(dir, "blocker"))).toBe("I am a file, not a directory");
      });
    }
  });
}

describe("modes", () => {
  it("reads digits as octal in every spelling", () => {
    expect(parseMode("0644")).toBe(0o644);
    expect(parseMode("644")).toBe(0o644);
    expect(parseMode(644)).toBe(0o644);
    expect(parseMode("0o755")).toBe(0o755);
    expect(parseMode(1777)).toBe(0o1777);
    expect(parseMode(undefined)).toBeUndefined();
    expect(formatMode(0o100640)).toBe("0640");
  });
  it("rejects what is not an octal mode instead of guessing", () => {
    expect(() => parseMode("0999")).toThrow(/not a valid file mode/);
    expect(() => parseMode(493)).toThrow(/already converted/); // 0o755 read by YAML as 493
    expect(() => parseMode(420)).toThrow(/YAML reads 0o644 as 420\); quote it: "0644"/);
    expect(() => parseMode(416)).toThrow(/ambiguous/); // 0o640
    expect(() => parseMode(511)).toThrow(/ambiguous/); // 0o777
    expect(() => parseMode(256)).toThrow(/ambiguous/); // 0o400
    expect(parseMode("420")).toBe(0o420); // a string is taken at its word
    for (const m of [
      600, 640, 644, 660, 664, 700, 711, 750, 755, 775, 777, 400, 440, 444, 1777, 2755, 4755, 0,
    ]) {
      expect(parseMode(m)).toBe(Number.parseInt(String(m), 8));
    }
    expect(() => parseMode("u+x")).toThrow(/not a valid file mode/);
    expect(() => parseMode(12345)).toThrow(/not a valid file mode/);
  });
  it("file.managed applies a numeric YAML mode as octal", async () => {
    const f = join(dir, "m");
    const r = await runState(fn("managed"), { path: f, content: "x", mode: 600 }, ctx());
    expectChanged(r);
    expect((await stat(f)).mode & 0o7777).toBe(0o600);
    expect(r.changes.mode).toBe("0600");
  });
});

describe("file.managed details", () => {
  it("reports a unified diff and keeps owner and mode of an existing file", async () => {
    const f = join(dir, "cfg");
    await writeFile(f, "a\nb\nc\n");
    await chmod(f, 0o600);
    const r = await runState(fn("managed"), { name: f, contents: ["a", "B", "c"] }, ctx());
    expectChanged(r);
    expect(r.diff).toBe(`--- ${f}\n+++ ${f}\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n`);
    expect(await text(f)).toBe("a\nB\nc\n");
    expect((await stat(f)).mode & 0o7777).toBe(0o600);
  });

  it("test mode shows the same diff the apply makes", async () => {
    const f = join(dir, "cfg");
    await writeFile(f, "one\n");
    const t = await runState(fn("managed"), { name: f, contents: "two" }, ctx(true));
    const a = await runState(fn("managed"), { name: f, contents: "two" }, ctx());
    expect(t.diff).toBe(a.diff);
    expect(t.diff).toContain("-one\n+two\n");
  });

  it("renders salt:// jinja sources with context over defaults", async () => {
    await mkdir(join(dir, "files"));
    await writeFile(join(dir, "files", "app.conf"), "os={{ facts.os }} port={{ port }} name={{ name }}\n");
    const f = join(dir, "out", "app.conf");
    const r = await runState(
      fn("managed"),
      {
        name: f,
        source: ["salt://files/missing.conf", "salt://files/app.conf"],
        template: "jinja",
        defaults: { port: 1, name: "dflt" },
        context: { port: 8080 },
        makedirs: true,
      },
      ctx(),
    );
    expectChanged(r);
    expect(await text(f)).toBe("os=Debian port=8080 name=dflt\n");
  });

  it("fails when the parent is missing without makedirs, and for a missing source", async () => {
    const r = await runState(fn("managed"), { name: join(dir, "no", "f"), contents: "x" }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/makedirs/);
    const s = await runState(fn("managed"), { name: join(dir, "f"), source: "salt://nope" }, ctx());
    expect(s.result).toBe(false);
    expect(s.comment).toMatch(/Source not found/);
  });

  it("a dry run does not fail on a missing parent (an earlier state may create it), as in Salt", async () => {
    const missing = join(dir, "pkg-owned", "f");
    const t = await runState(fn("managed"), { name: missing, contents: "x" }, ctx(true));
    expect(t).toMatchObject({ result: true, pending: true });
    const d = await runState(fn("directory"), { name: join(dir, "pkg-owned", "d") }, ctx(true));
    expect(d).toMatchObject({ result: true, pending: true });
    expect(existsSync(join(dir, "pkg-owned"))).toBe(false);
    // The real run still refuses to invent the directory.
    const r = await runState(fn("managed"), { name: missing, contents: "x" }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/makedirs/);
  });

  it("fails when the source cannot be read (a directory)", async () => {
    await mkdir(join(dir, "srcdir"));
    const r = await runState(fn("managed"), { name: join(dir, "f"), source: join(dir, "srcdir") }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/EISDIR/);
  });

  it("fails when name is a directory", async () => {
    const r = await runState(fn("managed"), { name: dir, contents: "x" }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/not a regular file/);
  });

  it("replace: false creates but never rewrites", async () => {
    const f = join(dir, "once");
    expectChanged(await runState(fn("managed"), { name: f, contents: "first", replace: false }, ctx()));
    await writeFile(f, "edited by hand\n");
    expectClean(await runState(fn("managed"), { name: f, contents: "first", replace: false }, ctx()));
    expect(await text(f)).toBe("edited by hand\n");
  });

  it("backup keeps a sibling copy of the old file", async () => {
    const f = join(dir, "b.conf");
    await writeFile(f, "old\n");
    expectChanged(await runState(fn("managed"), { name: f, contents: "new", backup: "minion" }, ctx()));
    const baks = (await readdir(dir)).filter((n) => /^b\.conf\.\d{8}T\d{6}Z\.bak$/.test(n));
    expect(baks).toHaveLength(1);
    expect(await text(join(dir, baks[0]!))).toBe("old\n");
  });

  it("sets owner and group by name and detects ownership drift", async () => {
    const f = join(dir, "owned");
    const r = await runState(fn("managed"), { name: f, contents: "x", user: "nobody", group: 0 }, ctx());
    expectChanged(r);
    const st = await stat(f);
    expect(st.uid).toBe(65534);
    expect(st.gid).toBe(0);
    expect(r.changes.user).toBe("nobody");
    expectClean(await runState(fn("managed"), { name: f, contents: "x", user: "nobody", group: 0 }, ctx()));
    const bad = await runState(fn("managed"), { name: f, contents: "x", user: "no-such-user-zester" }, ctx());
    expect(bad.result).toBe(false);
    expect(bad.comment).toMatch(/user "no-such-user-zester" does not exist/);
  });

  it("writes through a symlink to its target", async () => {
    const real = join(dir, "real");
    await writeFile(real, "a\n");
    await symlink(real, join(dir, "alias"));
    expectChanged(await runState(fn("managed"), { name: join(dir, "alias"), contents: "b" }, ctx()));
    expect((await lstat(join(dir, "alias"))).isSymbolicLink()).toBe(true);
    expect(await text(real)).toBe("b\n");
  });

  it("manages a file under a symlinked directory in the directory the link points to", async () => {
    const realDir = join(dir, "real-dir");
    await mkdir(realDir);
    await symlink(realDir, join(dir, "dir-alias"));
    const f = join(dir, "dir-alias", "conf");
    expectChanged(await runState(fn("managed"), { name: f, contents: "c" }, ctx()));
    expect((await lstat(join(dir, "dir-alias"))).isSymbolicLink()).toBe(true);
    expect(await text(join(realDir, "conf"))).toBe("c\n");
    expect((await runState(fn("managed"), { name: f, contents: "c" }, ctx())).changed).toBe(false);
  });

  it("show_changes: false hides the diff; contents_newline: false keeps the text as given", async () => {
    const f = join(dir, "quiet");
    const r = await runState(
      fn("managed"),
      { name: f, contents: "secret", show_changes: false, contents_newline: false },
      ctx(),
    );
    expectChanged(r);
    expect(r.diff).toBeUndefined();
    expect(await text(f)).toBe("secret");
  });

  it("create: false leaves a missing file missing", async () => {
    const f = join(dir, "maybe");
    expectClean(await runState(fn("managed"), { name: f, contents: "x", create: false }, ctx()));
    expect(await exists(f)).toBe(false);
  });

  it("rejects contents and source together", async () => {
    const r = await runState(
      fn("managed"),
      { name: join(dir, "x"), contents: "a", source: "/etc/hostname" },
      ctx(),
    );
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/either contents or source/);
  });
});

describe("file edits", () => {
  it("file.replace understands Python groups and appends when not found", async () => {
    const f = join(dir, "f");
    await writeFile(f, "name = alice\n");
    expectChanged(
      await runState(
        fn("replace"),
        { name: f, pattern: "^(?P<key>name) = (\\w+)$", repl: "\\g<key> = bob (was \\2)" },
        ctx(),
      ),
    );
    expect(await text(f)).toBe("name = bob (was alice)\n");
    const p = { name: f, pattern: "^colour=.*$", repl: "colour=blue", append_if_not_found: true };
    expectChanged(await runState(fn("replace"), p, ctx()));
    expect(await text(f)).toBe("name = bob (was alice)\ncolour=blue\n");
    expectClean(await runState(fn("replace"), p, ctx()));
  });

  it("file.replace respects count and IGNORECASE", async () => {
    const f = join(dir, "f");
    await writeFile(f, "A a A a\n");
    expectChanged(
      await runState(
        fn("replace"),
        { name: f, pattern: "a", repl: "x", count: 2, flags: ["IGNORECASE"] },
        ctx(),
      ),
    );
    expect(await text(f)).toBe("x x A a\n");
  });

  it("file.line ensure, replace and delete", async () => {
    const f = join(dir, "f");
    await writeFile(f, "[main]\nold=1\nz=9\n");
    const ensure = { name: f, content: "new=2", match: "^old=", mode: "ensure", after: "^\\[main\\]$" };
    expectChanged(await runState(fn("line"), ensure, ctx()));
    expect(await text(f)).toBe("[main]\nnew=2\nz=9\n");
    expectClean(await runState(fn("line"), ensure, ctx()));
    expectChanged(
      await runState(fn("line"), { name: f, content: "zz=10", match: "^z=", mode: "replace" }, ctx()),
    );
    expect(await text(f)).toBe("[main]\nnew=2\nzz=10\n");
    expectChanged(await runState(fn("line"), { name: f, match: "^new=", mode: "delete" }, ctx()));
    expect(await text(f)).toBe("[main]\nzz=10\n");
    const missing = await runState(
      fn("line"),
      { name: join(dir, "nofile"), content: "x", mode: "insert" },
      ctx(),
    );
    expect(missing.result).toBe(false);
    expect(missing.comment).toMatch(/does not exist/);
  });

  it("file.blockreplace appends markers when asked", async () => {
    const f = join(dir, "f");
    await writeFile(f, "keep\n");
    const p = {
      name: f,
      marker_start: "# BEGIN z",
      marker_end: "# END z",
      content: ["l1", "l2"],
      append_if_not_found: true,
    };
    expectChanged(await runState(fn("blockreplace"), p, ctx()));
    expect(await text(f)).toBe("keep\n# BEGIN z\nl1\nl2\n# END z\n");
    expectClean(await runState(fn("blockreplace"), p, ctx()));
  });

  it("file.append treats multi-line text as one block", async () => {
    const f = join(dir, "new", "f");
    const p = { name: f, text: "line one\nline two\n", makedirs: true };
    expectChanged(await runState(fn("append"), p, ctx()));
    expectClean(await runState(fn("append"), p, ctx()));
    expect(await text(f)).toBe("line one\nline two\n");
  });

  it("file.line refuses a binary file", async () => {
    const f = join(dir, "bin");
    await writeFile(f, Buffer.from([0, 1, 2, 255]));
    const r = await runState(fn("line"), { name: f, content: "x", mode: "insert" }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/not a text file/);
  });
});

describe("file.directory recurse", () => {
  it("applies user/group/mode below the directory", async () => {
    const d = join(dir, "tree");
    await mkdir(join(d, "a"), { recursive: true });
    await writeFile(join(d, "a", "f"), "x");
    await chmod(join(d, "a", "f"), 0o644);
    const p = { name: d, user: "nobody", dir_mode: "0750", file_mode: "0640", recurse: ["user", "mode"] };
    const r = await runState(fn("directory"), p, ctx());
    expectChanged(r);
    expect(Object.keys(r.changes.recurse as object).sort()).toEqual(["a", "a/f"]);
    expect((await stat(join(d, "a", "f"))).mode & 0o7777).toBe(0o640);
    expect((await stat(join(d, "a"))).mode & 0o7777).toBe(0o750);
    expect((await stat(join(d, "a", "f"))).uid).toBe(65534);
    expectClean(await runState(fn("directory"), p, ctx()));
  });

  it("takes dir_mode over mode when both are given, as Salt does (users formula)", async () => {
    const d = join(dir, "keys");
    const p = { name: d, mode: "0700", dir_mode: "0750" };
    const r = await runState(fn("directory"), p, ctx());
    expectChanged(r);
    expect((await stat(d)).mode & 0o7777).toBe(0o750);
    expectClean(await runState(fn("directory"), p, ctx()));
  });

  it("gives files the directory's mode when file_mode is not given (Salt's default)", async () => {
    const d = join(dir, "plain");
    await mkdir(join(d, "sub"), { recursive: true });
    await writeFile(join(d, "sub", "f"), "x");
    await chmod(join(d, "sub", "f"), 0o644);
    const p = { name: d, mode: "0750", recurse: ["mode"] };
    expectChanged(await runState(fn("directory"), p, ctx()));
    expect((await stat(d)).mode & 0o7777).toBe(0o750);
    expect((await stat(join(d, "sub"))).mode & 0o7777).toBe(0o750);
    expect((await stat(join(d, "sub", "f"))).mode & 0o7777).toBe(0o750);
    expectClean(await runState(fn("directory"), p, ctx()));
  });

  it("refuses clean and a file in the way", async () => {
    const r = await runState(fn("directory"), { name: join(dir, "x"), clean: true }, ctx());
    expect(r.comment).toMatch(/file.recurse/);
    const s = await runState(fn("directory"), { name: join(dir, "blocker") }, ctx());
    expect(s.result).toBe(false);
    expect(s.comment).toMatch(/not a directory/);
  });
});

describe("other states", () => {
  it("file.symlink with force replaces a file", async () => {
    const l = join(dir, "l");
    await writeFile(l, "in the way");
    const r = await runState(fn("symlink"), { name: l, target: "/etc/hostname", force: true }, ctx());
    expectChanged(r);
    expect(r.changes.replaced).toBe("file");
    expect(await readlink(l)).toBe("/etc/hostname");
  });

  it("file.touch sets mtime only when asked", async () => {
    const f = join(dir, "t");
    await writeFile(f, "");
    expectClean(await runState(fn("touch"), { name: f }, ctx()));
    expectChanged(await runState(fn("touch"), { name: f, mtime: 1_000_000_000 }, ctx()));
    expect(Math.floor((await stat(f)).mtimeMs / 1000)).toBe(1_000_000_000);
    expectClean(await runState(fn("touch"), { name: f, mtime: 1_000_000_000 }, ctx()));
  });

  it("file.copy without force leaves a differing destination alone", async () => {
    await writeFile(join(dir, "s"), "source\n");
    await writeFile(join(dir, "d"), "mine\n");
    const r = await runState(fn("copy"), { name: join(dir, "d"), source: join(dir, "s") }, ctx());
    expectClean(r);
    expect(r.comment).toMatch(/force/);
    expect(await text(join(dir, "d"))).toBe("mine\n");
  });

  it("file.copy preserve copies the mode", async () => {
    await writeFile(join(dir, "s"), "x");
    await chmod(join(dir, "s"), 0o751);
    expectChanged(
      await runState(fn("copy"), { name: join(dir, "d"), source: join(dir, "s"), preserve: true }, ctx()),
    );
    expect((await stat(join(dir, "d"))).mode & 0o7777).toBe(0o751);
  });

  it("file.recurse renders templates and reports diffs", async () => {
    await mkdir(join(dir, "tpl"));
    await writeFile(join(dir, "tpl", "motd"), "Welcome to {{ facts.os }}\n");
    const binary = Buffer.from([0, 123, 123, 32, 120, 32, 125, 125, 255]); // "\0{{ x }}\xff"
    await writeFile(join(dir, "tpl", "logo.bin"), binary);
    const p = { name: join(dir, "out"), source: "salt://tpl", template: "jinja" };
    const r = await runState(fn("recurse"), p, ctx());
    expectChanged(r);
    expect(r.changes.created).toEqual(["logo.bin", "motd"]);
    expect(await readFile(join(dir, "out", "logo.bin"))).toEqual(binary);
    expect(r.diff).toContain(`Binary file ${join(dir, "out", "logo.bin")} differs`);
    expect(r.diff).toContain("+Welcome to Debian");
    expect(await text(join(dir, "out", "motd"))).toBe("Welcome to Debian\n");
    expectClean(await runState(fn("recurse"), p, ctx()));
  });

  it("file.absent removes a symlink, not its target", async () => {
    await writeFile(join(dir, "t"), "keep");
    await symlink(join(dir, "t"), join(dir, "l"));
    expectChanged(await runState(fn("absent"), { name: join(dir, "l") }, ctx()));
    expect(await text(join(dir, "t"))).toBe("keep");
  });

  it("file.keyvalue leaves a commented key alone when the key is active elsewhere", async () => {
    const f = join(dir, "kv");
    await writeFile(f, "#a=0\na=1\n");
    expectChanged(await runState(fn("keyvalue"), { name: f, key_values: { a: 2 }, uncomment: "#" }, ctx()));
    expect(await text(f)).toBe("#a=0\na=2\n");
  });
});

describe("exec functions", () => {
  const ex = family.exec!;
  it("read, exists, hash and stats", async () => {
    const f = join(dir, "e");
    await writeFile(f, "abc");
    await utimes(f, 1_000_000_000, 1_000_000_000);
    const c = ctx();
    expect(await ex.read!.run({ path: f }, c)).toBe("abc");
    expect(await ex.file_exists!.run({ path: f }, c)).toBe(true);
    expect(await ex.file_exists!.run({ path: dir }, c)).toBe(false);
    expect(await ex.file_exists!.run({ path: join(dir, "nope") }, c)).toBe(false);
    expect(await ex.directory_exists!.run({ path: dir }, c)).toBe(true);
    expect(await ex.get_hash!.run({ path: f, form: "sha256" }, c)).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    await expect(ex.get_hash!.run({ path: f, form: "crc" }, c)).rejects.toThrow(/Unsupported/);
    const st = (await ex.stats!.run({ path: f }, c)) as Record<string, unknown>;
    expect(st).toMatchObject({ type: "file", size: 3, user: "root", mtime: 1_000_000_000 });
    await expect(ex.file_exists!.run({ path: join(blocked(dir), "x") }, c)).rejects.toThrow(/ENOTDIR/);
  });
});

describe("unifiedDiff", () => {
  it("matches diff -u hunks, including missing final newlines", () => {
    expect(unifiedDiff("a\n", "a\n")).toBe("");
    expect(unifiedDiff("", "x\n", "a", "b")).toBe("--- a\n+++ b\n@@ -0,0 +1 @@\n+x\n");
    expect(unifiedDiff("x", "x\n", "a", "b")).toBe(
      "--- a\n+++ b\n@@ -1 +1 @@\n-x\n\\ No newline at end of file\n+x\n",
    );
    const before = `${Array.from({ length: 20 }, (_, i) => `l${i + 1}`).join("\n")}\n`;
    const after = before.replace("l2\n", "L2\n").replace("l18\n", "");
    expect(unifiedDiff(before, after, "a", "b")).toBe(
      "--- a\n+++ b\n@@ -1,5 +1,5 @@\n l1\n-l2\n+L2\n l3\n l4\n l5\n@@ -15,6 +15,5 @@\n l15\n l16\n l17\n-l18\n l19\n l20\n",
    );
  });
});
