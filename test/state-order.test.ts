/**
 * A run's outcome is Salt's outcome: every result, change and the final system equal running the
 * states one at a time in Salt's order. These tests run real trees against the real filesystem and
 * crontab; each would fail on an engine that runs overlapping states at once or in another order.
 */
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyTarget, compileTarget, type EngineOptions, plannedOrder } from "../src/state/engine.js";
import type { StateResult } from "../src/state/result.js";
import { buildSchedule } from "../src/state/schedule.js";
import { run } from "../src/util/exec.js";

const canCron =
  process.getuid?.() === 0 &&
  (await run(["sh", "-c", "command -v crontab && command -v useradd"])).retcode === 0;
if (!canCron) console.warn("skipping the crontab case: needs root, crontab and useradd");
let dir: string;
let work: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-order-"));
  work = await mkdtemp(join(tmpdir(), "zester-order-work-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

let n = 0;
/** Writes the files of one tree (paths relative to the states dir) and applies `root`. */
async function applyTree(files: Record<string, string>, root: string, opts: Partial<EngineOptions> = {}) {
  const tree = join(dir, `t${++n}`);
  for (const [p, text] of Object.entries(files)) {
    await mkdir(dirname(join(tree, p)), { recursive: true });
    await writeFile(join(tree, p), text);
  }
  const report = await applyTarget({ kind: "sls", refs: [root] }, { statesDir: tree, ...opts });
  return { ...report, tree, by: Object.fromEntries(report.results.map((r) => [r.id, r])) };
}

const ids = (rs: StateResult[]) => rs.map((r) => r.id);

describe("many states editing one resource lose nothing", () => {
  it("eight file.append on one file write eight lines, and a second run changes nothing", async () => {
    const f = join(work, "append.txt");
    await writeFile(f, "");
    const text = Array.from(
      { length: 8 },
      (_, i) => `line${i}:\n  file.append:\n    - name: ${f}\n    - text: "entry ${i}"\n`,
    ).join("");
    const first = await applyTree({ "a.zy": text }, "a");
    expect(first.results.every((r) => r.result && r.changed)).toBe(true);
    expect((await readFile(f, "utf8")).split("\n").filter(Boolean)).toEqual(
      Array.from({ length: 8 }, (_, i) => `entry ${i}`),
    );
    const again = await applyTree({ "a.zy": text }, "a");
    expect(again.results.filter((r) => r.changed)).toEqual([]);
  });

  it("file.keyvalue, file.replace and host.present on one file keep every edit", async () => {
    const kv = join(work, "kv.conf");
    const rep = join(work, "rep.conf");
    const hosts = join(work, "hosts");
    await writeFile(kv, "");
    await writeFile(rep, Array.from({ length: 8 }, (_, i) => `k${i}=old`).join("\n") + "\n");
    await writeFile(hosts, "127.0.0.1 localhost\n");
    const states: string[] = [];
    for (let i = 0; i < 8; i++) {
      states.push(
        `kv${i}:\n  file.keyvalue:\n    - name: ${kv}\n    - key_values: {k${i}: v${i}}\n    - append_if_not_found: true\n`,
        `rep${i}:\n  file.replace:\n    - name: ${rep}\n    - pattern: "^k${i}=old$"\n    - repl: "k${i}=new"\n`,
        `h${i}.example:\n  host.present:\n    - ip: 10.0.0.${i + 1}\n    - file: ${hosts}\n`,
      );
    }
    const { results } = await applyTree({ "e.zy": states.join("") }, "e");
    expect(results.filter((r) => !r.result)).toEqual([]);
    expect(results.filter((r) => r.changed)).toHaveLength(24);
    const kvText = await readFile(kv, "utf8");
    for (let i = 0; i < 8; i++) expect(kvText).toContain(`k${i}=v${i}`);
    expect(await readFile(rep, "utf8")).toBe(
      Array.from({ length: 8 }, (_, i) => `k${i}=new`).join("\n") + "\n",
    );
    const hostsText = await readFile(hosts, "utf8");
    for (let i = 0; i < 8; i++)
      expect(hostsText).toMatch(new RegExp(`^10\\.0\\.0\\.${i + 1}\\s+h${i}\\.example$`, "m"));
  });

  it.skipIf(!canCron)("eight cron.present for one user leave eight jobs in the real crontab", async () => {
    const user = `zo-${randomBytes(4).toString("hex")}`;
    expect((await run(["useradd", "-M", "-N", user])).retcode).toBe(0);
    try {
      const text = Array.from(
        { length: 8 },
        (_, i) =>
          `job${i}:\n  cron.present:\n    - name: /bin/true job${i}\n    - user: ${user}\n    - minute: ${i}\n`,
      ).join("");
      const { results } = await applyTree({ "c.zy": text }, "c");
      expect(results.filter((r) => !r.result || !r.changed)).toEqual([]);
      const tab = (await run(["crontab", "-l", "-u", user])).stdout;
      for (let i = 0; i < 8; i++)
        expect(tab).toMatch(new RegExp(`^${i} \\* \\* \\* \\* /bin/true job${i}$`, "m"));
    } finally {
      await run(["crontab", "-r", "-u", user]);
      await run(["userdel", "-f", user]);
    }
  });
});

describe("declaration order", () => {
  it("cmd.run mkdir -p then file.managed inside it works without a requisite", async () => {
    const d = join(work, "mk", "deep", "d");
    const { results } = await applyTree(
      {
        "m.zy": `make_dir:\n  cmd.run:\n    - name: mkdir -p ${d}\nthe_file:\n  file.managed:\n    - name: ${d}/f\n    - contents: hello\n`,
      },
      "m",
    );
    expect(results.map((r) => [r.id, r.result])).toEqual([
      ["make_dir", true],
      ["the_file", true],
    ]);
    expect(await readFile(join(d, "f"), "utf8")).toBe("hello\n");
  });

  it("an included file's states run before the including file's own, depth first, each file once", async () => {
    const log = join(work, "include-order.log");
    await writeFile(log, "");
    // Every state appends to one log: the log is the order they really ran in.
    const st = (id: string) => `${id}:\n  file.append:\n    - name: ${log}\n    - text: ${id}\n`;
    const { results } = await applyTree(
      {
        "top1.zy": `include:\n  - lib.b\n  - lib.c\n${st("top_own_1")}${st("top_own_2")}`,
        "lib/b.zy": `include:\n  - lib.d\n${st("b_own")}`,
        "lib/c.zy": `include:\n  - lib.d\n${st("c_own")}`,
        "lib/d.zy": st("d_own"),
      },
      "top1",
    );
    const expected = ["d_own", "b_own", "c_own", "top_own_1", "top_own_2"];
    expect(ids(results)).toEqual(expected);
    expect(results.map((r) => r.run_num)).toEqual([1, 2, 3, 4, 5]);
    expect((await readFile(log, "utf8")).split("\n").filter(Boolean)).toEqual(expected);
  });

  it("requisites pull a later state forward, order: first/last/N rank around declarations", async () => {
    const { results } = await applyTree(
      {
        "o.zy":
          "a:\n  test.nop:\n    - require: [b]\n" +
          "b:\n  test.nop: []\n" +
          "z:\n  test.nop:\n    - order: last\n" +
          "c:\n  test.nop: []\n" +
          "one:\n  test.nop:\n    - order: 1\n" +
          "f:\n  test.nop:\n    - order: first\n" +
          "n:\n  test.nop:\n    - names: [n2, n1]\n",
      },
      "o",
    );
    expect(ids(results)).toEqual(["f", "one", "b", "a", "c", "n2", "n1", "z"]);
  });
});

describe("the scheduler", () => {
  async function schedule(text: string, opts: { failhard?: boolean } = {}) {
    const tree = join(dir, `s${++n}`);
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, "s.zy"), text);
    const program = await compileTarget({ kind: "sls", refs: ["s"] }, { statesDir: tree });
    return { program, sched: buildSchedule(program, { sequential: opts.failhard === true }) };
  }

  it("200 file.managed on distinct paths wait for nothing: they run in parallel", async () => {
    const text = Array.from(
      { length: 200 },
      (_, i) =>
        `f${i}:\n  file.managed:\n    - name: ${work}/par/d${i % 20}/f${i}\n    - contents: x\n    - makedirs: true\n`,
    ).join("");
    const { sched } = await schedule(text);
    expect(sched.waits.filter((w) => w.length > 0)).toEqual([]);
  });

  it("a command is a barrier unless parallel: true; a path waits for its parent directory", async () => {
    const { program, sched } = await schedule(
      "d:\n  file.directory:\n    - name: /srv/x\n" +
        "f:\n  file.managed:\n    - name: /srv/x/y/f\n" +
        "g:\n  file.managed:\n    - name: /srv/other\n" +
        "c:\n  cmd.run:\n    - name: 'true'\n" +
        "p:\n  cmd.run:\n    - name: 'true'\n    - parallel: true\n" +
        "t:\n  test.nop: []\n",
    );
    const at = (id: string) => program.states.findIndex((s) => s.id === id);
    const on = (id: string) => sched.waits[at(id)]!.map((w) => program.states[w.on]!.id).sort();
    expect(on("d")).toEqual([]);
    expect(on("f")).toEqual(["d"]);
    expect(on("g")).toEqual([]);
    expect(on("c")).toEqual(["d", "f", "g"]);
    // parallel: true lifts the barrier; the state after waits only for the barrier before it.
    expect(on("p")).toEqual(["c"]);
    expect(on("t")).toEqual(["c"]);
  });

  it("failhard (per state or for the run) makes a state run alone", async () => {
    const text = "a:\n  test.nop: []\nb:\n  test.nop:\n    - failhard: true\nc:\n  test.nop: []\n";
    const { program, sched } = await schedule(text);
    const on = (id: string) =>
      sched.waits[program.states.findIndex((s) => s.id === id)]!.map((w) => program.states[w.on]!.id);
    expect(on("b")).toEqual(["a"]);
    expect(on("c")).toEqual(["b"]);
    const all = await schedule(text, { failhard: true });
    expect(all.sched.waits.map((w) => w.length)).toEqual([0, 1, 1]);
  });

  it("state.show_order says why each state waits", async () => {
    const { program } = await schedule(
      "h1:\n  host.present:\n    - ip: 10.1.1.1\n    - file: /tmp/zh\n" +
        "h2:\n  host.present:\n    - ip: 10.1.1.2\n    - file: /tmp/zh\n" +
        "c:\n  cmd.run:\n    - name: 'true'\n" +
        "t:\n  test.nop:\n    - require: [h1]\n",
    );
    const rows = plannedOrder(program);
    expect(rows.map((r) => [r.name, r.position])).toEqual([
      ["host.present:h1", 1],
      ["host.present:h2", 2],
      ["cmd.run:c", 3],
      ["test.nop:t", 4],
    ]);
    expect(rows[1]!.waits).toEqual(["footprint: /tmp/zh overlaps /tmp/zh of host.present:h1"]);
    expect(rows[2]!.waits).toContain(
      "declaration order: after host.present:h2 (this state runs alone: its footprint is unknown)",
    );
    expect(rows[3]!.waits).toEqual([
      "require host.present:h1",
      "declaration order: after cmd.run:c (cmd.run:c runs alone: its footprint is unknown)",
    ]);
    expect(rows[3]!.after).toEqual(["require host.present:h1"]);
  });
});

describe("failhard", () => {
  it("a failing failhard state stops every state after it, even independent ones with room in the pool", async () => {
    const ok = join(work, "fh-before");
    const never = join(work, "fh-after");
    const { by, summary } = await applyTree(
      {
        "fh.zy":
          `before:\n  file.managed:\n    - name: ${ok}\n    - contents: x\n` +
          "boom:\n  cmd.run:\n    - name: exit 4\n    - failhard: true\n" +
          `after:\n  file.managed:\n    - name: ${never}\n    - contents: x\n` +
          "later:\n  test.nop: []\n",
      },
      "fh",
      { concurrency: 8 },
    );
    expect(by.before).toMatchObject({ result: true, changed: true });
    expect(by.boom).toMatchObject({ result: false });
    expect(by.after).toMatchObject({ skipped: true, skip_reason: "failhard", result: false });
    expect(by.later).toMatchObject({ skipped: true, skip_reason: "failhard" });
    await expect(readFile(never)).rejects.toMatchObject({ code: "ENOENT" });
    expect(summary.failed).toBeGreaterThan(0);
  });

  it("a run-level failhard stops at the first failure; test mode ignores failhard, as Salt does", async () => {
    const text = "a:\n  test.fail_without_changes: []\nb:\n  test.nop: []\n";
    const hard = await applyTree({ "g.zy": text }, "g", { failhard: true });
    expect(hard.by.b).toMatchObject({ skipped: true, skip_reason: "failhard" });
    const dry = await applyTree({ "g.zy": text }, "g", { failhard: true, test: true });
    expect(dry.by.b).toMatchObject({ skipped: false, result: true });
  });
});

describe("use and check_cmd", () => {
  it("use copies onlyif/unless and other arguments of the used state, not its requisites or name", async () => {
    const marker = join(work, "use-marker");
    const { by } = await applyTree(
      {
        "u.zy":
          "base:\n  test.succeed_with_changes:\n    - unless: 'true'\n" +
          "other:\n  test.succeed_with_changes:\n    - use:\n      - test: base\n" +
          `mine:\n  file.managed:\n    - name: ${marker}\n    - contents: from base\n    - mode: "0600"\n` +
          `copy:\n  file.managed:\n    - name: ${marker}-2\n    - use: [mine]\n`,
      },
      "u",
    );
    expect(by.base).toMatchObject({ skipped: true, skip_reason: "unless" });
    expect(by.other).toMatchObject({ skipped: true, skip_reason: "unless" });
    expect(by.copy).toMatchObject({ result: true, changed: true });
    expect(await readFile(`${marker}-2`, "utf8")).toBe("from base\n");
  });

  it("check_cmd decides the result after the state ran", async () => {
    const f = join(work, "check-cmd");
    const { by } = await applyTree(
      {
        "k.zy":
          `good:\n  file.managed:\n    - name: ${f}\n    - contents: yes\n    - check_cmd: grep -q yes ${f}\n` +
          `bad:\n  cmd.run:\n    - name: 'true'\n    - check_cmd:\n      - grep -q no ${f}\n` +
          "rescued:\n  cmd.run:\n    - name: exit 1\n    - check_cmd: 'true'\n",
      },
      "k",
    );
    expect(by.good).toMatchObject({ result: true, changed: true });
    expect(by.bad).toMatchObject({ result: false });
    expect(by.bad!.comment).toContain("check_cmd determined the state failed");
    expect(by.rescued).toMatchObject({ result: true });
    expect(by.rescued!.comment).toContain("check_cmd determined the state succeeded");
  });
});
