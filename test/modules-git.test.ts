import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { family, parseLsRemote } from "../src/modules/git.js";
import { run } from "../src/util/exec.js";
import { moduleContext, runState, tempDir } from "./support/module-context.js";

const state = (n: string) => family.states[n]!;
let dir = "";
let cleanup: () => Promise<void> = async () => {};
let upstream = "";
let work = "";
let target = "";

const GIT_ENV = {
  GIT_AUTHOR_NAME: "t",
  GIT_AUTHOR_EMAIL: "t@example.com",
  GIT_COMMITTER_NAME: "t",
  GIT_COMMITTER_EMAIL: "t@example.com",
};

async function git(cwd: string, ...args: string[]): Promise<string> {
  const r = await run(["git", ...args], { cwd, env: GIT_ENV });
  if (r.retcode !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

async function commit(file: string, text: string): Promise<string> {
  await writeFile(join(work, file), text);
  await git(work, "add", file);
  await git(work, "commit", "-q", "-m", `edit ${file}`);
  await git(work, "push", "-q", "origin", "HEAD:main");
  return git(work, "rev-parse", "HEAD");
}

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir("zester-git-"));
  upstream = join(dir, "upstream.git");
  work = join(dir, "work");
  target = join(dir, "checkout");
  await git(dir, "init", "-q", "--bare", "-b", "main", upstream);
  await git(dir, "clone", "-q", upstream, work);
  await git(work, "checkout", "-q", "-b", "main");
  await commit("README", "one\n");
});
afterEach(() => cleanup());

const ctx = (test = false) => moduleContext({ test, id: "repo" });
const latest = (params: Record<string, unknown>, test = false) =>
  runState(state("latest"), { name: upstream, target, ...params }, ctx(test));

describe("git.latest", () => {
  it("clones, is idempotent, follows new upstream commits; test mode changes nothing", async () => {
    const dry = await latest({}, true);
    expect(dry.pending).toBe(true);
    expect(dry.comment).toMatch(/would be cloned/);
    await expect(readFile(join(target, "README"))).rejects.toThrow(/ENOENT/);

    const first = await latest({});
    expect(first.result, first.comment).toBe(true);
    expect(first.changes).toMatchObject({ new: upstream });
    expect(await readFile(join(target, "README"), "utf8")).toBe("one\n");

    const again = await latest({});
    expect(again.changed).toBe(false);
    expect(again.comment).toMatch(/up to date/);

    const sha = await commit("README", "two\n");
    const dry2 = await latest({}, true);
    expect(dry2.changes.revision).toMatchObject({ new: sha });
    expect(await readFile(join(target, "README"), "utf8")).toBe("one\n");
    const second = await latest({});
    expect(second.result, second.comment).toBe(true);
    expect(second.changes.revision).toMatchObject({ new: sha });
    expect(await readFile(join(target, "README"), "utf8")).toBe("two\n");
    expect(await git(target, "rev-parse", "--abbrev-ref", "HEAD")).toBe("main");
  });

  it("refuses to overwrite local modifications without force_reset, discards them with it", async () => {
    await latest({});
    await commit("README", "upstream change\n");
    await writeFile(join(target, "README"), "local edit\n");
    const r = await latest({});
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/local modifications.*force_reset/);
    expect(await readFile(join(target, "README"), "utf8")).toBe("local edit\n");

    const forced = await latest({ force_reset: true });
    expect(forced.result, forced.comment).toBe(true);
    expect(await readFile(join(target, "README"), "utf8")).toBe("upstream change\n");

    // Drift with no upstream change: force_reset repairs it; without it the state only notes it.
    await writeFile(join(target, "README"), "drift\n");
    const noted = await latest({});
    expect(noted.changed).toBe(false);
    expect(noted.comment).toMatch(/local modifications present/);
    const repaired = await latest({ force_reset: true });
    expect(repaired.changes).toMatchObject({ forced_reset: true });
    expect(await readFile(join(target, "README"), "utf8")).toBe("upstream change\n");
  });

  it("local commits that diverge fail without force_reset", async () => {
    await latest({});
    await writeFile(join(target, "LOCAL"), "x\n");
    await git(target, "add", "LOCAL");
    await git(target, "commit", "-q", "-m", "local");
    await commit("README", "three\n");
    const r = await latest({});
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/local commits/);
    const forced = await latest({ force_reset: true });
    expect(forced.result, forced.comment).toBe(true);
    expect(await readFile(join(target, "README"), "utf8")).toBe("three\n");
  });

  it("follows a branch and a tag, shallow clones with depth", async () => {
    await git(work, "checkout", "-q", "-b", "dev");
    await writeFile(join(work, "DEV"), "dev\n");
    await git(work, "add", "DEV");
    await git(work, "commit", "-q", "-m", "dev");
    await git(work, "push", "-q", "origin", "dev");
    await git(work, "tag", "-a", "v1", "-m", "v1");
    await git(work, "push", "-q", "origin", "v1");
    // git ignores --depth for plain-path clones; file:// makes it a real transport.
    const url = `file://${upstream}`;
    const b = await latest({ name: url, rev: "dev", depth: 1 });
    expect(b.result, b.comment).toBe(true);
    expect(await readFile(join(target, "DEV"), "utf8")).toBe("dev\n");
    expect(await git(target, "rev-parse", "--abbrev-ref", "HEAD")).toBe("dev");
    expect(await git(target, "rev-list", "--count", "HEAD")).toBe("1");
    expect((await latest({ name: url, rev: "dev", depth: 1 })).changed).toBe(false);
    // Switch to the main branch of the same repository.
    const m = await latest({ name: url, rev: "main" });
    expect(m.result, m.comment).toBe(true);
    expect(m.changes.branch).toEqual({ old: "dev", new: "main" });
    const t = await latest({ name: url, rev: "v1" });
    expect(t.result, t.comment).toBe(true);
    expect(await git(target, "rev-parse", "HEAD")).toBe(await git(work, "rev-parse", "v1^{commit}"));
    expect((await latest({ name: url, rev: "v1" })).changed).toBe(false);
  });

  it("fails clearly for an unknown rev and a non-git target", async () => {
    const r = await latest({ rev: "nope" });
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/Revision "nope" not found/);
    await run(["mkdir", "-p", target]);
    await writeFile(join(target, "file"), "x");
    const n = await latest({});
    expect(n.result).toBe(false);
    expect(n.comment).toMatch(/not a git checkout/);
  });
});

describe("git.cloned", () => {
  it("clones once and never updates", async () => {
    const p = { name: upstream, target };
    const first = await runState(state("cloned"), p, ctx());
    expect(first.result, first.comment).toBe(true);
    await commit("README", "later\n");
    const again = await runState(state("cloned"), p, ctx());
    expect(again.changed).toBe(false);
    expect(await readFile(join(target, "README"), "utf8")).toBe("one\n");
    const other = await runState(state("cloned"), { name: "/elsewhere.git", target }, ctx());
    expect(other.result).toBe(false);
  });
});

describe("parseLsRemote", () => {
  it("resolves HEAD's branch, branches and peeled tags", () => {
    const a = "a".repeat(40);
    const b = "b".repeat(40);
    const text = `ref: refs/heads/main\tHEAD\n${a}\tHEAD\n${a}\trefs/heads/main\n${b}\trefs/tags/v1\n${a}\trefs/tags/v1^{}\n`;
    expect(parseLsRemote(text, "HEAD")).toEqual({ sha: a, branch: "main" });
    expect(parseLsRemote(text, "main")).toEqual({ sha: a, branch: "main" });
    expect(parseLsRemote(text, "v1")).toEqual({ sha: a });
    expect(parseLsRemote(text, "x")).toBeUndefined();
  });
});
