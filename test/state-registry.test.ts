import { describe, expect, it } from "vitest";
import { loadFamily, resolveExec, resolveState } from "../src/modules/index.js";

describe("module registry", () => {
  it("loads families lazily by name", async () => {
    const f = await loadFamily("test");
    expect(f?.name).toBe("test");
    expect(await loadFamily("nosuch")).toBeUndefined();
  });
  it("resolves functions with did-you-mean", async () => {
    const ok = await resolveState("test.nop");
    expect(ok.ok).toBe(true);
    const bad = await resolveState("test.noop");
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error).toContain('did you mean "test.nop"');
    const mod = await resolveState("tst.nop");
    if (!mod.ok) expect(mod.error).toContain('did you mean "test"');
    const ex = await resolveExec("test.echo");
    expect(ex.ok).toBe(true);
  });
});
