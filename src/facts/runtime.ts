import * as nodeOs from "node:os";
import { readTextOrUndefined } from "./read.js";

/** The account name for a numeric id in an /etc/passwd- or /etc/group-shaped file. */
export function nameForId(text: string, id: number): string | undefined {
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length >= 3 && f[2] === String(id)) return f[0];
  }
  return undefined;
}

/**
 * What the peel runs as and with: the user and group, PATH, login shell, machine id. Salt's core
 * grains expose these (`path`, `shell`, `username`, `machine_id`, ...) and formulas read them.
 */
export async function collectRuntime(): Promise<Record<string, unknown>> {
  const user = nodeOs.userInfo();
  const [groups, machineId] = await Promise.all([
    readTextOrUndefined("/etc/group"),
    readTextOrUndefined("/etc/machine-id").then((t) => t ?? readTextOrUndefined("/var/lib/dbus/machine-id")),
  ]);
  const facts: Record<string, unknown> = {
    username: user.username,
    uid: user.uid,
    gid: user.gid,
    path: (process.env.PATH ?? "").trim(),
    // Salt's fallback when the environment names no shell.
    shell: process.env.SHELL || "/bin/sh",
  };
  const group = groups === undefined ? undefined : nameForId(groups, user.gid);
  if (group !== undefined) facts.groupname = group;
  if (machineId?.trim()) facts.machine_id = machineId.trim();
  return facts;
}
