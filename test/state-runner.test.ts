import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyTarget, type EngineOptions } from "../src/state/engine.js";
import type { StateResult } from "../src/state/result.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-run-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Timed extends StateResult {
  start: number;
  end: number;
}

let n = 0;
async function apply(text: string, opts: Partial<EngineOptions> = {}) {
  const name = `r${++n}`;
  await writeFile(join(dir, `${name}.zy`), text);
  const timed: Record<string, Timed> = {};
  const report = await applyTarget(
    { kind: "sls", refs: [name] },
    {
      statesDir: dir,
      ...opts,
      onResult: (r) => {
        const end = performance.now();
        timed[r.id] = { ...r, start: end - r.duration_ms, end };
      },
    },
  );
  return { ...report, timed };
}

function sleeper(id: string, secs: number, extra = ""): string {
  return `${id}:\n  test.configurable_test_state:\n    - sleep: ${secs}\n    - changes: false\n${extra}`;
}

function maxOverlap(ts: Timed[]): number {
  const ev = ts.flatMap((t) => [
    [t.start, 1],
    [t.end, -1],
  ]);
  ev.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let cur = 0;
  let max = 0;
  for (const [, d] of ev) {
    cur += d!;
    max = Math.max(max, cur);
  }
  return max;
}

describe("runner", () => {
  it("runs independent states concurrently and dependent ones in sequence", async () => {
    const { timed } = await apply(
      [sleeper("a", 0.3), sleeper("b", 0.3), sleeper("c", 0.3, "    - require: [a]\n")].join(""),
    );
    const { a, b, c } = timed;
    // a and b overlap; c starts only after a ended.
    expect(Math.max(a!.start, b!.start)).toBeLessThan(Math.min(a!.end, b!.end));
    expect(c!.start).toBeGreaterThanOrEqual(a!.end - 1);
  });

  it("bounds the pool", async () => {
    const text = Array.from({ length: 6 }, (_, i) => sleeper(`s${i}`, 0.1)).join("");
    const { timed } = await apply(text, { concurrency: 2 });
    expect(Object.keys(timed)).toHaveLength(6);
    expect(maxOverlap(Object.values(timed))).toBe(2);
  });

  it("order: first runs before everything, last after everything, numbers in between", async () => {
    const { results, timed } = await apply(
      [
        sleeper("z_last", 0.05, "    - order: last\n"),
        sleeper("plain", 0.1),
        sleeper("two", 0.05, "    - order: 2\n"),
        sleeper("one", 0.05, "    - order: 1\n"),
        sleeper("a_first", 0.1, "    - order: first\n"),
      ].join(""),
    );
    expect(results.map((r) => r.id)).toEqual(["a_first", "one", "two", "plain", "z_last"]);
    expect(timed.one!.start).toBeGreaterThanOrEqual(timed.a_first!.end - 1);
    expect(timed.z_last!.start).toBeGreaterThanOrEqual(timed.plain!.end - 1);
  });

  it("failhard stops everything not yet started", async () => {
    const { results } = await apply(
      "a:\n  test.fail_without_changes:\n    - failhard: true\nb:\n  test.nop: []\nc:\n  test.nop:\n    - require: [b]\n",
      { concurrency: 1 },
    );
    const by = Object.fromEntries(results.map((r) => [r.id, r]));
    expect(by.a?.result).toBe(false);
    expect(by.b).toMatchObject({ skipped: true, skip_reason: "failhard" });
    expect(by.c).toMatchObject({ skipped: true, skip_reason: "failhard" });
    const global = await apply("a:\n  test.fail_without_changes: []\nb:\n  test.nop: []\n", {
      concurrency: 1,
      failhard: true,
    });
    expect(global.results.find((r) => r.id === "b")?.skip_reason).toBe("failhard");
    const without = await apply("a:\n  test.fail_without_changes: []\nb:\n  test.nop: []\n", {
      concurrency: 1,
    });
    expect(without.results.find((r) => r.id === "b")?.skipped).toBe(false);
  });

  it("retry re-runs until the result matches until, then stops", async () => {
    const { timed } = await apply(
      "f:\n  test.fail_without_changes:\n    - retry:\n        attempts: 3\n        interval: 0.05\n" +
        "ok:\n  test.succeed_without_changes:\n    - retry:\n        attempts: 3\n        interval: 0\n" +
        "until:\n  test.succeed_without_changes:\n    - retry: {attempts: 2, interval: 0, until: false}\n",
    );
    expect(timed.f).toMatchObject({ result: false });
    expect(timed.f!.comment).toMatch(/^Attempt 3: /);
    expect(timed.f!.duration_ms).toBeGreaterThanOrEqual(90);
    expect(timed.ok!.comment).toBe("Success!");
    expect(timed.until!.comment).toMatch(/^Attempt 2: /);
  });

  it("onlyif / unless with shell commands, lists and functions", async () => {
    const { timed } = await apply(
      [
        "a:\n  test.succeed_with_changes:\n    - onlyif: 'true'\n",
        "b:\n  test.succeed_with_changes:\n    - onlyif: 'exit 3'\n",
        "c:\n  test.succeed_with_changes:\n    - onlyif: ['true', 'false']\n",
        "d:\n  test.succeed_with_changes:\n    - unless: 'true'\n",
        "e:\n  test.succeed_with_changes:\n    - unless: ['true', 'false']\n",
        "f:\n  test.succeed_with_changes:\n    - onlyif:\n      - fun: test.ping\n",
        "g:\n  test.succeed_with_changes:\n    - onlyif:\n      - fun: test.echo\n        text: ''\n",
        "h:\n  test.succeed_with_changes:\n    - unless:\n      - fun: test.echo\n        text: yes\n",
      ].join(""),
    );
    expect(timed.a).toMatchObject({ skipped: false, changed: true });
    expect(timed.b).toMatchObject({ skipped: true, skip_reason: "onlyif", result: true, changed: false });
    expect(timed.c?.skip_reason).toBe("onlyif");
    expect(timed.d).toMatchObject({ skipped: true, skip_reason: "unless" });
    expect(timed.e).toMatchObject({ skipped: false, changed: true });
    expect(timed.f?.skipped).toBe(false);
    expect(timed.g?.skip_reason).toBe("onlyif");
    expect(timed.h?.skip_reason).toBe("unless");
  });

  it("a boolean onlyif/unless is Salt's bad type: the state runs, with a warning (docker formula)", async () => {
    const { timed } = await apply(
      [
        "a:\n  test.succeed_with_changes:\n    - onlyif: False\n",
        "b:\n  test.succeed_with_changes:\n    - onlyif: ['false', True]\n",
        "c:\n  test.succeed_with_changes:\n    - onlyif: [True, 'false']\n",
        "d:\n  test.succeed_with_changes:\n    - unless: True\n",
        "e:\n  test.succeed_with_changes:\n    - unless: [False, 'true']\n",
        "f:\n  test.succeed_with_changes:\n    - unless: ['true', 1]\n",
      ].join(""),
    );
    expect(timed.a).toMatchObject({ skipped: false, changed: true });
    expect(timed.a!.warnings?.[0]).toMatch(/:3:7: onlyif: false is not a command; the state runs/);
    expect(timed.b?.skip_reason).toBe("onlyif");
    expect(timed.c).toMatchObject({ skipped: false, changed: true });
    expect(timed.d).toMatchObject({ skipped: false, changed: true });
    expect(timed.d!.warnings?.[0]).toMatch(/unless: true is not a command; unless never skips/);
    expect(timed.e?.skip_reason).toBe("unless");
    expect(timed.f).toMatchObject({ skipped: false, changed: true });
  });

  it("onlyif commands really run (and a guard error fails the state)", async () => {
    const marker = join(dir, "guard-ran");
    const { timed } = await apply(
      `a:\n  test.nop:\n    - onlyif: 'echo hi > ${marker}'\nb:\n  test.nop:\n    - onlyif:\n      - fun: nosuch.fn\n`,
    );
    expect((await readFile(marker, "utf8")).trim()).toBe("hi");
    expect(timed.b).toMatchObject({ result: false, skipped: false });
    expect(timed.b!.comment).toContain('unknown module "nosuch"');
  });

  it("test mode reports pending changes and lets onchanges dependents see them", async () => {
    const { results, summary } = await apply(
      "a:\n  test.succeed_with_changes: []\nb:\n  test.nop:\n    - onchanges: [a]\nc:\n  test.nop: []\n",
      { test: true },
    );
    const by = Object.fromEntries(results.map((r) => [r.id, r]));
    expect(by.a).toMatchObject({ result: true, changed: false, pending: true });
    expect(by.a!.changes).toHaveProperty("testing");
    expect(by.b?.skipped).toBe(false);
    expect(by.c?.pending).toBeUndefined();
    expect(summary.changed).toBe(0);
  });

  it("numbers results in execution order and reports sls, module and name", async () => {
    const { results } = await apply("b:\n  test.nop:\n    - require: [a]\na:\n  test.nop: []\n", {
      concurrency: 1,
    });
    expect(results.map((r) => [r.id, r.run_num])).toEqual([
      ["a", 1],
      ["b", 2],
    ]);
    expect(results[0]).toMatchObject({ name: "test.nop:a", module: "test.nop", sls: `r${n}` });
    expect(results[0]!.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it("handles a long chain", async () => {
    const lines = ["s0:\n  test.nop: []\n"];
    for (let i = 1; i < 1000; i++) lines.push(`s${i}:\n  test.nop:\n    - require: [s${i - 1}]\n`);
    const { results } = await apply(lines.join(""));
    expect(results).toHaveLength(1000);
    expect(results[999]!.id).toBe("s999");
    expect(results.every((r) => r.result)).toBe(true);
  });
});
