/**
 * The `module` family: calling an execution function from a state (Salt's module.run).
 *
 * A call is opaque like a command: a successful call always counts as a change (as in Salt), and
 * the function's return value is reported in the changes.
 */
import { errText } from "../util/errors.js";
import { resolveExec } from "./index.js";
import { keywordArgs } from "./params.js";
import { applyFailed, failed, withRevertDocs } from "./support.js";
import type { ModuleContext, ModuleFamily, ParamSpec, Params, Plan, StateFunction } from "./types.js";

/** The keyword Params for ctx.call from a module.run state's `args` and `kwargs` (keywordArgs). */
export function callParams(fun: string, positional: readonly string[], params: Params): Params {
  const kwargs = params.kwargs ?? {};
  if (typeof kwargs !== "object" || Array.isArray(kwargs)) throw new Error("kwargs must be a map");
  const raw = params.args ?? [];
  const r = keywordArgs(fun, positional, Array.isArray(raw) ? raw : [raw], kwargs as Params);
  if (!r.ok) throw new Error(r.error);
  return r.params;
}

const CALL_PARAMS: Record<string, ParamSpec> = {
  name: {
    type: "string",
    doc: "The function to call, as module.function.",
    required: true,
    aliases: ["fun", "function"],
  },
  args: { type: "list", doc: "Positional arguments, in order." },
  kwargs: { type: "map", doc: "Keyword arguments by parameter name." },
};

/**
 * The call a module.run / module.wait state makes. Besides `args` and `kwargs`, Salt's legacy
 * form gives the function's keyword arguments as the state's own keys, with `m_` in front of a
 * name the state already uses (`m_name` is the function's `name`). A key the function does not
 * take is left out and named in the comment, as an unknown state parameter is.
 */
async function planCall(params: Params, ctx: ModuleContext): Promise<Plan> {
  const fun = String(params.name);
  // Resolving while planning makes a typo fail in test mode too, with a did-you-mean.
  const resolved = await resolveExec(fun);
  if (!resolved.ok) return failed(resolved.error);
  const legacy: Params = {};
  for (const [k, v] of Object.entries(params)) {
    if (k in CALL_PARAMS || v === undefined) continue;
    legacy[k.startsWith("m_") ? k.slice(2) : k] = v;
  }
  const ignored = Object.keys(legacy).filter(
    (k) => !(k in resolved.fn.params) && !isAlias(resolved.fn.params, k),
  );
  for (const k of ignored) delete legacy[k];
  let args: Params;
  try {
    args = callParams(fun, resolved.fn.positional ?? [], {
      ...params,
      kwargs: { ...legacy, ...((params.kwargs as Params | undefined) ?? {}) },
    });
  } catch (err) {
    return failed(errText(err));
  }
  const call = ctx.call;
  if (!call) return failed("module.run: function calls are not available here");
  const note =
    ignored.length > 0 ? ` (${fun} takes no ${ignored.map((k) => `"${k}"`).join(", ")}: ignored)` : "";
  return {
    changes: { function: fun },
    comment: `Function ${fun} would be called${note}`,
    apply: async () => {
      try {
        const ret = await call.call(ctx, fun, args);
        return { result: true, changes: { function: fun, ret }, comment: `Function ${fun} called${note}` };
      } catch (err) {
        return applyFailed(`Function ${fun} failed: ${errText(err)}`);
      }
    },
  };
}

function isAlias(specs: Record<string, ParamSpec>, key: string): boolean {
  return Object.values(specs).some((s) => s.aliases?.includes(key));
}

const run: StateFunction = {
  doc:
    "Calls an execution function (e.g. test.echo, cmd.run_all) with positional `args` and keyword `kwargs` " +
    "(or, in Salt's legacy form, its keyword arguments as the state's own keys, `m_name` for its name). " +
    "A successful call is reported as a change with its return value; a call that throws fails the state.",
  primary: "name",
  params: CALL_PARAMS,
  extraParams: true,
  plan: planCall,
};

const wait: StateFunction = {
  doc:
    "Like module.run, but calls the function only when a state it watches (watch/listen) reports " +
    "changes (Salt's module.wait, e.g. a service.restart triggered by a config file).",
  primary: "name",
  params: CALL_PARAMS,
  extraParams: true,
  plan: async (params) => ({
    changes: {},
    comment: `Function ${String(params.name)} runs only when a watched state changes`,
  }),
  watch: planCall,
};

export const family: ModuleFamily = {
  name: "module",
  doc: "Call execution functions from states.",
  states: withRevertDocs(
    { run, wait },
    {
      run: "cannot be reverted: an execution function's effects are unknown.",
      wait: "cannot be reverted: an execution function's effects are unknown.",
    },
  ),
};
