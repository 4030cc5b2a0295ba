import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { family, splitArgs } from "../src/modules/cmd.js";
import type { Params } from "../src/modules/types.js";
import { moduleContext, runState, runWatch, tempDir } from "./support/module-context.js";

const state = (name: string) => family.states[name]!;
const exec = (name: string) => family.exec![name]!;

let dir = "";
let cleanup: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir("zester-cmd-"));
});
afterEach(() => cleanup());

const ctx = (test = false) => moduleContext({ test, statesDir: dir });
const runCmd = (params: Params, test = false) => runState(state("run"), params, ctx(test));

describe("cmd.run", () => {
  it("runs the command and reports stdout, stderr and retcode", async () => {
    const r = await runCmd({ name: "echo out; echo err >&2" });
    expect(r.result, r.comment).toBe(true);
    expect(r.changed).toBe(true);
    expect(r.changes).toEqual({ retcode: 0, stdout: "out", stderr: "err" });
    expect(r.comment).toMatch(/ran successfully/);
  });

  it("accepts the command and cmd aliases; the id is the default command", async () => {
    expect((await runCmd({ command: "echo a" })).changes.stdout).toBe("a");
    expect((await runCmd({ cmd: "echo b" })).changes.stdout).toBe("b");
    const byId = await runState(state("run"), {}, moduleContext({ id: "echo from-id" }));
    expect(byId.changes.stdout).toBe("from-id");
  });

  it("test mode does not run the command and reports it as pending", async () => {
    const marker = join(dir, "ran");
    const r = await runCmd({ name: `touch ${marker}` }, true);
    expect(r.result).toBe(true);
    expect(r.pending).toBe(true);
    expect(r.comment).toMatch(/would run/);
    await expect(stat(marker)).rejects.toThrow(/ENOENT/);
  });

  it("fails on a non-zero exit unless listed in success_retcodes", async () => {
    const r = await runCmd({ name: "echo nope >&2; exit 3" });
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/failed with exit code 3/);
    expect(r.changes).toMatchObject({ retcode: 3, stderr: "nope" });
    const ok = await runCmd({ name: "exit 3", success_retcodes: [0, 3] });
    expect(ok.result).toBe(true);
    expect(ok.changes.retcode).toBe(3);
  });

  it("creates: skips when the path exists (all of a list), runs otherwise", async () => {
    const a = join(dir, "a");
    const b = join(dir, "b");
    const p = { name: `touch ${a}`, creates: a };
    expect((await runCmd(p)).changed).toBe(true);
    const second = await runCmd(p);
    expect(second.changed).toBe(false);
    expect(second.result).toBe(true);
    expect(second.comment).toMatch(/exists; .* not run/);
    const both = { name: `touch ${a} ${b}`, creates: [a, b] };
    expect((await runCmd(both)).changed).toBe(true);
    expect((await runCmd(both)).changed).toBe(false);
  });

  it("creates: a non-ENOENT error fails instead of running", async () => {
    await writeFile(join(dir, "file"), "");
    const marker = join(dir, "ran");
    const r = await runCmd({ name: `touch ${marker}`, creates: join(dir, "file", "x") });
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/ENOTDIR/);
    await expect(stat(marker)).rejects.toThrow(/ENOENT/);
  });

  it("cwd, env as a map and as Salt's list of maps", async () => {
    await mkdir(join(dir, "work"));
    const r = await runCmd({
      name: 'pwd; echo "$A-$B"',
      cwd: join(dir, "work"),
      env: [{ A: "1" }, { B: 2 }],
    });
    expect(r.changes.stdout).toBe(`${join(dir, "work")}\n1-2`);
    const m = await runCmd({ name: 'echo "$ZESTER_X"', env: { ZESTER_X: "map" } });
    expect(m.changes.stdout).toBe("map");
    const bad = await runCmd({ name: "true", cwd: join(dir, "missing") });
    expect(bad.result).toBe(false);
    expect(bad.comment).toMatch(/is not a directory/);
    const badEnv = await runCmd({ name: "true", env: ["A=1"] });
    expect(badEnv.result).toBe(false);
    expect(badEnv.comment).toMatch(/env must be a map/);
  });

  it("runas runs as another user, in its home (or / when it has none) by default", async () => {
    const r = await runCmd({ name: "id -un; pwd", runas: "nobody" });
    expect(r.result, r.comment).toBe(true);
    // nobody's home (/nonexistent) does not exist, so the command runs in /.
    expect(r.changes.stdout).toBe("nobody\n/");
    const root = await runCmd({ name: "pwd" });
    expect(root.changes.stdout).toBe((await import("node:os")).homedir());
    await mkdir(join(dir, "w"));
    const inDir = await runCmd({ name: "id -un; pwd", runas: "nobody", cwd: join(dir, "w") });
    expect(inDir.changes.stdout).toBe(`nobody\n${join(dir, "w")}`);
    const bad = await runCmd({ name: "id -un", runas: "no-such-user-zester" });
    expect(bad.result).toBe(false);
    expect(bad.comment).toMatch(/does not exist/);
  });

  it("shell selects the interpreter", async () => {
    const r = await runCmd({ name: 'echo "$0"; [[ 1 == 1 ]] && echo bashism', shell: "/bin/bash" });
    expect(r.changes.stdout).toBe("/bin/bash\nbashism");
  });

  it("stdin is fed to the command", async () => {
    const r = await runCmd({ name: "tr a-z A-Z", stdin: "hello" });
    expect(r.changes.stdout).toBe("HELLO");
  });

  it("timeout kills the command and fails the state", async () => {
    const started = Date.now();
    const r = await runCmd({ name: "sleep 20", timeout: 0.5 });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/timed out after 0.5s/);
    const bad = await runCmd({ name: "true", timeout: -1 });
    expect(bad.result).toBe(false);
    expect(bad.comment).toMatch(/timeout must be a positive/);
  });

  it("a missing shell is a failed state, not an exception", async () => {
    const r = await runCmd({ name: "true", shell: join(dir, "no-shell") });
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/could not start|ENOENT/);
  });

  it("watch runs the command like a normal run", async () => {
    const r = await runWatch(state("run"), { name: "echo watched" }, ctx());
    expect(r.changes.stdout).toBe("watched");
  });
});

describe("cmd.wait", () => {
  it("does nothing on a normal run and runs on watch", async () => {
    const marker = join(dir, "waited");
    const p = { name: `echo hi > ${marker}; echo done` };
    const normal = await runState(state("wait"), p, ctx());
    expect(normal.result).toBe(true);
    expect(normal.changed).toBe(false);
    await expect(stat(marker)).rejects.toThrow(/ENOENT/);
    const testWatch = await runWatch(state("wait"), p, ctx(true));
    expect(testWatch.pending).toBe(true);
    await expect(stat(marker)).rejects.toThrow(/ENOENT/);
    const watched = await runWatch(state("wait"), p, ctx());
    expect(watched.changed).toBe(true);
    expect(watched.changes.stdout).toBe("done");
    expect(await readFile(marker, "utf8")).toBe("hi\n");
  });
});

describe("cmd.script", () => {
  it("runs a salt:// script with args through its shebang", async () => {
    await mkdir(join(dir, "scripts"));
    const script = join(dir, "scripts", "greet.sh");
    await writeFile(script, '#!/bin/bash\necho "n=$# first=$1 second=$2"\n');
    await chmod(script, 0o755);
    const r = await runState(state("script"), { name: "salt://scripts/greet.sh", args: "'a b' c" }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changes.stdout).toBe("n=2 first=a b second=c");
  });

  it("runs a non-executable script with the shell, args as a list", async () => {
    const script = join(dir, "plain.sh");
    await writeFile(script, 'echo "$1"; exit 4\n');
    const r = await runState(state("script"), { name: "label", source: script, args: ["x y"] }, ctx());
    expect(r.result).toBe(false);
    expect(r.changes).toMatchObject({ retcode: 4, stdout: "x y" });
  });

  it("fails clearly for a missing script or one outside the tree", async () => {
    const r = await runState(state("script"), { name: "salt://nope.sh" }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/does not exist/);
    const esc = await runState(state("script"), { name: "salt://../../etc/passwd" }, ctx());
    expect(esc.result).toBe(false);
    expect(esc.comment).toMatch(/escapes the states tree/);
  });
});

describe("exec functions", () => {
  const c = () => moduleContext({ statesDir: dir });
  it("cmd.run returns stdout, run_all everything, retcode the code", async () => {
    expect(await exec("run").run({ cmd: "echo hello" }, c())).toBe("hello");
    expect(await exec("run_all").run({ cmd: "echo o; echo e >&2; exit 2" }, c())).toEqual({
      retcode: 2,
      stdout: "o",
      stderr: "e",
    });
    expect(await exec("retcode").run({ cmd: "exit 7" }, c())).toBe(7);
    expect(await exec("run").run({ cmd: "id -un", runas: "nobody", cwd: "/" }, c())).toBe("nobody");
  });

  it("cmd.script runs a script from the states tree", async () => {
    await writeFile(join(dir, "s.sh"), 'echo "args:$*"\n');
    expect(await exec("script").run({ source: "s.sh", args: ["1", "2"] }, c())).toEqual({
      retcode: 0,
      stdout: "args:1 2",
      stderr: "",
    });
  });
});

describe("splitArgs", () => {
  it("splits like a shell without expanding", () => {
    expect(splitArgs(`a 'b c' "d \\"e\\"" f\\ g $HOME`)).toEqual(["a", "b c", 'd "e"', "f g", "$HOME"]);
    expect(splitArgs("  ")).toEqual([]);
    expect(splitArgs("''")).toEqual([""]);
    expect(() => splitArgs("'open")).toThrow(/Unterminated/);
  });
});

describe("cmd.script bad args", () => {
  it("fails while planning on an unterminated quote", async () => {
    await writeFile(join(dir, "s.sh"), "true\n");
    const r = await runState(state("script"), { name: join(dir, "s.sh"), args: "'open" }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/Unterminated/);
  });
});
