/**
 * The `basket` family (Salt's mine): `basket.get <target> <function>` returns what the matching
 * peels published, `[{peel_id, value, updated_at}]` sorted by peel id, for templates
 * (`basket("role:web", "network.ip_addrs")`) and the command line.
 *
 * On a peel the context carries a reader of the `basket` bucket. Without one (`zester local`,
 * masterless) the answer is this machine's own value, measured now, when it matches the target:
 * what Salt's mine.get does with a local file client.
 */
import { compileTarget, type TargetNode } from "../target/index.js";
import { colonGet } from "../template/context.js";
import { resolveExec } from "./index.js";
import type { ExecFunction, ModuleContext, ModuleFamily } from "./types.js";

export interface BasketRow {
  peel_id: string;
  value: unknown;
  /** When the value was written (ISO). */
  updated_at: string;
}

/** Reads the fleet's basket; given to module contexts on a connected peel. */
export interface BasketReader {
  get(target: string, fn: string): Promise<BasketRow[]>;
}

/** How one basket function is measured. */
export interface MeasureSpec {
  function: string;
  args: readonly unknown[];
  kwargs: Record<string, unknown>;
}

/** Targets of basket.get are the CLI's (a bare `key:value` is a fact word there too). */
export function basketTarget(expr: string): ReturnType<typeof compileTarget> {
  const m = compileTarget(expr);
  if (usesSettings(m.ast)) {
    throw new Error(
      `basket target ${JSON.stringify(expr)}: I@ cannot be used here (a peel cannot read other peels' settings)`,
    );
  }
  return m;
}

function usesSettings(n: TargetNode): boolean {
  switch (n.kind) {
    case "data":
      return n.source === "settings";
    case "and":
    case "or":
      return n.children.some(usesSettings);
    case "not":
      return usesSettings(n.child);
    default:
      return false;
  }
}

/**
 * One value: a read-only execution function (`disk.usage`, `network.ip_addrs`), or, when no
 * function has that name, a fact path (`os`, `cpu.model`, `interfaces:eth0:ipv4`).
 */
export async function measureBasketFunction(spec: MeasureSpec, ctx: ModuleContext): Promise<unknown> {
  const fun = spec.function;
  if (fun.includes(".")) {
    const r = await resolveExec(fun);
    if (r.ok) {
      if (r.fn.readOnly !== true) {
        throw new Error(`${fun} changes the system; only read-only functions can be published to the basket`);
      }
      const { callExec } = await import("../state/exec.js");
      return callExec(fun, spec.args, spec.kwargs, ctx);
    }
  }
  const value = colonGet(ctx.facts, fun, undefined, fun.includes(":") ? ":" : ".");
  if (value === undefined) {
    throw new Error(`"${fun}" is neither a read-only execution function nor a fact of this peel`);
  }
  return value;
}

async function localRows(target: string, fn: string, ctx: ModuleContext): Promise<BasketRow[]> {
  const id = typeof ctx.facts.id === "string" ? ctx.facts.id : "";
  if (!basketTarget(target).match({ id, facts: ctx.facts })) return [];
  const { basketConfig } = await import("../peel/basket/config.js");
  const spec = basketConfig(ctx.settings).functions.find((s) => s.name === fn) ?? {
    function: fn,
    args: [],
    kwargs: {},
  };
  return [
    { peel_id: id, value: await measureBasketFunction(spec, ctx), updated_at: new Date().toISOString() },
  ];
}

/** basket.get for any context: the bucket on a peel, this machine's own value elsewhere. */
export function basketGet(target: string, fn: string, ctx: ModuleContext): Promise<BasketRow[]> {
  return ctx.basket ? ctx.basket.get(target, fn) : localRows(target, fn, ctx);
}

const get: ExecFunction = {
  doc:
    "What the peels matching `target` published under `function` (see `basket_functions`): " +
    "[{peel_id, value, updated_at}] sorted by peel id. Targets as on the command line; a bare " +
    "`key:value` word matches facts. Masterless: this machine's own value when it matches.",
  params: {
    target: {
      type: "string",
      required: true,
      aliases: ["tgt"],
      doc: "Target expression (`web*`, `role:web`, `G@os:linux`).",
    },
    function: {
      type: "string",
      required: true,
      aliases: ["fun", "fn"],
      doc: "Basket function name (`network.ip_addrs`).",
    },
  },
  positional: ["target", "function"],
  readOnly: true,
  run: (p, ctx) => basketGet(String(p.target), String(p.function), ctx),
};

export const family: ModuleFamily = {
  name: "basket",
  doc: "Peel-to-peel data (Salt's mine): read what peels publish to the basket bucket.",
  states: {},
  exec: { get },
};
