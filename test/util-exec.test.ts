import { describe, expect, it } from "vitest";
import { run } from "../src/util/exec.js";

describe("run()", () => {
  it("returns a non-zero exit as a result with both streams", async () => {
    const r = await run("echo out; echo err >&2; exit 3");
    expect(r).toMatchObject({ retcode: 3, stdout: "out\n", stderr: "err\n" });
  });

  it("runs an argv without a shell, so metacharacters stay literal", async () => {
    const r = await run(["echo", "$HOME;", "x"]);
    expect(r.stdout).toBe("$HOME; x\n");
  });

  it("rejects when the program does not exist", async () => {
    await expect(run(["/nonexistent/zester-binary"])).rejects.toThrow(/ENOENT/);
  });

  it("kills the whole process tree on timeout instead of waiting for grandchildren", async () => {
    const t0 = Date.now();
    const r = await run("sleep 5; echo late", { timeoutMs: 200 });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(r.killed).toBe("timeout");
    expect(r.stdout).toBe("");
  });

  it("kills on abort and closes stdin so a prompt cannot hang", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const r = await run("sleep 5", { signal: ac.signal });
    expect(r.killed).toBe("canceled");
    const read = await run('read x; echo "got:$x"');
    expect(read.stdout).toBe("got:\n");
  });

  it("passes env and cwd", async () => {
    const r = await run("echo $ZX_VAR; pwd", { env: { ZX_VAR: "v1" }, cwd: "/tmp" });
    expect(r.stdout).toBe("v1\n/tmp\n");
  });
});
