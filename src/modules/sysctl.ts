/**
 * The `sysctl` family: kernel parameters, at runtime (/proc/sys) and persisted in a sysctl.d file.
 *
 * plan() reads the live value and the config file once; apply() writes the live value, checks the
 * kernel kept it, and rewrites only the parameter's own line of the config file.
 */
import { readFile, writeFile } from "node:fs/promises";
import { unifiedDiff } from "./diff.js";
import { pathParam } from "./footprints.js";
import {
  applying,
  guard,
  joinText,
  readTextOrUndefined,
  replaceFile,
  StateError,
  splitText,
  unchanged,
  withRevertDocs,
} from "./support.js";
import { type InferParams, typedState } from "./typed-state.js";
import type { ExecFunction, ModuleFamily, ParamSpec, Plan } from "./types.js";

export const DEFAULT_SYSCTL_CONFIG = "/etc/sysctl.d/99-zester.conf";

/** `net.ipv4.ip_forward` or `net/ipv4/ip_forward` → its /proc/sys path. */
export function procPath(name: string): string {
  if (!/^[A-Za-z0-9_.\-/]+$/.test(name) || name.split(/[./]/).some((p) => p === "" || p === "..")) {
    throw new StateError(`"${name}" is not a valid sysctl name`);
  }
  // With a slash in the name, slashes separate levels and dots are literal (interface names like eth0.10).
  return `/proc/sys/${name.includes("/") ? name : name.replaceAll(".", "/")}`;
}

/** Canonical dotted form, for matching a name however a config file spells it. */
function canonicalName(name: string): string {
  return name.includes("/") ? name.replaceAll("/", ".") : name;
}

/** The kernel separates multi-value parameters with tabs; compare them by their words. */
function normalizeValue(value: string): string {
  return value.trim().split(/\s+/).join(" ");
}

const CONFIG_LINE_RE = /^\s*-?\s*([^=#;\s][^=]*?)\s*=\s*(.*?)\s*$/;

async function readLive(path: string, name: string): Promise<string> {
  try {
    return normalizeValue(await readFile(path, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new StateError(`Unknown sysctl parameter ${name} (${path} does not exist)`);
    }
    throw err;
  }
}

const PRESENT_PARAMS = {
  name: { type: "string", doc: "Parameter name, e.g. net.ipv4.ip_forward.", required: true },
  value: {
    type: ["string", "number"],
    doc: "Wanted value (multi-value parameters: space-separated).",
    required: true,
  },
  config: { type: "string", doc: "File the setting is persisted in.", default: DEFAULT_SYSCTL_CONFIG },
} as const satisfies Record<string, ParamSpec>;

async function planPresent(p: InferParams<typeof PRESENT_PARAMS>): Promise<Plan> {
  const { name, config } = p;
  const path = procPath(name);
  const raw = String(p.value);
  if (/[\r\n]/.test(raw)) throw new StateError("value must be a single line");
  const value = normalizeValue(raw);
  if (!config.startsWith("/")) throw new StateError(`config must be an absolute path, got "${config}"`);

  const live = await readLive(path, name);
  const before = await readTextOrUndefined(config);
  const text = splitText(before ?? "");
  const want = `${name} = ${value}`;
  const lines = [...text.lines];
  const at = lines.findIndex((l) => {
    const m = CONFIG_LINE_RE.exec(l);
    return m !== null && canonicalName(m[1]!) === canonicalName(name);
  });
  let after: string | undefined;
  if (at < 0) {
    after = joinText({ lines: [...lines, want], eol: true });
  } else if (normalizeValue(CONFIG_LINE_RE.exec(lines[at]!)![2]!) !== value) {
    lines[at] = want;
    after = joinText({ lines, eol: text.eol });
  }
  const changes: Record<string, unknown> = {};
  if (live !== value) changes.value = { old: live, new: value };
  if (after !== undefined) changes.config = config;
  if (Object.keys(changes).length === 0)
    return unchanged(`${name} is already ${value} (live and in ${config})`);
  const plan: Plan = {
    changes: { name, ...changes },
    comment: `${name} would be set to ${value}${after !== undefined ? ` and persisted in ${config}` : ""}`,
    undo: {
      refs: [
        { kind: "sysctl", key: name },
        ...(after !== undefined ? [{ kind: "file" as const, key: config }] : []),
      ],
    },
    apply: applying(async () => {
      if (live !== value) {
        await writeFile(path, value);
        const now = await readLive(path, name);
        if (now !== value) {
          return { result: false, comment: `The kernel did not accept ${name} = ${value} (it reads ${now})` };
        }
      }
      if (after !== undefined) await replaceFile(config, after);
      return { comment: `${name} set to ${value}` };
    }),
  };
  if (after !== undefined) plan.diff = unifiedDiff(before ?? "", after, config, config);
  return plan;
}

const present = typedState({
  doc:
    "Ensures a kernel parameter has a value now (/proc/sys) and after reboot (a line in the " +
    "config file; other lines are kept).",
  primary: "name",
  footprint: (p) => ({ writes: [`sysctl:${p.name}`, pathParam(p, "config") ?? "/etc/sysctl.conf"] }),
  params: PRESENT_PARAMS,
  plan: (p) => guard(() => planPresent(p)),
});

const exec: Record<string, ExecFunction> = {
  get: {
    doc: "Returns the live value of a kernel parameter.",
    params: { name: { type: "string", doc: "Parameter name, e.g. vm.swappiness.", required: true } },
    positional: ["name"],
    readOnly: true,
    run: async (params) => {
      const name = String(params.name);
      return readLive(procPath(name), name);
    },
  },
};

export const family: ModuleFamily = {
  name: "sysctl",
  doc: "Kernel parameters, live through /proc/sys and persisted in /etc/sysctl.d.",
  states: withRevertDocs(
    { present },
    {
      present:
        "Restores the live value the parameter had before the run and the config file's previous bytes (or removes a config file the run created).",
    },
  ),
  exec,
};
