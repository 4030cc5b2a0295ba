import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { resolveExec } from "../src/modules/index.js";
import type { ModuleContext } from "../src/modules/types.js";

const ctx = {
  test: false,
  id: "t",
  facts: { os_family: "Debian", cpu: { count: 4 }, ipv4: ["10.0.0.1", "127.0.0.1"] },
  settings: { app: { listen: "127.0.0.1:8080" } },
  render: async (t: string) => t,
} as ModuleContext;

async function call(fun: string, params: Record<string, unknown> = {}) {
  const r = await resolveExec(fun);
  if (!r.ok) throw new Error(r.error);
  return r.fn.run(params, ctx);
}

describe("facts / grains / settings / pillar readers", () => {
  it("reads by colon path with a default, like grains.get and pillar.get", async () => {
    expect(await call("facts.get", { key: "cpu:count" })).toBe(4);
    expect(await call("grains.get", { key: "ipv4:1" })).toBe("127.0.0.1");
    expect(await call("facts.get", { key: "nope:x", default: "fallback" })).toBe("fallback");
    expect(await call("facts.get", { key: "nope" })).toBe("");
    expect(await call("pillar.get", { key: "app:listen" })).toBe("127.0.0.1:8080");
    expect(await call("settings.keys")).toEqual(["app"]);
    expect(await call("facts.keys")).toEqual(["cpu", "ipv4", "os_family"]);
    // grains are Salt's view of the facts: every fact plus Salt's derived core names.
    expect(await call("grains.keys")).toEqual(
      expect.arrayContaining(["cpu", "ipv4", "os_family", "saltversion", "pythonversion"]),
    );
    expect(await call("facts.items")).toBe(ctx.facts);
  });

  it("answers `zester local facts.get` from the real machine's facts", () => {
    const bin = "dist/bin/zester.js";
    if (!existsSync(bin)) throw new Error("build first (npm test builds)");
    const out = JSON.parse(
      execFileSync(process.execPath, [bin, "local", "facts.get", "os", "--format", "json"]).toString(),
    );
    expect(out[0].return).toBe("linux");
    const grain = JSON.parse(
      execFileSync(process.execPath, [bin, "local", "grains.get", "os", "--format", "json"]).toString(),
    );
    expect(grain[0].return).toBe("Debian");
  });
});
