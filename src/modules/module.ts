/**
 * The `module` family: calling an execution function from a state (Salt's module.run).
 *
 * A call is opaque like a command: a successful call always counts as a change (as in Salt), and
 * the function's return value is reported in the changes.
 */
import { errText } from "../util/errors.js";
import { resolveExec } from "./index.js";
import { applyFailed, failed } from "./support.js";
import type { ModuleFamily, Params, StateFunction } from "./types.js";

/**
 * Builds the keyword Params for ctx.call: positional `args` are mapped onto the function's
 * declared positional parameter names, then `kwargs` are added (a name given both ways is an error).
 */
export function callParams(fun: string, positional: readonly string[], params: Params): Params {
  const kwargs = params.kwargs ?? {};
  if (typeof kwargs !== "object" || Array.isArray(kwargs)) throw new Error("kwargs must be a map");
  const raw = params.args ?? [];
  const args = Array.isArray(raw) ? raw : [raw];
  if (args.length > positional.length) {
    throw new Error(`${fun} takes at most ${positional.length} positional argument(s), got ${args.length}`);
  }
  const out: Params = { ...(kwargs as Params) };
  args.forEach((a, i) => {
    const key = positional[i]!;
    if (key in out) throw new Error(`${fun}: ${key} given both in args and kwargs`);
    out[key] = a;
  });
  return out;
}

const run: StateFunction = {
  doc:
    "Calls an execution function (e.g. test.echo, cmd.run_all) with positional `args` and keyword `kwargs`. " +
    "A successful call is reported as a change with its return value; a call that throws fails the state.",
  primary: "name",
  params: {
    name: {
      type: "string",
      doc: "The function to call, as module.function.",
      required: true,
      aliases: ["fun", "function"],
    },
    args: { type: "list", doc: "Positional arguments, in order." },
    kwargs: { type: "map", doc: "Keyword arguments by parameter name." },
  },
  plan: async (params, ctx) => {
    const fun = String(params.name);
    // Resolving while planning makes a typo fail in test mode too, with a did-you-mean.
    const resolved = await resolveExec(fun);
    if (!resolved.ok) return failed(resolved.error);
    let args: Params;
    try {
      args = callParams(fun, resolved.fn.positional ?? [], params);
    } catch (err) {
      return failed(errText(err));
    }
    const call = ctx.call;
    if (!call) return failed("module.run: function calls are not available here");
    return {
      changes: { function: fun },
      comment: `Function ${fun} would be called`,
      apply: async () => {
        try {
          const ret = await call.call(ctx, fun, args);
          return { result: true, changes: { function: fun, ret }, comment: `Function ${fun} called` };
        } catch (err) {
          return applyFailed(`Function ${fun} failed: ${errText(err)}`);
        }
      },
    };
  },
};

export const family: ModuleFamily = {
  name: "module",
  doc: "Call execution functions from states.",
  states: { run },
};
