/**
 * The `timezone` family: the system time zone.
 *
 * The zone is the /etc/localtime symlink into /usr/share/zoneinfo, plus /etc/timezone on Debian
 * systems (where tools read the name from it). plan() reads both once; apply() swaps the symlink
 * atomically (a temp link renamed over the old one) and rewrites /etc/timezone.
 */
import { randomBytes } from "node:crypto";
import { lstat, open, readlink, rename, rm, symlink } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { isENOENT, statOrUndefined } from "../util/files.js";
import {
  applying,
  guard,
  readTextOrUndefined,
  replaceFile,
  StateError,
  unchanged,
  withRevertDocs,
} from "./support.js";
import { type InferParams, typedState } from "./typed-state.js";
import type { ExecFunction, ModuleFamily, ParamSpec, Plan } from "./types.js";

const ZONEINFO = "/usr/share/zoneinfo";
const LOCALTIME = "/etc/localtime";
const TIMEZONE_FILE = "/etc/timezone";

async function checkZone(name: string): Promise<string> {
  if (!/^[A-Za-z0-9_+-]+(\/[A-Za-z0-9_+-]+)*$/.test(name)) {
    throw new StateError(`"${name}" is not a time zone name (expected e.g. Europe/Paris or UTC)`);
  }
  const path = join(ZONEINFO, name);
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, "r");
  } catch (err) {
    if (isENOENT(err)) throw new StateError(`Unknown time zone "${name}" (no ${path})`);
    throw err;
  }
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    if (bytesRead < 4 || buf.toString("latin1") !== "TZif") {
      throw new StateError(`"${name}" is not a time zone (${path} is not a zoneinfo file)`);
    }
  } finally {
    await fh.close();
  }
  return path;
}

/** The zone /etc/localtime points to, or a description of what is there instead. */
async function currentLink(): Promise<string | undefined> {
  try {
    const st = await lstat(LOCALTIME);
    if (!st.isSymbolicLink()) return undefined;
    return resolve(dirname(LOCALTIME), await readlink(LOCALTIME));
  } catch (err) {
    if (isENOENT(err)) return undefined;
    throw err;
  }
}

function zoneOf(linkTarget: string | undefined): string | undefined {
  if (!linkTarget?.startsWith(`${ZONEINFO}/`)) return undefined;
  return linkTarget.slice(ZONEINFO.length + 1);
}

async function managesTimezoneFile(): Promise<boolean> {
  return (
    (await statOrUndefined(TIMEZONE_FILE)) !== undefined ||
    (await statOrUndefined("/etc/debian_version")) !== undefined
  );
}

/** Points /etc/localtime at the zone without a moment where it is missing. */
async function swapLink(target: string): Promise<void> {
  const tmp = join(dirname(LOCALTIME), `.localtime.${randomBytes(6).toString("hex")}.tmp`);
  await symlink(target, tmp);
  try {
    await rename(tmp, LOCALTIME);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

const SYSTEM_PARAMS = {
  name: {
    type: "string",
    doc: "Zone name, e.g. Europe/Paris or UTC.",
    required: true,
    aliases: ["timezone"],
  },
  utc: {
    type: "boolean",
    doc: "Accepted for Salt compatibility; the hardware clock setting is not changed.",
  },
} as const satisfies Record<string, ParamSpec>;

async function planSystem({ name }: InferParams<typeof SYSTEM_PARAMS>): Promise<Plan> {
  // The name's shape is checked here, not in validate: Salt fails this state, not the whole run.
  const path = await checkZone(name);
  const link = await currentLink();
  const tzFile = (await managesTimezoneFile()) ? TIMEZONE_FILE : undefined;
  const tzText = tzFile ? await readTextOrUndefined(tzFile) : undefined;
  const linkOk = link === path;
  const fileOk = tzFile === undefined || tzText?.trim() === name;
  if (linkOk && fileOk) return unchanged(`Time zone is already ${name}`);
  const old = zoneOf(link) ?? tzText?.trim() ?? "unknown";
  const changes: Record<string, unknown> = { timezone: { old, new: name } };
  if (!linkOk) changes.localtime = path;
  if (!fileOk) changes.timezone_file = tzFile;
  return {
    changes,
    comment: `Time zone would be set to ${name}`,
    undo: {
      refs: [{ kind: "file", key: LOCALTIME }, ...(tzFile ? [{ kind: "file" as const, key: tzFile }] : [])],
    },
    apply: applying(async () => {
      if (!linkOk) await swapLink(path);
      if (!fileOk && tzFile) await replaceFile(tzFile, `${name}\n`);
      return { comment: `Time zone set to ${name}` };
    }),
  };
}

const system = typedState({
  doc: "Sets the system time zone: /etc/localtime links to /usr/share/zoneinfo/<name>, and /etc/timezone names it (Debian).",
  primary: "name",
  footprint: () => ({ writes: ["timezone", "/etc/timezone", "/etc/localtime"] }),
  params: SYSTEM_PARAMS,
  plan: (p) => guard(() => planSystem(p)),
});

const exec: Record<string, ExecFunction> = {
  get_zone: {
    doc: "Returns the current time zone name.",
    params: {},
    readOnly: true,
    run: async () => {
      const fromLink = zoneOf(await currentLink());
      if (fromLink) return fromLink;
      return (await readTextOrUndefined(TIMEZONE_FILE))?.trim() ?? "";
    },
  },
};

export const family: ModuleFamily = {
  name: "timezone",
  doc: "The system time zone.",
  states: withRevertDocs(
    { system },
    { system: "Restores the previous /etc/localtime link and /etc/timezone file." },
  ),
  exec,
};
