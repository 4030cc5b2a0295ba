/**
 * `pkg`: the installed package set changed (installs, removals, version changes), optionally
 * only for the packages named in `pkgs`. Nothing at start: the first poll is the baseline.
 * Data: `{installed: {name: version}, removed: {name: version}, changed: {name: {old, new}}}`.
 *
 * Polling is cheap on purpose: the package database is only read again when its status file
 * changed (dpkg's /var/lib/dpkg/status, rpm's database directory).
 */
import { stat } from "node:fs/promises";
import { dpkgQueryArgv, parseDpkgQuery } from "../../modules/providers/apt.js";
import { run } from "../../util/exec.js";
import { statOrUndefined } from "../../util/files.js";
import type { BeaconModule } from "./types.js";

const DPKG_STATUS = "/var/lib/dpkg/status";
const RPM_DB = "/var/lib/rpm";

async function installed(): Promise<{ stamp: string; pkgs: Map<string, string> } | undefined> {
  if (await statOrUndefined(DPKG_STATUS)) {
    const st = await stat(DPKG_STATUS);
    return {
      stamp: `${st.mtimeMs}:${st.size}`,
      pkgs: await (async () => {
        const r = await run(dpkgQueryArgv(), { env: { LC_ALL: "C" } });
        if (r.retcode !== 0) throw new Error(`dpkg-query failed: ${r.stderr.trim()}`);
        const out = new Map<string, string>();
        for (const e of parseDpkgQuery(r.stdout).values()) if (e.installed) out.set(e.name, e.version);
        return out;
      })(),
    };
  }
  if (await statOrUndefined(RPM_DB)) {
    const st = await stat(RPM_DB);
    const r = await run(["rpm", "-qa", "--qf", "%{NAME}\\t%{VERSION}-%{RELEASE}\\n"], {
      env: { LC_ALL: "C" },
    });
    if (r.retcode !== 0) throw new Error(`rpm -qa failed: ${r.stderr.trim()}`);
    const pkgs = new Map<string, string>();
    for (const line of r.stdout.split("\n")) {
      const [n, v] = line.split("\t");
      if (n && v) pkgs.set(n, v);
    }
    return { stamp: `${st.mtimeMs}`, pkgs };
  }
  return undefined;
}

async function stampOf(): Promise<string | undefined> {
  const dpkg = await statOrUndefined(DPKG_STATUS);
  if (dpkg) return `${dpkg.mtimeMs}:${dpkg.size}`;
  const rpm = await statOrUndefined(RPM_DB);
  return rpm ? `${rpm.mtimeMs}` : undefined;
}

export const beacon: BeaconModule = {
  doc: "The installed package set changed (optionally only `pkgs: [nginx, openssl]`); data {installed, removed, changed}.",
  keys: ["pkgs"],
  create(options) {
    const only =
      options.pkgs === undefined
        ? undefined
        : Array.isArray(options.pkgs)
          ? new Set(options.pkgs.map(String))
          : (() => {
              throw new Error("pkgs must be a list of package names");
            })();
    let stamp: string | undefined;
    let last: Map<string, string> | undefined;
    return {
      async poll() {
        if (last !== undefined && (await stampOf()) === stamp) return [];
        const now = await installed();
        if (!now) throw new Error("no package database found (neither dpkg nor rpm)");
        const pkgs = only ? new Map([...now.pkgs].filter(([n]) => only.has(n))) : now.pkgs;
        const before = last;
        stamp = now.stamp;
        last = pkgs;
        if (!before) return [];
        const added: Record<string, string> = {};
        const removed: Record<string, string> = {};
        const changed: Record<string, { old: string; new: string }> = {};
        for (const [n, v] of pkgs) {
          const old = before.get(n);
          if (old === undefined) added[n] = v;
          else if (old !== v) changed[n] = { old, new: v };
        }
        for (const [n, v] of before) if (!pkgs.has(n)) removed[n] = v;
        if (Object.keys(added).length + Object.keys(removed).length + Object.keys(changed).length === 0)
          return [];
        return [{ installed: added, removed, changed }];
      },
    };
  },
};
