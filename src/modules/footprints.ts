/**
 * Helpers for the footprints state functions declare (see `Footprint` in types.ts). A footprint is
 * computed from parameters alone, before anything runs, so it names what a state may touch, not
 * what it will find.
 */
import { isAbsolute } from "node:path";
import type { Footprint, Params, Resource } from "./types.js";

/** Nothing shared: the state may overlap with anything. */
export const touchesNothing = (): Footprint => ({ writes: [] });

/** The absolute path in `params[key]`, or undefined (then the module reports the error itself). */
export function pathParam(params: Params, key: string): `/${string}` | undefined {
  const v = params[key];
  return typeof v === "string" && isAbsolute(v) ? (v as `/${string}`) : undefined;
}

/** A local source file (`/abs` or `file:///abs`); remote and `salt://` sources are not written by states. */
export function localSource(params: Params, key = "source"): Resource[] {
  const out: Resource[] = [];
  for (const v of Array.isArray(params[key]) ? (params[key] as unknown[]) : [params[key]]) {
    if (typeof v !== "string") continue;
    const p = v.startsWith("file://") ? v.slice("file://".length) : v;
    if (isAbsolute(p)) out.push(p as `/${string}`);
  }
  return out;
}

/** Naming an owner, a group or a runas user reads the user database. */
export function ownerReads(params: Params, ...keys: string[]): Resource[] {
  const ks = keys.length > 0 ? keys : ["user", "group"];
  return ks.some((k) => params[k] !== undefined && params[k] !== null) ? ["userdb"] : [];
}

/**
 * A state that edits one file or directory at `params[key]`: it writes that path (its parent
 * directories when it creates them are covered, since a path overlaps its ancestors).
 * Without a usable path the footprint is unknown.
 */
export function onePath(
  key = "name",
  extra: (p: Params) => { writes?: Resource[]; reads?: Resource[] } = () => ({}),
) {
  return (params: Params): Footprint => {
    const path = pathParam(params, key);
    if (!path) throw new Error(`no absolute ${key}`);
    const x = extra(params);
    return {
      writes: [path, ...(x.writes ?? [])],
      reads: [...ownerReads(params), ...(x.reads ?? [])],
    };
  };
}
