/**
 * Load-independent counters for the benchmarks. Wall times on a shared 2-core box swing by 2×;
 * CPU time spent by one process, messages the server took in and JetStream writes per job do
 * not, so they show what a figure is made of and whether a change removed work or only luck.
 */
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";

let clockTicks: number | undefined;

/** USER_HZ of /proc/<pid>/stat (100 on every Linux this runs on; asked once to be sure). */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU time (user + system) a process has used so far, in ms; NaN once it is gone. */
export async function procCpuMs(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return ((utime + stime) * 1000) / ticksPerSecond();
  } catch {
    return Number.NaN;
  }
}

/** CPU ms of several processes at once, by name. */
export async function cpuOf(pids: Record<string, number>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  await Promise.all(
    Object.entries(pids).map(async ([name, pid]) => {
      out[name] = await procCpuMs(pid);
    }),
  );
  return out;
}

export function cpuDelta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(b)) out[k] = b[k]! - (a[k] ?? Number.NaN);
  return out;
}

/** The server's own counters from its monitoring port (`/varz`). */
export interface ServerCounters {
  inMsgs: number;
  outMsgs: number;
  inBytes: number;
}

export async function serverCounters(monitorPort: number): Promise<ServerCounters | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${monitorPort}/varz`);
    const v = (await res.json()) as { in_msgs: number; out_msgs: number; in_bytes: number };
    return { inMsgs: v.in_msgs, outMsgs: v.out_msgs, inBytes: v.in_bytes };
  } catch {
    return undefined;
  }
}

/** Last sequence of every stream (KV buckets are streams `KV_<bucket>`): writes = the delta. */
export async function streamSeqs(nc: NatsConnection): Promise<Record<string, number>> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const out: Record<string, number> = {};
  for await (const si of jsm.streams.list()) out[si.config.name] = si.state.last_seq;
  return out;
}

/** Writes per stream between two snapshots, only streams that changed, most first. */
export function streamWrites(a: Record<string, number>, b: Record<string, number>): [string, number][] {
  return Object.entries(b)
    .map(([k, v]) => [k, v - (a[k] ?? 0)] as [string, number])
    .filter(([, d]) => d > 0)
    .sort((x, y) => y[1] - x[1]);
}

/** Consumers per stream: each KV watch or ordered consumer is one, and the server keeps state for each. */
export async function consumerCounts(nc: NatsConnection): Promise<Record<string, number>> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const out: Record<string, number> = {};
  for await (const si of jsm.streams.list())
    if (si.state.consumer_count > 0) out[si.config.name] = si.state.consumer_count;
  return out;
}
