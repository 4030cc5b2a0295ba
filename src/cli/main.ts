/**
 * CLI entry. Start-up time matters (`zester local` competes with C agents), so each command's
 * module is imported only when that command runs.
 */

import { ConfigError } from "../config/load.js";
import { errText } from "../util/errors.js";
import { suggestion } from "../util/suggest.js";
import { UsageError } from "./errors.js";

export type CommandRunner = (argv: string[]) => Promise<number>;

/** First word → module that handles it. `target` is the Salt-style `zester '<target>' fn` form. */
const COMMANDS: Record<string, () => Promise<{ run: CommandRunner }>> = {
  local: () => import("./local.js"),
  dev: () => import("./dev.js"),
  doc: () => import("./doc.js"),
  "nats-auth": () => import("./nats-auth.js"),
  ca: () => import("./ca.js"),
  peel: () => import("./peel.js"),
  job: () => import("./job.js"),
  master: () => import("./master-daemon.js"),
  "peel-daemon": () => import("./peel-daemon.js"),
  settings: () => import("./settings.js"),
  states: () => import("./states.js"),
  enroll: () => import("./enroll.js"),
  basket: () => import("./basket.js"),
  event: () => import("./event.js"),
  reactor: () => import("./reactor.js"),
};

/** `zester '<target>' module.function ...`: the second word names a function. */
const FUNCTION_NAME = /^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$/;
const targetCommand = () => import("./target.js");

/** The daemons run through main too; their messages carry their own binary's name. */
const PROGRAM: Record<string, string> = { master: "zester-master", "peel-daemon": "zester-peel" };

export const VERSION = "0.1.0";

const HELP = `zester ${VERSION} — configuration management over NATS

Usage:
  zester '<target>' <module.function> [args] [key=value ...] [--test] [--timeout S] [--format F] [--async]
  zester peel list | job list|show|active|kill            fleet status
  zester basket get '<target>' <function> | list <peel>  peel-to-peel data (Salt's mine)
  zester dev [--once [FUN ...]]                          a local fleet: nats-server, master, this peel
  zester local <module.function> [id] [key=value ...]   run on this machine, no NATS
  zester local state.apply [sls,...] [--test]            apply states masterless
  zester doc [module|module.function]                    module documentation
  zester nats-auth init --dir DIR                        operator, accounts, creds, server config
  zester ca init --dir DIR                               certificate authority for NATS TLS
  zester ca issue nats-server --dir DIR --host H...      server certificate
  zester peel creds <peel-id> --dir DIR                  least-privilege creds for one peel
  zester settings encrypt|keygen|check                   sealed secrets for settings (value on stdin)
  zester states publish | settings publish               publish that tree now, not at the next tick
  zester event send <tag> [key=value ...]                send an operator event (_admin/<tag>)
  zester event watch [glob] [--since 0|SEQ|10m] [--count N] [--format json]   live or replayed events
  zester reactor test <match-key> [key=value ...]        what the reactor would do for an event
  zester reactor log | stats                             recent reactions and drops; counters

Options: --help on any command, --version.
`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "--help" || cmd === "-h" || cmd === "help") {
    process.stdout.write(HELP);
    return cmd === undefined ? 1 : 0;
  }
  if (cmd === "--version" || cmd === "-V") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  try {
    let loader = COMMANDS[cmd];
    let args = rest;
    if (!loader) {
      // Salt's habit: options anywhere, also before the target (`zester -t 5 '*' test.ping`).
      const { wordsOf } = await import("./cli-config.js");
      const words = wordsOf(argv);
      const first = words[0];
      const named = first !== undefined && first.at > 0 ? COMMANDS[first.word] : undefined;
      if (named) {
        loader = named;
        args = [...argv.slice(first!.at + 1), ...argv.slice(0, first!.at)];
      } else if ((words[1] !== undefined && FUNCTION_NAME.test(words[1].word)) || cmd.startsWith("-")) {
        // Leading options without a command: the target parser names a bad option or what is missing.
        loader = targetCommand;
        args = argv;
      } else {
        throw new UsageError(
          `unknown command "${cmd}"${suggestion(cmd, Object.keys(COMMANDS))}; see zester --help`,
        );
      }
    }
    const mod = await loader();
    return await mod.run(args);
  } catch (err) {
    return reportError(err, PROGRAM[cmd] ?? "zester");
  }
}

export function reportError(err: unknown, program = "zester"): number {
  if (err instanceof UsageError || err instanceof ConfigError) {
    const prefix = (err instanceof UsageError && err.program) || program;
    process.stderr.write(`${prefix}: ${err.message}\n`);
    return 1;
  }
  const msg = errText(err);
  process.stderr.write(`${program}: ${msg}\n`);
  if (process.env.ZESTER_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return 1;
}
