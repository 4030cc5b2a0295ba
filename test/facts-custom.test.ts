import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import * as os from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { CustomFactCache, collectCustom, parseFactsFile, parseInterval } from "../src/facts/custom.js";
import { collectFacts } from "../src/facts/index.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(os.tmpdir(), "zester-custom-facts-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe("custom facts", () => {
  test("static values and command output land at the top level of collectFacts", async () => {
    await writeFile(
      join(dir, "app.yaml"),
      [
        "datacenter:",
        '  value: "us-east-1"  # static fact',
        "racks:",
        "  value: [a1, a2]",
        "app_version:",
        "  cmd: \"echo '  1.4.2  '\"",
        "  interval: 5m",
        "workers:",
        "  cmd: echo 8",
        "meta:",
        '  cmd: \'echo {\\"tier\\": \\"gold\\"}\'',
        "",
      ].join("\n"),
    );
    const f = await collectFacts({ customDir: dir });
    expect(f._errors).toBeUndefined();
    expect(f.datacenter).toBe("us-east-1");
    expect(f.racks).toEqual(["a1", "a2"]);
    expect(f.app_version).toBe("1.4.2"); // trimmed, not JSON
    expect(f.workers).toBe(8); // JSON-parsed
    expect(f.meta).toEqual({ tier: "gold" });
    expect(f.os_family).toBe("Debian");
  });

  test("ZESTER_FACTS_DIR is used when no dir is given", async () => {
    await writeFile(join(dir, "x.yml"), "role:\n  value: db\n");
    const saved = process.env.ZESTER_FACTS_DIR;
    process.env.ZESTER_FACTS_DIR = dir;
    try {
      expect((await collectFacts()).role).toBe("db");
    } finally {
      if (saved === undefined) delete process.env.ZESTER_FACTS_DIR;
      else process.env.ZESTER_FACTS_DIR = saved;
    }
  });

  test("the interval cache does not re-run a command until the interval has passed", async () => {
    const counter = join(dir, "runs.log");
    await writeFile(
      join(dir, "c.yaml"),
      `n:\n  cmd: "echo run >> ${counter}; wc -l < ${counter}"\n  interval: 5m\n`,
    );
    let now = 1_000_000;
    const cache = new CustomFactCache(() => now);

    const a = await collectFacts({ customDir: dir, cache });
    const b = await collectFacts({ customDir: dir, cache });
    now += 4 * 60_000;
    const c = await collectFacts({ customDir: dir, cache });
    expect([a.n, b.n, c.n]).toEqual([1, 1, 1]);
    expect((await readFile(counter, "utf8")).trim().split("\n")).toHaveLength(1);
    expect(cache.commandsRun).toBe(1);

    now += 60_000; // 5 minutes since the first run
    const d = await collectFacts({ customDir: dir, cache });
    expect(d.n).toBe(2);
    expect(cache.commandsRun).toBe(2);
  });

  test("concurrent collections share one in-flight command", async () => {
    const counter = join(dir, "runs.log");
    await writeFile(join(dir, "c.yaml"), `n:\n  cmd: "sleep 0.2; echo run >> ${counter}; echo ok"\n`);
    const cache = new CustomFactCache();
    const [a, b] = await Promise.all([
      collectFacts({ customDir: dir, cache }),
      collectFacts({ customDir: dir, cache }),
    ]);
    expect([a.n, b.n]).toEqual(["ok", "ok"]);
    expect((await readFile(counter, "utf8")).trim().split("\n")).toHaveLength(1);
  });

  test("without a cache every collection runs the command", async () => {
    const counter = join(dir, "runs.log");
    await writeFile(join(dir, "c.yaml"), `n:\n  cmd: "echo run >> ${counter}"\n  interval: 1h\n`);
    await collectFacts({ customDir: dir });
    await collectFacts({ customDir: dir });
    expect((await readFile(counter, "utf8")).trim().split("\n")).toHaveLength(2);
  });

  test("a failing command is an error naming the file and line; other facts survive", async () => {
    const file = join(dir, "f.yaml");
    await writeFile(file, 'ok:\n  value: 1\nbroken:\n  cmd: "echo nope >&2; exit 3"\n');
    const f = await collectFacts({ customDir: dir });
    expect(f.ok).toBe(1);
    expect(f).not.toHaveProperty("broken");
    expect((f._errors as Record<string, string>)["custom:broken"]).toBe(
      `${file}:3:1: fact "broken": command exited 3: nope`,
    );
  });

  test("a command that outlives its timeout is killed and reported", async () => {
    // The sleep outlives the killed shell and keeps its stdout open; the fact must not wait for it.
    await writeFile(join(dir, "t.yaml"), 'slow:\n  cmd: "sleep 3; echo late"\n  timeout: 200ms\n');
    const t0 = Date.now();
    const r = await collectCustom(dir, new CustomFactCache());
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(r.errors["custom:slow"]).toBe(
      `${join(dir, "t.yaml")}:1:1: fact "slow": command timed out after 200 ms`,
    );
  });

  test("broken YAML is reported with file:line:col, and other files still load", async () => {
    const bad = join(dir, "bad.yaml");
    await writeFile(bad, "good_in_bad:\n  value: 1\nother:\n  value: [unclosed\n");
    await writeFile(join(dir, "fine.yaml"), "fine:\n  value: true\n");
    const f = await collectFacts({ customDir: dir });
    expect(f.fine).toBe(true);
    expect(f).not.toHaveProperty("good_in_bad");
    const err = (f._errors as Record<string, string>)["custom:bad.yaml"]!;
    expect(err).toMatch(new RegExp(`^${bad.replace(/[.]/g, "\\.")}:\\d+:\\d+: `));
    expect(err).toMatch(/:[45]:\d+: /);
  });

  test("entry mistakes: unknown keys with did-you-mean, both value and cmd, bad interval, reserved names", () => {
    const text = [
      "a:",
      "  cmd: echo 1",
      "  intervl: 5m",
      "b:",
      "  value: 1",
      "  cmd: echo 2",
      "c:",
      "  cmd: echo 3",
      "  interval: soon",
      "id:",
      "  value: spoof",
      "d: plain",
      "e:",
      "  value: 1",
      "  interval: 5m",
      "ok:",
      "  cmd: echo fine",
      "",
    ].join("\n");
    const r = parseFactsFile(text, "/etc/zester/facts/x.yaml");
    expect(r.defs.map((d) => d.name)).toEqual(["ok"]);
    expect(r.errors).toEqual([
      '/etc/zester/facts/x.yaml:1:1: fact "a": unknown key "intervl" (did you mean "interval"?)',
      '/etc/zester/facts/x.yaml:4:1: fact "b": needs exactly one of "value" or "cmd"',
      '/etc/zester/facts/x.yaml:7:1: fact "c": bad interval "soon" (use e.g. 30s, 5m, 1h)',
      '/etc/zester/facts/x.yaml:10:1: "id" is a built-in fact and cannot be set by a custom fact',
      '/etc/zester/facts/x.yaml:12:1: fact "d" must be a mapping with "value" or "cmd"',
      '/etc/zester/facts/x.yaml:13:1: fact "e": "interval" and "timeout" only apply to "cmd" facts',
    ]);
  });

  test("a fact defined in two files keeps the first and reports the second", async () => {
    await writeFile(join(dir, "a.yaml"), "dc:\n  value: one\n");
    await writeFile(join(dir, "b.yaml"), "\ndc:\n  value: two\n");
    const r = await collectCustom(dir, new CustomFactCache());
    expect(r.facts.dc).toBe("one");
    expect(r.errors["custom:dc"]).toBe(
      `${join(dir, "b.yaml")}:2:1: fact "dc" is already defined at ${join(dir, "a.yaml")}:1:1`,
    );
  });

  test("empty files, comments-only files, non-YAML names and a missing dir are fine", async () => {
    await writeFile(join(dir, "empty.yaml"), "");
    await writeFile(join(dir, "comments.yml"), "# nothing yet\n");
    await writeFile(join(dir, "README.txt"), "not: [yaml");
    expect(await collectCustom(dir, new CustomFactCache())).toEqual({ facts: {}, errors: {} });
    expect(await collectCustom(join(dir, "nope"), new CustomFactCache())).toEqual({ facts: {}, errors: {} });
  });

  test("a top level that is not a mapping is an error", () => {
    expect(parseFactsFile("- a\n- b\n", "f.yaml").errors).toEqual([
      "f.yaml:1:1: expected a mapping of fact names",
    ]);
  });
});

describe("parseInterval", () => {
  test("units", () => {
    expect(parseInterval("500ms")).toBe(500);
    expect(parseInterval("30s")).toBe(30_000);
    expect(parseInterval("5m")).toBe(300_000);
    expect(parseInterval("1h")).toBe(3_600_000);
    expect(parseInterval("1d")).toBe(86_400_000);
    expect(parseInterval(90)).toBe(90_000);
    expect(parseInterval("90")).toBe(90_000);
    expect(parseInterval("0")).toBe(0);
    expect(parseInterval("5 minutes")).toBeUndefined();
    expect(parseInterval(-1)).toBeUndefined();
    expect(parseInterval(null)).toBeUndefined();
  });
});
