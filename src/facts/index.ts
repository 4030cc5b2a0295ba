import * as nodeOs from "node:os";
import { errText } from "../util/errors.js";
import { collectCpu } from "./cpu.js";
import { CustomFactCache, collectCustom, DEFAULT_CUSTOM_FACTS_DIR } from "./custom.js";
import { collectDefaultIp } from "./defaultip.js";
import { collectDisk } from "./disk.js";
import { collectMemory } from "./memory.js";
import { collectNetwork } from "./network.js";
import { collectOs } from "./os.js";
import { collectRuntime } from "./runtime.js";
import { collectVirtual } from "./virtual.js";

export { CustomFactCache, DEFAULT_CUSTOM_FACTS_DIR } from "./custom.js";

export type Facts = Record<string, unknown>;

export interface CollectFactsOptions {
  /** Peel id; defaults to the hostname. */
  id?: string;
  /** Custom facts directory; defaults to $ZESTER_FACTS_DIR, then /etc/zester/facts. */
  customDir?: string;
  /**
   * Keeps command facts between calls so they re-run only when their interval expired. Without
   * one, every command runs on this call.
   */
  cache?: CustomFactCache;
}

export type Collector = () => Promise<Facts>;

/** Built-in collectors, merged in this order; later ones never overwrite earlier top-level keys. */
export const BUILTIN_COLLECTORS: ReadonlyArray<readonly [string, Collector]> = [
  ["os", collectOs],
  ["virtual", collectVirtual],
  ["cpu", collectCpu],
  ["memory", collectMemory],
  ["disk", collectDisk],
  ["network", collectNetwork],
  ["defaultip", collectDefaultIp],
  ["runtime", collectRuntime],
];

/** The custom facts directory in effect for these options. */
export function customFactsDir(opts: CollectFactsOptions = {}): string {
  return opts.customDir ?? (process.env.ZESTER_FACTS_DIR || DEFAULT_CUSTOM_FACTS_DIR);
}

/**
 * Collects all facts. Top level carries flat Salt-like keys (`os`, `os_family`, `arch`,
 * `cpu_count`, `mem_total`, `ipv4`, ...) so templates read `facts.cpu_count`; detail sits under
 * `cpu`, `memory`, `disk`, `network`. A failing collector never takes the others down: its
 * message lands in `_errors[<collector>]` and the rest is returned.
 */
export async function collectFacts(opts: CollectFactsOptions = {}): Promise<Facts> {
  const cache = opts.cache ?? new CustomFactCache();
  const dir = customFactsDir(opts);
  const [builtins, custom] = await Promise.all([
    runCollectors(BUILTIN_COLLECTORS),
    collectCustom(dir, cache).then(
      (r) => r,
      (err: unknown) => ({ facts: {}, errors: { custom: `${dir}: ${errText(err)}` } }),
    ),
  ]);

  const facts: Facts = { id: opts.id ?? nodeOs.hostname(), ...builtins.facts };
  // Custom facts may refine built-ins (as Salt's custom grains may); `id` is protected by the parser.
  Object.assign(facts, custom.facts);
  const errors = { ...builtins.errors, ...custom.errors };
  if (Object.keys(errors).length > 0) facts._errors = errors;
  return facts;
}

/**
 * Runs collectors concurrently and merges their output in list order (first writer of a key
 * wins). A collector that throws contributes only `errors[<name>]`; the others are unaffected.
 */
export async function runCollectors(
  collectors: ReadonlyArray<readonly [string, Collector]>,
): Promise<{ facts: Facts; errors: Record<string, string> }> {
  const settled = await Promise.allSettled(collectors.map(([, fn]) => fn()));
  const facts: Facts = {};
  const errors: Record<string, string> = {};
  settled.forEach((res, i) => {
    const name = collectors[i]![0];
    if (res.status === "rejected") {
      errors[name] = errText(res.reason);
      return;
    }
    for (const [k, v] of Object.entries(res.value)) if (!(k in facts)) facts[k] = v;
  });
  return { facts, errors };
}
