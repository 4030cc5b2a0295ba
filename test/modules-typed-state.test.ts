import { describe, expect, expectTypeOf, it } from "vitest";
import { family as timezone } from "../src/modules/timezone.js";
import { type InferParams, typedState } from "../src/modules/typed-state.js";
import type { ParamSpec, Plan } from "../src/modules/types.js";
import { stateParams } from "../src/state/compile.js";
import { moduleContext, runState } from "./support/module-context.js";

const PARAMS = {
  name: { type: "string", doc: "path", required: true, aliases: ["path"] },
  contents: { type: "string", doc: "text" },
  source: { type: "string", doc: "url" },
  makedirs: { type: "boolean", doc: "create parents", default: false },
  mode: { type: ["string", "number"], doc: "mode" },
  kind: { type: "string", doc: "kind", enum: ["file", "dir"], default: "file" },
  pkgs: { type: "list", doc: "names", items: "string" },
} as const satisfies Record<string, ParamSpec>;

describe("typed state functions", () => {
  it("plan() is typed from the schema: required and defaulted keys present, enums and items narrowed", () => {
    type P = InferParams<typeof PARAMS>;
    expectTypeOf<P["name"]>().toEqualTypeOf<string>();
    expectTypeOf<P["makedirs"]>().toEqualTypeOf<boolean>();
    expectTypeOf<P["kind"]>().toEqualTypeOf<"file" | "dir">();
    expectTypeOf<P["contents"]>().toEqualTypeOf<string | undefined>();
    expectTypeOf<P["mode"]>().toEqualTypeOf<string | number | undefined>();
    expectTypeOf<P["pkgs"]>().toEqualTypeOf<string[] | undefined>();
  });

  const seen: InferParams<typeof PARAMS>[] = [];
  const managed = typedState({
    doc: "test",
    primary: "name",
    params: PARAMS,
    validate: (p) =>
      p.contents !== undefined && p.source !== undefined
        ? [{ key: "source", message: "contents and source are mutually exclusive" }]
        : [],
    plan: async (p): Promise<Plan> => {
      seen.push(p);
      return { changes: {}, comment: `${p.name} ${p.kind} ${String(p.makedirs)}` };
    },
  });

  it("plan() gets validated, defaulted values (primary defaulted to the id, aliases resolved)", async () => {
    const r = await runState(managed, { makedirs: "yes" }, moduleContext({ id: "/etc/motd" }));
    expect(r).toMatchObject({ result: true, comment: "/etc/motd file true" });
    expect(seen.at(-1)).toEqual({ name: "/etc/motd", makedirs: true, kind: "file" });
  });

  it("validate runs after the schema, at compile time, and names the key", () => {
    const v = stateParams(managed, "x", { contents: "a", source: "salt://b" });
    expect(v.issues).toEqual([{ key: "source", message: "contents and source are mutually exclusive" }]);
    // Schema problems come first; cross-field rules are not asked about ill-typed params.
    const bad = stateParams(managed, "x", { contents: "a", source: "b", kind: "link" });
    expect(bad.issues.map((i) => i.key)).toEqual(["kind"]);
  });

  it("a required key given as null is refused, not handed to plan() as undefined", () => {
    const v = stateParams(managed, "x", { name: null });
    expect(v.issues).toEqual([{ key: "name", message: 'missing required parameter "name"' }]);
  });

  it("timezone.system is converted: same schema for zester doc, typed plan", () => {
    const system = timezone.states.system!;
    expect(Object.keys(system.params)).toEqual(["name", "utc"]);
    expect(system.params.name).toMatchObject({ required: true, aliases: ["timezone"] });
    expect(stateParams(system, "Europe/Paris", {}).params).toEqual({ name: "Europe/Paris" });
    expect(stateParams(system, "x", { timezone: "UTC", utc: "yes" }).params).toEqual({
      name: "UTC",
      utc: true,
    });
  });
});
