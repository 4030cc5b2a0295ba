/**
 * facts.* and grains.*: read this machine's facts, or Salt's grains view of them, as templates
 * see them, e.g. `zester local facts.get cpu_count` or `zester 'web*' grains.get osfinger`.
 */
import { saltGrains } from "../facts/grains.js";
import { colonGet } from "../template/context.js";
import type { ExecFunction, ModuleContext, ModuleFamily, Params } from "./types.js";

function readers(
  what: string,
  data: (ctx: ModuleContext) => Record<string, unknown>,
): Record<string, ExecFunction> {
  return {
    items: {
      doc: `Every ${what} key and value.`,
      params: {},
      readOnly: true,
      async run(_p: Params, ctx) {
        return data(ctx);
      },
    },
    keys: {
      doc: `The top-level ${what} keys, sorted.`,
      params: {},
      readOnly: true,
      async run(_p: Params, ctx) {
        return Object.keys(data(ctx)).sort();
      },
    },
    get: {
      doc: `One ${what} value by colon path (\`network:hostname\`, \`ipv4:0\`); \`default\` when it is absent.`,
      params: {
        key: {
          type: "string",
          required: true,
          doc: "Colon-separated path, e.g. `os_family` or `cpu:model`.",
        },
        default: {
          type: "any",
          doc: "Returned when the path does not exist (default: an empty string, like Salt).",
        },
        delimiter: { type: "string", default: ":", doc: "Path separator." },
      },
      positional: ["key", "default"],
      readOnly: true,
      async run(p: Params, ctx) {
        return colonGet(data(ctx), String(p.key), p.default ?? "", String(p.delimiter ?? ":"));
      },
    },
  };
}

export const factsFamily = (name: string): ModuleFamily => ({
  name,
  doc: "Facts about this machine with the spec's names (`os: linux`), collected by the peel; read-only.",
  states: {},
  exec: readers("fact", (ctx) => ctx.facts),
});

export const grainsFamily = (name: string): ModuleFamily => ({
  name,
  doc: "Salt's core grains of this machine (`os: Debian`), computed from its facts; read-only.",
  states: {},
  exec: readers("grain", (ctx) => saltGrains(ctx.facts)),
});

export const settingsFamily = (name: string): ModuleFamily => ({
  name,
  doc: "This machine's resolved settings (Salt's pillar); read-only.",
  states: {},
  exec: readers("setting", (ctx) => ctx.settings),
});

export const family = factsFamily("facts");
