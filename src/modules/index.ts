/**
 * The module registry: family name → lazy loader. A family's file is imported only when a state
 * or command uses it, which keeps `zester local` start-up small.
 */

import { errText } from "../util/errors.js";
import { didYouMean } from "../util/suggest.js";
import type { ExecFunction, ModuleFamily, StateFunction } from "./types.js";

/**
 * Families shipped with Zester, each `src/modules/<name>.ts` exporting `family`: a typed loader
 * map (as cli/main.ts has for commands), so a missing file or export fails the build, not a run.
 */
const FAMILIES = {
  archive: () => import("./archive.js"),
  basket: () => import("./basket.js"),
  cmd: () => import("./cmd.js"),
  cron: () => import("./cron.js"),
  disk: () => import("./disk.js"),
  facts: () => import("./facts.js"),
  file: () => import("./file.js"),
  git: () => import("./git.js"),
  grains: () => import("./grains.js"),
  group: () => import("./group.js"),
  host: () => import("./host.js"),
  locale: () => import("./locale.js"),
  mine: () => import("./mine.js"),
  module: () => import("./module.js"),
  mount: () => import("./mount.js"),
  network: () => import("./network.js"),
  pillar: () => import("./pillar.js"),
  pip: () => import("./pip.js"),
  pkg: () => import("./pkg.js"),
  pkgrepo: () => import("./pkgrepo.js"),
  service: () => import("./service.js"),
  settings: () => import("./settings.js"),
  ssh_auth: () => import("./ssh_auth.js"),
  sysctl: () => import("./sysctl.js"),
  test: () => import("./test.js"),
  timezone: () => import("./timezone.js"),
  user: () => import("./user.js"),
} satisfies Record<string, () => Promise<{ family: ModuleFamily }>>;

type FamilyName = keyof typeof FAMILIES;

export const FAMILY_NAMES: readonly string[] = Object.keys(FAMILIES);

export function isKnownFamily(name: string): boolean {
  return Object.hasOwn(FAMILIES, name);
}

/** Loads one family, or undefined if no such family exists. Node caches the import. */
export async function loadFamily(name: string): Promise<ModuleFamily | undefined> {
  if (!isKnownFamily(name)) return undefined;
  return (await FAMILIES[name as FamilyName]()).family;
}

/** Loads every family (for `zester doc` with no argument). Families that fail to load are reported. */
export async function loadAllFamilies(): Promise<{ families: ModuleFamily[]; errors: string[] }> {
  const families: ModuleFamily[] = [];
  const errors: string[] = [];
  for (const name of FAMILY_NAMES) {
    try {
      const f = await loadFamily(name);
      if (f) families.push(f);
    } catch (err) {
      errors.push(`${name}: ${errText(err)}`);
    }
  }
  return { families, errors };
}

export type Resolved<T> =
  | { ok: true; family: ModuleFamily; fn: T }
  | { ok: false; kind: "bad-name" | "unknown-module" | "unknown-function"; error: string };

function splitFun(fun: string): [string, string] | undefined {
  const dot = fun.indexOf(".");
  if (dot <= 0 || dot === fun.length - 1) return undefined;
  return [fun.slice(0, dot), fun.slice(dot + 1)];
}

async function resolve<T>(
  fun: string,
  pick: (f: ModuleFamily) => Record<string, T> | undefined,
  what: string,
): Promise<Resolved<T>> {
  const parts = splitFun(fun);
  if (!parts) return { ok: false, kind: "bad-name", error: `"${fun}" is not of the form module.function` };
  const [mod, name] = parts;
  const family = await loadFamily(mod);
  if (!family) {
    const s = didYouMean(mod, FAMILY_NAMES);
    return {
      ok: false,
      kind: "unknown-module",
      error: `unknown module "${mod}"${s ? ` (did you mean "${s}"?)` : ""}`,
    };
  }
  const table = pick(family) ?? {};
  const fn = Object.hasOwn(table, name) ? table[name] : undefined;
  if (fn === undefined) {
    const s = didYouMean(name, Object.keys(table));
    return {
      ok: false,
      kind: "unknown-function",
      error: `module "${mod}" has no ${what} "${name}"${s ? ` (did you mean "${mod}.${s}"?)` : ""}`,
    };
  }
  return { ok: true, family, fn };
}

/** `file.managed` → the state function. */
export function resolveState(fun: string): Promise<Resolved<StateFunction>> {
  return resolve(fun, (f) => f.states, "state function");
}

/** `test.echo` → the execution function. */
export function resolveExec(fun: string): Promise<Resolved<ExecFunction>> {
  return resolve(fun, (f) => f.exec, "execution function");
}
