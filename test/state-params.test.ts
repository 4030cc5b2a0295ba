import { describe, expect, it } from "vitest";
import { inRequisiteBase, isEngineKey, validateParams } from "../src/modules/params.js";
import type { ParamSpec } from "../src/modules/types.js";

const specs: Record<string, ParamSpec> = {
  name: { type: "string", doc: "path", required: true, aliases: ["path"] },
  mode: { type: ["string", "number"], doc: "mode" },
  count: { type: "integer", doc: "n", default: 3 },
  force: { type: "boolean", doc: "f", default: false },
  pkgs: { type: "list", doc: "l", items: "string" },
  kind: { type: "string", doc: "k", enum: ["file", "dir"] },
  opts: { type: "map", doc: "m" },
};

describe("params", () => {
  it("resolves aliases, applies defaults and coerces scalars", () => {
    const v = validateParams(specs, { path: "/x", count: "5", force: "yes", pkgs: ["a", 1] });
    expect(v.issues).toEqual([]);
    expect(v.params).toEqual({ name: "/x", count: 5, force: true, pkgs: ["a", "1"] });
  });

  it("leaves modes alone: YAML 1.2 reads 0644 as the number 644", () => {
    expect(validateParams(specs, { name: "a", mode: 644 }).params.mode).toBe(644);
    expect(validateParams(specs, { name: "a", mode: "0644" }).params.mode).toBe("0644");
  });

  it("a number where a string is expected becomes its spelling", () => {
    expect(validateParams(specs, { name: 123 }).params.name).toBe("123");
  });

  it("reports every problem with the key it concerns", () => {
    const v = validateParams(specs, { nam: "x", count: "many", pkgs: "a", kind: "fil", opts: [1] });
    const byKey = Object.fromEntries(v.issues.map((i) => [i.key, i.message]));
    expect(byKey.nam).toBe('unknown parameter "nam" (did you mean "name"?)');
    expect(byKey.count).toContain("must be integer");
    expect(byKey.pkgs).toContain("must be list, got string");
    expect(byKey.kind).toContain('did you mean "file"');
    expect(byKey.opts).toContain("must be map, got list");
    expect(byKey.name).toBe('missing required parameter "name"');
  });

  it("refuses a parameter given under two names", () => {
    const v = validateParams(specs, { name: "a", path: "b" });
    expect(v.issues[0]!.message).toContain("same parameter");
  });

  it("knows the engine's own keys", () => {
    for (const k of [
      "require",
      "watch_in",
      "onfail_all",
      "require_any",
      "listen_in",
      "onlyif",
      "names",
      "use",
      "parallel",
      "check_cmd",
    ]) {
      expect(isEngineKey(k), k).toBe(true);
    }
    expect(isEngineKey("parallel_in")).toBe(false);
    expect(isEngineKey("name")).toBe(false);
    expect(inRequisiteBase("prereq_in")).toBe("prereq");
    expect(inRequisiteBase("mode_in")).toBeUndefined();
  });
});
