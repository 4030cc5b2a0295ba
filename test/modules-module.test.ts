import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveExec } from "../src/modules/index.js";
import { callParams, family } from "../src/modules/module.js";
import type { ModuleContext, Params } from "../src/modules/types.js";
import { callExec } from "../src/state/exec.js";
import { moduleContext, runState, runWatch, tempDir } from "./support/module-context.js";

const moduleRun = family.states.run!;

let dir = "";
let cleanup: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir("zester-modrun-"));
});
afterEach(() => cleanup());

/** A real call path: resolve the exec function and run it, recording each call. */
function recordingContext(test = false) {
  const calls: Array<{ fun: string; args: Params }> = [];
  const ctx: ModuleContext = moduleContext({
    test,
    call: async (fun, args) => {
      calls.push({ fun, args });
      const r = await resolveExec(fun);
      if (!r.ok) throw new Error(r.error);
      return r.fn.run(args, ctx);
    },
  });
  return { ctx, calls };
}

describe("module.run", () => {
  it("maps positional args onto the function's parameters and reports the return value", async () => {
    const { ctx, calls } = recordingContext();
    const r = await runState(
      moduleRun,
      { name: "cmd.run_all", args: ["echo hi; exit 0"], kwargs: { cwd: dir } },
      ctx,
    );
    expect(r.result, r.comment).toBe(true);
    expect(r.changed).toBe(true);
    expect(calls).toEqual([{ fun: "cmd.run_all", args: { cmd: "echo hi; exit 0", cwd: dir } }]);
    expect(r.changes).toEqual({ function: "cmd.run_all", ret: { retcode: 0, stdout: "hi", stderr: "" } });
  });

  it("accepts the function as the state id", async () => {
    const calls: string[] = [];
    const ctx = moduleContext({
      id: "test.ping",
      call: async (fun) => {
        calls.push(fun);
        return true;
      },
    });
    const r = await runState(moduleRun, {}, ctx);
    expect(r.changes).toEqual({ function: "test.ping", ret: true });
    expect(calls).toEqual(["test.ping"]);
  });

  it("does not call anything in test mode", async () => {
    const marker = join(dir, "called");
    const { ctx, calls } = recordingContext(true);
    const r = await runState(moduleRun, { name: "cmd.run", args: [`touch ${marker}`] }, ctx);
    expect(r.result).toBe(true);
    expect(r.pending).toBe(true);
    expect(calls).toEqual([]);
    await expect(stat(marker)).rejects.toThrow(/ENOENT/);
  });

  it("fails the state when the call throws", async () => {
    const ctx = moduleContext({
      call: async () => {
        throw new Error("boom");
      },
    });
    const r = await runState(moduleRun, { name: "test.ping" }, ctx);
    expect(r.result).toBe(false);
    expect(r.comment).toBe("Function test.ping failed: boom");
  });

  it("fails while planning for unknown functions and bad arguments", async () => {
    const { ctx, calls } = recordingContext();
    const unknown = await runState(moduleRun, { name: "cmd.rn" }, ctx);
    expect(unknown.result).toBe(false);
    expect(unknown.comment).toMatch(/did you mean "cmd.run/);
    const tooMany = await runState(moduleRun, { name: "test.ping", args: [1] }, ctx);
    expect(tooMany.result).toBe(false);
    expect(tooMany.comment).toMatch(/at most 0 positional/);
    expect(calls).toEqual([]);
  });

  it("writes a file through file.read round trip", async () => {
    const f = join(dir, "x");
    const { ctx } = recordingContext();
    await runState(moduleRun, { name: "cmd.run", args: [`printf data > ${f}`] }, ctx);
    expect(await readFile(f, "utf8")).toBe("data");
    const r = await runState(moduleRun, { name: "file.read", args: [f] }, ctx);
    expect(r.changes.ret).toBe("data");
  });

  it("callParams refuses a name given twice", () => {
    expect(() => callParams("f.g", ["a"], { args: [1], kwargs: { a: 2 } })).toThrow(
      /both in args and kwargs/,
    );
    expect(callParams("f.g", ["a", "b"], { args: "x" })).toEqual({ a: "x" });
  });

  it("a direct call (zester local, salt[...], guards) refuses a name given both ways too, as Salt does", async () => {
    const ctx = moduleContext();
    expect(await callExec("test.echo", ["hi"], {}, ctx)).toBe("hi");
    // Salt: the Python call raises "got multiple values for argument"; a copy of this rule used
    // to let the positional silently win.
    await expect(callExec("test.echo", ["hi"], { text: "there" }, ctx)).rejects.toThrow(
      "test.echo: text given both in args and kwargs",
    );
    await expect(callExec("test.echo", ["a", "b"], {}, ctx)).rejects.toThrow(/at most 1 positional/);
  });
});

describe("module.run / module.wait, Salt's legacy form", () => {
  /** Calls through callExec, as a peel does: aliases resolved, parameters validated. */
  function execContext(test = false) {
    const calls: Array<{ fun: string; args: Params }> = [];
    const ctx: ModuleContext = moduleContext({
      test,
      call: async (fun, args) => {
        calls.push({ fun, args });
        return callExec(fun, [], args, ctx);
      },
    });
    return { ctx, calls };
  }

  it("takes the function's keyword arguments as the state's own keys, m_name as its name", async () => {
    const { ctx, calls } = execContext();
    const r = await runState(
      moduleRun,
      { name: "cmd.run_all", m_name: "pwd", cwd: dir, output_loglevel: "quiet" },
      ctx,
    );
    expect(r.result, r.comment).toBe(true);
    expect(calls).toEqual([{ fun: "cmd.run_all", args: { name: "pwd", cwd: dir } }]);
    expect((r.changes.ret as { stdout: string }).stdout).toBe(dir);
    expect(r.comment).toBe('Function cmd.run_all called (cmd.run_all takes no "output_loglevel": ignored)');
  });

  it("module.wait does nothing on a normal run and calls the function on watch", async () => {
    const wait = family.states.wait!;
    const marker = join(dir, "waited");
    const p = { name: "cmd.run_all", cmd: `echo hi > ${marker}`, python_shell: true };
    const { ctx, calls } = execContext();
    const normal = await runState(wait, p, ctx);
    expect(normal).toMatchObject({ result: true, changed: false });
    expect(calls).toEqual([]);
    const dry = execContext(true);
    expect(await runWatch(wait, p, dry.ctx)).toMatchObject({ result: true, pending: true });
    expect(dry.calls).toEqual([]);
    const watched = await runWatch(wait, p, ctx);
    expect(watched.result, watched.comment).toBe(true);
    expect(watched.comment).toContain('cmd.run_all takes no "python_shell": ignored');
    expect(calls.map((c) => c.fun)).toEqual(["cmd.run_all"]);
    expect(await readFile(marker, "utf8")).toBe("hi\n");
  });
});
