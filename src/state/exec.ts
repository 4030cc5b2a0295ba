/** Calling execution functions by name: `zester local test.echo`, `salt['..']`, `onlyif: {fun: ..}`. */
import { resolveExec } from "../modules/index.js";
import { keywordArgs, validateParams } from "../modules/params.js";
import type { ModuleContext, Params } from "../modules/types.js";

export class ExecCallError extends Error {
  override name = "ExecCallError";
}

/** Maps positional arguments onto the function's parameter names, then validates everything. */
export async function callExec(
  fun: string,
  args: readonly unknown[],
  kwargs: Params,
  ctx: ModuleContext,
): Promise<unknown> {
  const r = await resolveExec(fun);
  if (!r.ok) throw new ExecCallError(r.error);
  const call = keywordArgs(fun, r.fn.positional ?? [], args, kwargs);
  if (!call.ok) throw new ExecCallError(call.error);
  const v = validateParams(r.fn.params, call.params);
  if (v.issues.length > 0) throw new ExecCallError(`${fun}: ${v.issues.map((i) => i.message).join("; ")}`);
  return r.fn.run(v.params, ctx);
}

/** The error of a call whose command exited non-zero (its value is still returned). */
export function retcodeError(fun: string, code: number): string {
  return `${fun}: the command exited with retcode ${code}`;
}
