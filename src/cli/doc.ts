/** `zester doc [module|module.function]`: documentation served from the modules' own schemas. */
import type { ExecFunction, ModuleFamily, ParamSpec, StateFunction } from "../modules/types.js";
import { suggestion } from "../util/suggest.js";
import { UsageError } from "./errors.js";

function paramLines(params: Record<string, ParamSpec>, primary?: string): string[] {
  const out: string[] = [];
  for (const [name, p] of Object.entries(params)) {
    const type = typeof p.type === "string" ? p.type : p.type.join("|");
    const bits = [p.items ? `${type} of ${p.items}` : type];
    if (p.required) bits.push("required");
    if (name === primary) bits.push("defaults to the state id");
    if (p.default !== undefined) bits.push(`default ${JSON.stringify(p.default)}`);
    if (p.aliases && p.aliases.length > 0) bits.push(`alias ${p.aliases.join(", ")}`);
    if (p.enum) bits.push(`one of ${p.enum.join(", ")}`);
    out.push(`    ${name} (${bits.join("; ")})`);
    out.push(`        ${p.doc}`);
  }
  return out;
}

/** What state.revert does after this state changed the machine (docs/revert.md). */
function revertDoc(fn: StateFunction): string {
  return fn.revert ?? "cannot be reverted: this family keeps no pre-image yet.";
}

function fnDoc(kind: "state" | "function", fullName: string, fn: StateFunction | ExecFunction): string {
  const lines = [`${fullName} (${kind})`, `    ${fn.doc}`];
  const params = paramLines(fn.params, "primary" in fn ? fn.primary : undefined);
  if ("positional" in fn && fn.positional && fn.positional.length > 0) {
    lines.push(`    Positional: ${fn.positional.join(", ")}`);
  }
  if (params.length > 0) lines.push("  Parameters:", ...params);
  if (kind === "state") lines.push("  Revert:", `    ${revertDoc(fn as StateFunction)}`);
  return lines.join("\n");
}

function familyDoc(f: ModuleFamily, only?: string): string[] {
  const out: string[] = [];
  for (const [n, fn] of Object.entries(f.states))
    if (!only || only === n) out.push(fnDoc("state", `${f.name}.${n}`, fn));
  for (const [n, fn] of Object.entries(f.exec ?? {})) {
    if (!only || only === n) out.push(fnDoc("function", `${f.name}.${n}`, fn));
  }
  return out;
}

export async function run(argv: string[]): Promise<number> {
  const reg = await import("../modules/index.js");
  const [what] = argv.filter((a) => !a.startsWith("-"));
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write("Usage: zester doc [module|module.function]\n");
    return 0;
  }
  if (what === undefined) {
    const { families, errors } = await reg.loadAllFamilies();
    const lines = families.map((f) => {
      const fns = [...Object.keys(f.states), ...Object.keys(f.exec ?? {}).filter((k) => !(k in f.states))];
      return `${f.name}: ${f.doc}\n    ${fns.sort().join(", ")}`;
    });
    for (const e of errors) lines.push(`(could not load ${e})`);
    process.stdout.write(`${lines.join("\n\n")}\n`);
    return 0;
  }
  const [mod, name] = what.includes(".")
    ? [what.slice(0, what.indexOf(".")), what.slice(what.indexOf(".") + 1)]
    : [what];
  const fam = await reg.loadFamily(mod!);
  if (!fam) throw new UsageError(`unknown module "${mod}"${suggestion(mod!, reg.FAMILY_NAMES)}`);
  const out = familyDoc(fam, name);
  if (out.length === 0) {
    const names = [...Object.keys(fam.states), ...Object.keys(fam.exec ?? {})];
    throw new UsageError(`module "${mod}" has no function "${name}"${suggestion(name ?? "", names)}`);
  }
  const header = name ? "" : `${fam.name}: ${fam.doc}\n\n`;
  process.stdout.write(`${header}${out.join("\n\n")}\n`);
  return 0;
}
