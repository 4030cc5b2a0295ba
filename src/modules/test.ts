/**
 * The test.* family: states with predictable outcomes, for trying requisites, ordering and
 * parallelism without touching the system. Each state may `sleep` (seconds) first.
 */
import { setTimeout as delay } from "node:timers/promises";
import { touchesNothing } from "./footprints.js";
import type {
  ExecFunction,
  ModuleContext,
  ModuleFamily,
  ParamSpec,
  Params,
  Plan,
  StateFunction,
} from "./types.js";

const name: ParamSpec = { type: "string", doc: "Name of the state; defaults to the state id." };
const sleep: ParamSpec = {
  type: "number",
  doc: "Seconds to wait before answering (makes ordering and parallelism observable).",
  default: 0,
};

async function pause(p: Params, ctx: ModuleContext): Promise<void> {
  const s = Number(p.sleep ?? 0);
  if (s > 0) await delay(s * 1000, undefined, ctx.signal ? { signal: ctx.signal } : undefined);
}

/** Salt's mod_watch for test states: the trigger is visible as a change. */
async function watched(p: Params): Promise<Plan> {
  const changes = { watch: `triggered for ${String(p.name)}` };
  return { changes, comment: "Watch statement fired.", apply: async () => ({ changes }) };
}

function fixed(doc: string, changed: boolean, ok: boolean): StateFunction {
  return {
    doc,
    params: { name, sleep },
    primary: "name",
    async plan(p, ctx) {
      await pause(p, ctx);
      const changes: Record<string, unknown> = changed
        ? { testing: { old: "Unchanged", new: "Something pretended to change" } }
        : {};
      if (!ok && !changed) return { changes, comment: "Failure!", failed: true };
      const comment = ok ? (changed ? "Success!" : "Success!") : "Failure!";
      if (!changed) return { changes: {}, comment };
      return { changes, comment, apply: async () => ({ changes, comment, result: ok }) };
    },
    watch: watched,
  };
}

const configurable: StateFunction = {
  doc: "A state whose outcome is given by its parameters: `changes` (bool), `result` (bool) and `comment`.",
  params: {
    name,
    sleep,
    changes: { type: "boolean", doc: "Whether the state reports changes.", default: true },
    result: { type: "boolean", doc: "Whether the state succeeds.", default: true },
    comment: { type: "string", doc: "Comment reported by the state.", default: "" },
    warnings: { type: ["string", "list"], doc: "Warnings added to the comment." },
  },
  primary: "name",
  async plan(p, ctx) {
    await pause(p, ctx);
    const warn = p.warnings === undefined ? [] : Array.isArray(p.warnings) ? p.warnings : [p.warnings];
    const comment = [String(p.comment ?? ""), ...warn.map((w) => `Warning: ${String(w)}`)]
      .filter((s) => s !== "")
      .join("\n");
    const ok = p.result !== false;
    if (p.changes !== true) return ok ? { changes: {}, comment } : { changes: {}, comment, failed: true };
    const changes = { testing: { old: "Unchanged", new: "Something pretended to change" } };
    return { changes, comment, apply: async () => ({ changes, comment, result: ok }) };
  },
  watch: watched,
};

const states: Record<string, StateFunction> = {
  nop: { ...fixed("Does nothing and succeeds without changes.", false, true) },
  succeed_without_changes: fixed("Succeeds without changes.", false, true),
  succeed_with_changes: fixed("Succeeds and reports a change.", true, true),
  fail_without_changes: fixed("Fails without changes.", false, false),
  fail_with_changes: fixed("Fails and reports a change.", true, false),
  configurable_test_state: configurable,
  show_notification: {
    doc: "Succeeds without changes; its comment is `text`.",
    params: { name, sleep, text: { type: "string", doc: "The text shown as the comment.", default: "" } },
    primary: "name",
    async plan(p, ctx) {
      await pause(p, ctx);
      return { changes: {}, comment: String(p.text ?? "") };
    },
  },
};
states.ping = {
  ...fixed("Succeeds without changes (a state that proves the engine runs).", false, true),
  doc: "Succeeds without changes (a state that proves the engine runs).",
};
// Test states touch nothing: they may overlap with anything.
for (const st of Object.values(states)) st.footprint = touchesNothing;

const exec: Record<string, ExecFunction> = {
  ping: { doc: "Returns true.", params: {}, readOnly: true, run: async () => true },
  echo: {
    doc: "Returns its text unchanged.",
    params: { text: { type: "any", doc: "What to return.", required: true } },
    positional: ["text"],
    readOnly: true,
    run: async (p) => p.text,
  },
  version: {
    doc: "Returns the Zester version.",
    params: {},
    readOnly: true,
    run: async () => "0.1.0",
  },
  sleep: {
    doc: "Waits `length` seconds and returns true.",
    params: { length: { type: "number", doc: "Seconds.", default: 1 } },
    positional: ["length"],
    run: async (p, ctx) => {
      await delay(Number(p.length) * 1000, undefined, ctx.signal ? { signal: ctx.signal } : undefined);
      return true;
    },
  },
};

export const family: ModuleFamily = {
  name: "test",
  doc: "States and functions with predictable outcomes, for testing requisites and the engine itself.",
  states,
  exec,
};
