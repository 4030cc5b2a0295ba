import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { applyTarget } from "../src/state/engine.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-testmode-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("test mode on a fresh machine", () => {
  it("reports a state whose check needs a pending requisite as pending, not failed", async () => {
    const root = join(dir, "root");
    await writeFile(
      join(dir, "site.zy"),
      `confdir:
  file.directory:
    - name: ${root}/etc
    - makedirs: true
conf:
  file.managed:
    - name: ${root}/etc/app.conf
    - content: "x = 1\\n"
    - require:
      - file: confdir
orphan:
  file.managed:
    - name: ${root}/missing/app.conf
    - content: "y\\n"
`,
    );
    const rep = await applyTarget(
      { kind: "sls", refs: ["site"] },
      { statesDir: dir, test: true, facts: async () => ({}) },
    );
    const by = Object.fromEntries(rep.results.map((r) => [r.id, r]));
    expect(by.confdir).toMatchObject({ result: true, pending: true });
    expect(by.conf).toMatchObject({ result: true, pending: true });
    expect(by.conf!.comment).toMatch(/Would be checked after file.directory:confdir apply/);
    // Without a pending requisite, the same failure is a real one.
    expect(by.orphan!.result).toBe(false);
    expect(rep.summary.failed).toBe(1);
    // and nothing was written
    expect(await readdir(dir)).toEqual(["site.zy"]);
  });
});

describe("facts for fact-free families", () => {
  it("collects facts when a guard calls a function, even on cmd states", async () => {
    const out = join(dir, "ran");
    await writeFile(
      join(dir, "g.zy"),
      `guarded:\n  cmd.run:\n    - name: touch ${out}\n    - onlyif:\n      - fun: facts.get\n        key: os\n`,
    );
    const rep = await applyTarget(
      { kind: "sls", refs: ["g"] },
      { statesDir: dir, facts: async () => ({ os: "linux" }) },
    );
    expect(rep.results[0]).toMatchObject({ id: "guarded", result: true, changed: true, skipped: false });
    expect(await readdir(dir)).toContain("ran");
  });
});
