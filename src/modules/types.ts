/**
 * The module contract. Every state module family lives in one file under src/modules/ and exports
 * a `ModuleFamily`. The state engine knows nothing else about modules.
 *
 * Check and apply come from one computed plan: `plan()` inspects the system (read-only) and returns
 * what differs; the runner reports the plan in test mode, or calls `plan.apply()` to enforce exactly
 * that plan. A module never decides twice.
 */

import type { BasketReader } from "./basket.js";

export type ParamType = "string" | "number" | "integer" | "boolean" | "list" | "map" | "any";

export interface ParamSpec {
  /** One type or several accepted types (e.g. ["string", "list"]). */
  type: ParamType | readonly ParamType[];
  /** One or two sentences; served by `zester doc`. */
  doc: string;
  required?: boolean;
  default?: unknown;
  /** Other accepted names (Salt spellings or friendlier ones): `path` for `name`, etc. */
  aliases?: readonly string[];
  /** Allowed values for string parameters. */
  enum?: readonly string[];
  /** For list params: the element type. */
  items?: ParamType;
}

export type Params = Record<string, unknown>;

/** Services the engine hands to a module; nothing module-specific, no NATS. */
export interface ModuleContext {
  /** True for dry runs: plan() is still called, apply() never. */
  test: boolean;
  /** The state id, for messages. */
  id: string;
  /** Source file of the state (relative sls path), if any. */
  sls?: string;
  /** Root of the states tree (for `salt://`-style and relative sources). */
  statesDir?: string;
  facts: Record<string, unknown>;
  settings: Record<string, unknown>;
  /** Renders a Jinja template string with the standard context plus `extra`. */
  render(template: string, extra: Record<string, unknown>, source: string): Promise<string>;
  /** Cancellation for long-running work (failhard, job cancel). */
  signal?: AbortSignal;
  /** Calls another module's function (module.run, onlyif {fun: ...}). */
  call?(fun: string, args: Params): Promise<unknown>;
  /** The fleet's basket (a connected peel); without it basket.get answers for this machine only. */
  basket?: BasketReader;
  /**
   * Salt's `__context__["retcode"]`: an execution function reports the non-zero exit code of a
   * command it ran (and was not told to ignore). A job or CLI call then fails with that code while
   * still returning the function's value; templates and guards pass no callback and only read values.
   */
  retcode?(code: number): void;
}

/**
 * What a state would change: one of three shapes, told apart by their fields (`failed: true`,
 * an `apply`, or neither), so the runner never meets "changes but nothing to apply".
 */
export type Plan = FailedPlan | UnchangedPlan | ChangePlan;

/** A failure found while checking (bad source, unreadable file, ...). Nothing is applied. */
export interface FailedPlan {
  failed: true;
  comment: string;
  changes: Record<string, unknown>;
  diff?: string;
}

/** The system already matches (or, `pending`, the check must wait for earlier states). */
export interface UnchangedPlan {
  failed?: false;
  comment: string;
  changes: Record<string, never>;
  diff?: undefined;
  apply?: undefined;
  /**
   * Test mode only: the check cannot answer until earlier states of the run have applied (the
   * service a package state installs). Reported as pending, Salt's result None, not as a failure.
   */
  pending?: boolean;
}

/** The system differs: `changes` says how (non-empty), `apply` enforces exactly that. */
export interface ChangePlan {
  failed?: false;
  comment: string;
  changes: Record<string, unknown>;
  /** Unified diff for file contents, if any. */
  diff?: string;
  apply(): Promise<ApplyOutcome | undefined>;
  /**
   * What apply() will change, so the run can keep its pre-image and `state.revert` can undo
   * exactly this change; or why it cannot be undone. Absent: the state function's `revert` doc
   * says why not (docs/revert.md).
   */
  undo?: Undo;
}

/** A resource a change plan will change, as the revert kinds (src/revert/kinds/) know them. */
export interface UndoRef {
  kind: UndoKindName;
  /** The resource: an absolute path, a package, service, user or group name, `user` of a crontab, a sysctl key. */
  key: string;
  /** Kind-specific facts from the plan (the home directory a new user gets). */
  hint?: Record<string, string>;
}

export type UndoKindName = "file" | "pkg" | "service" | "user" | "group" | "crontab" | "sysctl" | "mount";

/** The refs a change will touch (in the order it touches them), or why it cannot be undone. */
export type Undo = { refs: readonly UndoRef[] } | { cannot: string };

export function isFailedPlan(plan: Plan): plan is FailedPlan {
  return plan.failed === true;
}

/** A plan that changes the system (a change plan whose `changes` is non-empty). */
export function isChangePlan(plan: Plan): plan is ChangePlan {
  return plan.failed !== true && typeof plan.apply === "function" && Object.keys(plan.changes).length > 0;
}

export interface ApplyOutcome {
  /** Replaces the planned changes when applying learned more (e.g. command output). */
  changes?: Record<string, unknown>;
  comment?: string;
  /** False when the apply ran but did not succeed (e.g. a command exit code != 0). */
  result?: boolean;
}

/**
 * Something a state may touch, as the scheduler compares them. An absolute path covers itself and
 * everything below it (so `/x` and `/x/d/f` overlap); a `kind:name` key names one non-file
 * resource (`crontab:root`, `service:nginx`, `sysctl:vm.swappiness`); a bare kind covers every key
 * of that kind (`pkg` is the package manager, `userdb` the user and group database); `*` is
 * everything.
 */
export type Resource = "*" | `/${string}` | ResourceKind | `${ResourceKind}:${string}`;

export type ResourceKind =
  | "pkg"
  | "userdb"
  | "crontab"
  | "service"
  | "sysctl"
  | "timezone"
  | "locale"
  | "ssh_auth"
  | "mount";

/** What one state touches. Two states may overlap in time only when their footprints are disjoint. */
export interface Footprint {
  /** Resources the state may change. */
  writes: readonly Resource[];
  /** Resources its outcome depends on without changing them (the users a file is owned by, ...). */
  reads?: readonly Resource[];
}

export interface StateFunction {
  doc: string;
  params: Record<string, ParamSpec>;
  /** Parameter that defaults to the state id (Salt's `name`). */
  primary: string;
  /**
   * Salt's `**kwargs`: keys not in `params` are passed through unvalidated instead of being
   * reported (module.run's legacy form hands them to the function it calls).
   */
  extraParams?: true;
  /**
   * Cross-field rules on the validated params, run at compile time (file:line diagnostics);
   * `key` is the parameter a problem points at. See typedState (typed-state.ts).
   */
  validate?(params: Params): { key: string; message: string }[];
  /** Check: read-only. Must not touch the system. */
  plan(params: Params, ctx: ModuleContext): Promise<Plan>;
  /**
   * Salt's mod_watch: what a `watch`/`listen` trigger does (service restart, cmd.wait runs).
   * Absent means a watch trigger does nothing beyond the normal run.
   */
  watch?(params: Params, ctx: ModuleContext): Promise<Plan>;
  /**
   * What the state touches, from its validated parameters, without looking at the system.
   * Absent means unknown (commands, scripts, package installs that write anywhere): such a state
   * is a barrier that runs alone, after everything before it and before everything after it.
   */
  footprint?(params: Params): Footprint;
  /**
   * What `state.revert` restores after this state changed the machine, and what it cannot
   * (served by `zester doc`). Starts with "cannot be reverted:" when nothing is kept.
   */
  revert?: string;
}

export interface ExecFunction {
  doc: string;
  params: Record<string, ParamSpec>;
  /** Positional arguments map onto these parameter names, in order. */
  positional?: readonly string[];
  /** Read-only functions may run concurrently with others on a peel. */
  readOnly?: boolean;
  run(params: Params, ctx: ModuleContext): Promise<unknown>;
}

export interface ModuleFamily {
  name: string;
  doc: string;
  states: Record<string, StateFunction>;
  exec?: Record<string, ExecFunction>;
}
