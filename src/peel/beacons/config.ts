/**
 * The settings key `beacons:`, in Salt's list form or as a plain mapping:
 *
 *   beacons:
 *     service: [{services: {nginx: {onchangeonly: true}}}, {interval: 10}]   # Salt's list form
 *     disk: {/: 90%, interval: 60}                                           # plain mapping
 *     web_files: {beacon_module: inotify, files: {/etc/nginx: {recurse: true}}}
 *
 * Common options: `interval` (seconds or a duration; polling beacons only), `disable_during_state_run`,
 * `enabled`, and `beacon_module` to run a module under another name (two disk beacons, say).
 */
import { parseInterval } from "../../util/duration.js";
import { errText } from "../../util/errors.js";
import { suggestion } from "../../util/suggest.js";
import { isMapping } from "./types.js";

export interface BeaconSpec {
  /** The event name: `beacon/<peel>/<name>`. */
  name: string;
  module: string;
  intervalMs: number;
  disableDuringStateRun: boolean;
  /** Module options (the common ones removed). */
  options: Record<string, unknown>;
}

export interface BeaconsConfig {
  beacons: BeaconSpec[];
  errors: string[];
}

export const DEFAULT_BEACON_INTERVAL_MS = 10_000;
const COMMON = ["interval", "disable_during_state_run", "enabled", "beacon_module"] as const;
/** Beacon names become one subject token and one tag segment. */
const NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Salt's list form is a list of one-key mappings; merged in order they are the plain form. */
function merged(name: string, raw: unknown): Record<string, unknown> {
  if (raw === null || raw === undefined) return {};
  if (isMapping(raw)) return { ...raw };
  if (!Array.isArray(raw)) throw new Error(`beacons.${name}: expected a mapping or Salt's list of mappings`);
  const out: Record<string, unknown> = {};
  for (const item of raw) {
    if (!isMapping(item)) throw new Error(`beacons.${name}: every list item must be a mapping (key: value)`);
    Object.assign(out, item);
  }
  return out;
}

export function beaconsConfig(
  settings: Record<string, unknown>,
  modules: readonly string[],
  aliases: Readonly<Record<string, string>>,
): BeaconsConfig {
  const out: BeaconsConfig = { beacons: [], errors: [] };
  const raw = settings.beacons;
  if (raw === undefined || raw === null) return out;
  if (!isMapping(raw)) {
    out.errors.push("beacons: expected a mapping of beacon names to their options");
    return out;
  }
  for (const [name, value] of Object.entries(raw)) {
    try {
      if (!NAME.test(name))
        throw new Error(`beacons.${name}: a beacon name is 1-64 characters from A-Z a-z 0-9 _ -`);
      const o = merged(name, value);
      if (o.enabled === false) continue;
      const wanted = typeof o.beacon_module === "string" ? o.beacon_module : name;
      const module = aliases[wanted] ?? wanted;
      if (!modules.includes(module)) {
        throw new Error(
          `beacons.${name}: unknown beacon module "${wanted}"${suggestion(wanted, [...modules, ...Object.keys(aliases)])}; known: ${modules.join(", ")}`,
        );
      }
      let intervalMs = DEFAULT_BEACON_INTERVAL_MS;
      if (o.interval !== undefined) {
        const ms = parseInterval(o.interval);
        if (ms === undefined || ms < 100)
          throw new Error(
            `beacons.${name}.interval: ${JSON.stringify(o.interval)} is not a duration of at least 100ms`,
          );
        intervalMs = ms;
      }
      const during = o.disable_during_state_run ?? false;
      if (typeof during !== "boolean")
        throw new Error(`beacons.${name}.disable_during_state_run must be true or false`);
      const options: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(o)) if (!(COMMON as readonly string[]).includes(k)) options[k] = v;
      out.beacons.push({ name, module, intervalMs, disableDuringStateRun: during, options });
    } catch (err) {
      out.errors.push(errText(err));
    }
  }
  out.beacons.sort((a, b) => a.name.localeCompare(b.name));
  return out;
}

/** Checks a module's own options; an unknown one names itself with a did-you-mean. */
export function checkKeys(spec: BeaconSpec, keys: readonly string[]): void {
  if (keys.length === 0) return;
  for (const k of Object.keys(spec.options)) {
    if (!keys.includes(k)) {
      throw new Error(
        `beacons.${spec.name}: unknown option "${k}"${suggestion(k, [...keys, ...COMMON])}; ${spec.module} takes ${[...keys, ...COMMON].join(", ")}`,
      );
    }
  }
}
