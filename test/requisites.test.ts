import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyTarget } from "../src/state/engine.js";
import type { StateResult } from "../src/state/result.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-req-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function apply(text: string, test = false): Promise<Record<string, StateResult>> {
  const name = `s${++n}`;
  await writeFile(join(dir, `${name}.zy`), text);
  const { results } = await applyTarget({ kind: "sls", refs: [name] }, { statesDir: dir, test });
  const byId: Record<string, StateResult> = {};
  for (const r of results) byId[r.id] = r;
  return byId;
}

const FAIL = "test.fail_without_changes: []";
const NOCHANGE = "test.succeed_without_changes: []";
const CHANGE = "test.succeed_with_changes: []";

/** A target state of each kind plus one dependent using `req` on the listed targets. */
function tree(req: string, targets: Record<string, string>): string {
  const lines: string[] = [];
  for (const [id, decl] of Object.entries(targets)) lines.push(`${id}:\n  ${decl}`);
  lines.push(
    `dep:\n  test.succeed_with_changes:\n    - ${req}:\n${Object.keys(targets)
      .map((t) => `      - ${t}`)
      .join("\n")}`,
  );
  return `${lines.join("\n")}\n`;
}

describe("requisites", () => {
  it("require: failed target skips, unchanged and changed targets run", async () => {
    expect((await apply(tree("require", { t: FAIL }))).dep).toMatchObject({
      skipped: true,
      skip_reason: "require_failed",
      result: false,
    });
    expect((await apply(tree("require", { t: NOCHANGE }))).dep).toMatchObject({
      skipped: false,
      result: true,
    });
    expect((await apply(tree("require", { t: CHANGE }))).dep).toMatchObject({
      skipped: false,
      changed: true,
    });
  });

  it("require: a skipped target skips its dependents too", async () => {
    const r = await apply(
      `a:\n  ${FAIL}\nb:\n  test.nop:\n    - require: [a]\nc:\n  test.nop:\n    - require: [b]\n`,
    );
    expect(r.b?.skip_reason).toBe("require_failed");
    expect(r.c?.skip_reason).toBe("require_failed");
  });

  it("require_any: runs if any target succeeded", async () => {
    expect((await apply(tree("require_any", { a: FAIL, b: NOCHANGE }))).dep?.skipped).toBe(false);
    expect((await apply(tree("require_any", { a: FAIL, b: FAIL }))).dep).toMatchObject({
      skipped: true,
      skip_reason: "require_any_failed",
    });
  });

  it("watch: failed skips; unchanged runs without watch action; changed fires the watch action", async () => {
    expect((await apply(tree("watch", { t: FAIL }))).dep).toMatchObject({
      skipped: true,
      skip_reason: "watch_failed",
    });
    const quiet = `t:\n  ${NOCHANGE}\ndep:\n  test.succeed_without_changes:\n    - watch: [t]\n`;
    expect((await apply(quiet)).dep).toMatchObject({ skipped: false, changed: false, changes: {} });
    const loud = `t:\n  ${CHANGE}\ndep:\n  test.succeed_without_changes:\n    - watch: [t]\n`;
    const r = await apply(loud);
    expect(r.dep?.changed).toBe(true);
    expect(r.dep?.changes).toEqual({ watch: "triggered for dep" });
    // A watcher that changed on its own does not also fire its watch action.
    const own = await apply(`t:\n  ${CHANGE}\ndep:\n  test.succeed_with_changes:\n    - watch: [t]\n`);
    expect(own.dep?.changes).not.toHaveProperty("watch");
  });

  it("watch_any: skipped unless any succeeded, watch action if any changed", async () => {
    const some = await apply(
      `a:\n  ${FAIL}\nb:\n  ${CHANGE}\ndep:\n  test.succeed_without_changes:\n    - watch_any: [a, b]\n`,
    );
    expect(some.dep?.changes).toEqual({ watch: "triggered for dep" });
    const none = await apply(`a:\n  ${FAIL}\nb:\n  ${FAIL}\ndep:\n  test.nop:\n    - watch_any: [a, b]\n`);
    expect(none.dep).toMatchObject({ skipped: true, skip_reason: "watch_any_failed" });
    const quiet = await apply(
      `a:\n  ${FAIL}\nb:\n  ${NOCHANGE}\ndep:\n  test.nop:\n    - watch_any: [a, b]\n`,
    );
    expect(quiet.dep).toMatchObject({ skipped: false, changed: false });
  });

  it("onchanges: runs only when a target changed", async () => {
    expect((await apply(tree("onchanges", { t: FAIL }))).dep).toMatchObject({
      skipped: true,
      skip_reason: "onchanges_not_met",
      result: true,
    });
    expect((await apply(tree("onchanges", { t: NOCHANGE }))).dep?.skip_reason).toBe("onchanges_not_met");
    expect((await apply(tree("onchanges", { t: CHANGE }))).dep).toMatchObject({
      skipped: false,
      changed: true,
    });
    expect((await apply(tree("onchanges", { a: NOCHANGE, b: CHANGE }))).dep?.skipped).toBe(false);
  });

  it("onchanges_any: runs if any target changed", async () => {
    expect((await apply(tree("onchanges_any", { a: FAIL, b: CHANGE }))).dep?.skipped).toBe(false);
    expect((await apply(tree("onchanges_any", { a: NOCHANGE, b: NOCHANGE }))).dep?.skip_reason).toBe(
      "onchanges_not_met",
    );
  });

  it("onfail: runs when a target failed or was skipped, not otherwise", async () => {
    expect((await apply(tree("onfail", { t: FAIL }))).dep).toMatchObject({ skipped: false, result: true });
    const skippedTarget = await apply(
      `a:\n  ${FAIL}\nt:\n  test.nop:\n    - require: [a]\ndep:\n  test.nop:\n    - onfail: [t]\n`,
    );
    expect(skippedTarget.dep?.skipped).toBe(false);
    expect((await apply(tree("onfail", { t: NOCHANGE }))).dep).toMatchObject({
      skipped: true,
      skip_reason: "onfail_not_met",
    });
    expect((await apply(tree("onfail", { t: CHANGE }))).dep?.skip_reason).toBe("onfail_not_met");
    expect((await apply(tree("onfail", { a: NOCHANGE, b: FAIL }))).dep?.skipped).toBe(false);
  });

  it("onfail_all: runs only if all targets failed", async () => {
    expect((await apply(tree("onfail_all", { a: FAIL, b: FAIL }))).dep?.skipped).toBe(false);
    expect((await apply(tree("onfail_all", { a: FAIL, b: NOCHANGE }))).dep?.skip_reason).toBe(
      "onfail_not_met",
    );
  });

  it("a not-run onchanges dependent counts as success for its own dependents", async () => {
    const r = await apply(
      `t:\n  ${NOCHANGE}\nmid:\n  test.nop:\n    - onchanges: [t]\nend:\n  test.nop:\n    - require: [mid]\n`,
    );
    expect(r.mid?.skip_reason).toBe("onchanges_not_met");
    expect(r.end).toMatchObject({ skipped: false, result: true });
  });

  it("prereq: runs before a changing target, not at all for an unchanged one, skipped for a failing one", async () => {
    const changing = await apply(`t:\n  ${CHANGE}\ndep:\n  test.succeed_with_changes:\n    - prereq: [t]\n`);
    expect(changing.dep).toMatchObject({ skipped: false, changed: true });
    expect(changing.dep!.run_num).toBeLessThan(changing.t!.run_num);
    expect(changing.t?.changed).toBe(true);
    const quiet = await apply(`t:\n  ${NOCHANGE}\ndep:\n  test.succeed_with_changes:\n    - prereq: [t]\n`);
    expect(quiet.dep).toMatchObject({ skipped: true, skip_reason: "prereq_not_met", result: true });
    expect(quiet.t?.skipped).toBe(false);
    const failing = await apply(`t:\n  ${FAIL}\ndep:\n  test.succeed_with_changes:\n    - prereq: [t]\n`);
    expect(failing.dep).toMatchObject({ skipped: true, skip_reason: "prereq_failed" });
    const blocked = await apply(
      `a:\n  ${FAIL}\nt:\n  test.succeed_with_changes:\n    - require: [a]\ndep:\n  test.nop:\n    - prereq: [t]\n`,
    );
    expect(blocked.dep).toMatchObject({ skipped: true, skip_reason: "prereq_failed" });
  });

  it("prereq: a failing prereq'ing state stops its target", async () => {
    const r = await apply(`t:\n  ${CHANGE}\ndep:\n  test.fail_with_changes:\n    - prereq: [t]\n`);
    expect(r.dep?.result).toBe(false);
    expect(r.t).toMatchObject({ skipped: true, skip_reason: "prereq_failed" });
  });

  it("listen: runs normally and fires its watch action once at the end when a target changed", async () => {
    const changed = await apply(
      `t:\n  ${CHANGE}\nsvc:\n  test.succeed_without_changes:\n    - listen: [t]\nlast:\n  test.nop: []\n`,
    );
    expect(changed.svc).toMatchObject({ skipped: false, changed: false });
    const listener = changed.listener_svc;
    expect(listener).toMatchObject({ name: "test.succeed_without_changes:listener_svc", changed: true });
    expect(listener!.run_num).toBeGreaterThan(changed.last!.run_num);
    const quiet = await apply(`t:\n  ${NOCHANGE}\nsvc:\n  test.nop:\n    - listen: [t]\n`);
    expect(quiet.listener_svc).toBeUndefined();
    const failed = await apply(`t:\n  ${FAIL}\nsvc:\n  test.nop:\n    - listen: [t]\n`);
    expect(failed.svc).toMatchObject({ skipped: false, result: true });
    expect(failed.listener_svc).toBeUndefined();
  });

  it("_in forms reverse the edge", async () => {
    const r = await apply(
      `t:\n  test.fail_without_changes:\n    - require_in: [dep]\n    - onfail_in: [rescue]\ndep:\n  test.nop: []\nrescue:\n  test.nop: []\nw:\n  test.succeed_with_changes:\n    - watch_in:\n      - test: svc\n    - listen_in: [svc2]\nsvc:\n  test.nop: []\nsvc2:\n  test.nop: []\n`,
    );
    expect(r.dep?.skip_reason).toBe("require_failed");
    expect(r.rescue?.skipped).toBe(false);
    expect(r.svc?.changes).toEqual({ watch: "triggered for svc" });
    expect(r.listener_svc2).toBeDefined();
  });

  it("accepts module.function:id, {module: id} and bare ids", async () => {
    const r = await apply(
      `a:\n  ${FAIL}\nb:\n  test.nop:\n    - require:\n      - test.fail_without_changes:a\nc:\n  test.nop:\n    - require:\n      - test: a\nd:\n  test.nop:\n    - require: [a]\n`,
    );
    expect(r.b?.skip_reason).toBe("require_failed");
    expect(r.c?.skip_reason).toBe("require_failed");
    expect(r.d?.skip_reason).toBe("require_failed");
  });
});

describe("sls requisites", () => {
  it("{sls: name} targets every state of that file", async () => {
    await writeFile(join(dir, "lib.zy"), `l1:\n  ${NOCHANGE}\nl2:\n  ${FAIL}\n`);
    const r = await apply("include: [lib]\nuser:\n  test.nop:\n    - require:\n      - sls: lib\n");
    expect(r.user).toMatchObject({ skipped: true, skip_reason: "require_failed" });
    expect(r.l2!.run_num).toBeLessThan(r.user!.run_num);
  });
});

describe("prereq with several prereq'ing states", () => {
  it("each runs before the changing target", async () => {
    const r = await apply(
      `t:\n  ${CHANGE}\nd1:\n  test.succeed_with_changes:\n    - prereq: [t]\nd2:\n  test.succeed_with_changes:\n    - prereq: [t]\n`,
    );
    expect(r.d1).toMatchObject({ skipped: false, changed: true });
    expect(r.d2).toMatchObject({ skipped: false, changed: true });
    expect(r.t!.run_num).toBeGreaterThan(Math.max(r.d1!.run_num, r.d2!.run_num));
  });
});
