/**
 * The `zester` CLI's options: flags anywhere on the line (Salt's habit), `ZESTER_*` env, the
 * user's `~/.config/zester/config.yaml` and, on a master host, the connection keys of the
 * master's own file. Precedence: flag > env > user file > master file > default.
 */
import { homedir } from "node:os";
import { join } from "node:path";
import { connectOptions } from "../config/connect.js";
import { type Config, loadConfig } from "../config/load.js";
import { flagName, type OptionTable } from "../config/options.js";
import { MASTER_CONFIG_FILE } from "../config/paths.js";

const JOB = "Job options (zester '<target>' <module.function>)";

export const CLI_OPTIONS = {
  ...connectOptions("admin"),
  timeout: {
    kind: "seconds",
    short: "t",
    valueName: "S",
    group: JOB,
    help: "seconds the master waits for returns",
    defaultText: "the master's default_timeout (60)",
  },
  format: {
    kind: "string",
    choices: ["text", "json", "yaml", "highstate", "nested"],
    aliases: ["--out"],
    default: "text",
    valueName: "FMT",
    group: JOB,
    help: "output: text, json, yaml, or Salt's highstate or nested outputter (--out is Salt's spelling)",
  },
  test: {
    kind: "boolean",
    default: false,
    group: JOB,
    help: "dry run: report what would change (test=true)",
  },
  async: { kind: "boolean", default: false, group: JOB, help: "print the job id and return at once" },
  queue: {
    kind: "duration",
    valueName: "TTL",
    group: JOB,
    help: "keep the command for peels that are offline now; one that connects within TTL (30s, 10m, 2h) runs it once",
    defaultText: "the master's queue_ttl (0: not kept)",
  },
  batch: {
    kind: "string",
    short: "b",
    valueName: "N|N%",
    group: JOB,
    help: "run on at most N peels (or N% of the matched ones) at a time, starting the next as one returns",
  },
  batch_wait: {
    kind: "count",
    default: 0,
    valueName: "S",
    group: JOB,
    help: "seconds to wait after a peel returns before its batch slot is given to the next",
  },
  verbose: {
    kind: "boolean",
    short: "v",
    default: false,
    group: JOB,
    help: "print the job id and the matched peels before the results",
  },
} as const satisfies OptionTable;

export type CliConfig = Config<typeof CLI_OPTIONS>;

/** `$XDG_CONFIG_HOME/zester/config.yaml`, else `~/.config/zester/config.yaml`. */
export function cliConfigFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config"), "zester", "config.yaml");
}

/** Keys the CLI takes from the master's file: where the bus is, never whose creds. */
const FROM_MASTER_FILE = ["nats_url", "ca", "auth_dir"] as const;

export function loadCliConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  positionals = true,
): CliConfig {
  return loadConfig({
    program: "zester",
    options: CLI_OPTIONS,
    argv,
    env,
    positionals,
    defaultFile: cliConfigFile(env),
    configEnv: "ZESTER_CONFIG",
    baseFiles: [
      { path: env.ZESTER_MASTER_CONFIG || MASTER_CONFIG_FILE, required: false, keys: FROM_MASTER_FILE },
    ],
  });
}

const VALUE_FLAGS: ReadonlySet<string> = new Set(
  Object.entries(CLI_OPTIONS as OptionTable).flatMap(([key, o]) =>
    o.kind === "boolean" ? [] : [flagName(key), ...(o.short ? [`-${o.short}`] : []), ...(o.aliases ?? [])],
  ),
);

/**
 * The words of a command line that are not options or option values, with their indexes:
 * `-t 5 '*' test.ping` has `*` at 2 and `test.ping` at 3.
 */
export function wordsOf(argv: readonly string[]): { word: string; at: number }[] {
  const out: { word: string; at: number }[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      for (let j = i + 1; j < argv.length; j++) out.push({ word: argv[j]!, at: j });
      break;
    }
    if (!a.startsWith("-") || a === "-" || /^-\d/.test(a)) out.push({ word: a, at: i });
    else if (!a.includes("=") && VALUE_FLAGS.has(a) && a !== "--config") i++;
    else if (a === "--config") i++;
  }
  return out;
}
