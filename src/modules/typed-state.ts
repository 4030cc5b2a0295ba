/**
 * State functions whose plan() gets typed, defaulted values instead of `Record<string, unknown>`:
 * the types come from the parameter schema itself (InferParams), so the schema stays the one
 * description of a function's parameters (validation, defaults, `zester doc`) and the family
 * stops re-parsing them with str()/bool(). Cross-field rules go in `validate`, which compile runs
 * after the schema checks, so a bad combination is an error with file:line before anything runs
 * (as mgmt's Validate()).
 */
import type { Footprint, ModuleContext, ParamSpec, Params, ParamType, Plan, StateFunction } from "./types.js";

type ValueOfType<T> = T extends "string"
  ? string
  : T extends "number" | "integer"
    ? number
    : T extends "boolean"
      ? boolean
      : T extends "list"
        ? unknown[]
        : T extends "map"
          ? Record<string, unknown>
          : unknown;

type TypesOf<S extends ParamSpec> = S["type"] extends readonly (infer T)[] ? T : S["type"];

/** The value a parameter has after validation (params.ts coerce): its type, enum or items. */
export type ParamValue<S extends ParamSpec> = S extends { enum: readonly (infer E extends string)[] }
  ? E | Exclude<ValueOfType<TypesOf<S>>, string>
  : S extends { items: infer I extends ParamType }
    ? ValueOfType<I>[] | Exclude<ValueOfType<TypesOf<S>>, unknown[]>
    : ValueOfType<TypesOf<S>>;

/** Keys that always have a value after validation: required ones and those with a default. */
type PresentKeys<P extends Record<string, ParamSpec>> = {
  [K in keyof P]: P[K] extends { required: true } | { default: unknown } ? K : never;
}[keyof P];

/** The validated parameters of a schema, as plan() receives them. */
export type InferParams<P extends Record<string, ParamSpec>> = {
  -readonly [K in PresentKeys<P>]: ParamValue<P[K]>;
} & {
  -readonly [K in Exclude<keyof P, PresentKeys<P>>]?: ParamValue<P[K]>;
};

/** A problem `validate` found; `key` is the parameter the diagnostic points at. */
export interface ParamProblem {
  key: string;
  message: string;
}

export interface TypedStateFunction<P extends Record<string, ParamSpec>>
  extends Omit<StateFunction, "params" | "plan" | "watch" | "footprint" | "validate"> {
  params: P;
  /** Cross-field rules ("contents and source both set"), run at compile time. */
  validate?(p: InferParams<P>): ParamProblem[];
  plan(p: InferParams<P>, ctx: ModuleContext): Promise<Plan>;
  watch?(p: InferParams<P>, ctx: ModuleContext): Promise<Plan>;
  footprint?(p: InferParams<P>): Footprint;
}

/**
 * A StateFunction from a typed definition. The engine validates every state's params against
 * `params` (compile's stateParams) before any of these functions sees them, which is what makes
 * the typed view true; a required key given as null is refused here, at compile time, instead
 * of reaching plan() as undefined.
 */
export function typedState<const P extends Record<string, ParamSpec>>(
  def: TypedStateFunction<P>,
): StateFunction {
  const typed = (params: Params) => params as InferParams<P>;
  const required = Object.keys(def.params).filter((k) => def.params[k]!.required === true);
  const { validate, plan, watch, footprint, ...rest } = def;
  const fn: StateFunction = {
    ...rest,
    validate: (params) => {
      const missing = required
        .filter((k) => params[k] === undefined)
        .map((k) => ({ key: k, message: `missing required parameter "${k}"` }));
      if (missing.length > 0) return missing;
      return validate?.(typed(params)) ?? [];
    },
    plan: (params, ctx) => plan(typed(params), ctx),
  };
  if (watch) fn.watch = (params, ctx) => watch(typed(params), ctx);
  if (footprint) fn.footprint = (params) => footprint(typed(params));
  return fn;
}
