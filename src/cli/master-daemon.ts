/** `zester-master [options]` (also `zester master`): runs a Master until SIGINT or SIGTERM. */

import { join } from "node:path";
import { parseReplicas, type ReplicasSetting } from "../bus/replicas.js";
import { connectOptions } from "../config/connect.js";
import { ConfigError, formatConfig, formatOptionsHelp, loadConfig } from "../config/load.js";
import type { OptionTable } from "../config/options.js";
import { MASTER_CONFIG_FILE } from "../config/paths.js";
import { parseListen } from "../health/server.js";
import { DEFAULT_STATES_DIR, Master } from "../master/master.js";
import { DEFAULT_REACTOR_DIR } from "../reactor/tree.js";
import { DEFAULT_SETTINGS_DIR } from "../settings/source.js";
import { errText } from "../util/errors.js";
import { daemonHealthLogOptions, daemonLogger, type LogFormat } from "./daemon-log.js";

export { MASTER_CONFIG_FILE };

/** Every option of zester-master: flag `--<key>`, env `ZESTER_<KEY>`, key in master.yaml. */
export const MASTER_OPTIONS = {
  id: {
    kind: "string",
    env: "ZESTER_MASTER_ID",
    valueName: "ID",
    help: "master id, unique per running master",
    defaultText: "<hostname>-<pid>",
  },
  ...connectOptions("master"),
  states_dir: {
    kind: "string",
    default: DEFAULT_STATES_DIR,
    valueName: "DIR",
    help: "states tree to publish",
  },
  settings_dir: {
    kind: "string",
    default: DEFAULT_SETTINGS_DIR,
    valueName: "DIR",
    help: "settings tree to publish",
  },
  reactor_dir: {
    kind: "string",
    default: DEFAULT_REACTOR_DIR,
    valueName: "DIR",
    group: "Reactor",
    help: "reactor rules (top.zy) and reaction files to publish",
  },
  reactor_max_age: {
    kind: "count",
    default: 900,
    valueName: "S",
    group: "Reactor",
    help: "seconds after which a queued event is too old to react to (0: no limit)",
  },
  reactor: { kind: "boolean", default: true, group: "Reactor", help: "run the reactor on this master" },
  job_return_events: {
    kind: "boolean",
    default: false,
    group: "Reactor",
    help: "announce every peel's return as _master/job/<jid>/ret/<peel> (job/<jid>/done always carries them all)",
  },
  publish_interval: { kind: "seconds", default: 30, valueName: "S", help: "seconds between state publishes" },
  unreachable_after: {
    kind: "seconds",
    default: 10,
    valueName: "S",
    help: "seconds after which a silent, offline peel is unreachable",
  },
  default_timeout: {
    kind: "seconds",
    default: 60,
    valueName: "S",
    help: "job timeout when the request names none",
  },
  queue_ttl: {
    kind: "duration",
    default: 0,
    valueName: "TTL",
    help: "keep each job's command this long for peels that are offline when it is sent (0: don't; a job's --queue wins; at most 24h)",
  },
  nodegroups: {
    kind: "map",
    valueName: "JSON",
    help: "named targets for N@name: name -> target expression, or a list of peel ids",
  },
  ...daemonHealthLogOptions(9641),
  replicas: {
    kind: "string",
    default: "auto",
    valueName: "N",
    help: "copies of every bucket and stream: auto (1, or 3 on a 3+ node cluster) or 1-5; a count moves existing ones (docs/scale.md)",
  },
  enroll_listen: {
    kind: "string",
    valueName: "ADDR",
    group: "Enrollment",
    help: "serve peel enrollment over HTTPS on HOST:PORT (e.g. :8443); off when unset",
  },
  enroll_cert: {
    kind: "string",
    valueName: "FILE",
    group: "Enrollment",
    help: "PEM certificate for the enrollment listener",
    defaultText: "issued by the auth dir's CA",
  },
  enroll_key: { kind: "string", valueName: "FILE", group: "Enrollment", help: "PEM key for --enroll-cert" },
  enroll_max_pending: {
    kind: "count",
    default: 1000,
    valueName: "N",
    group: "Enrollment",
    help: "pending requests at which new ones get 429 (0: no cap)",
  },
  enroll_rate: {
    kind: "count",
    default: 20,
    valueName: "N",
    group: "Enrollment",
    help: "challenge + enroll requests per minute per client address (0: no limit)",
  },
} as const satisfies OptionTable;

const USAGE = `Usage: zester-master [options]

Zester control plane: target resolution, job dispatch and tracking, state publishing.
Every option is also an environment variable and a key in the config file; precedence:
flag > env > config file > default (docs/fleet.md).

  --config FILE      config file (env ZESTER_MASTER_CONFIG, default ${MASTER_CONFIG_FILE})
  --print-config     print the effective configuration, each value with its origin, and exit

${formatOptionsHelp(MASTER_OPTIONS)}`;

/** `HOST:PORT`, `:PORT` or `PORT`. */
function listenAddress(v: string): { host?: string; port: number } {
  const m = /^(?:(.*):)?(\d+)$/.exec(v);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535)
    throw new ConfigError(`--enroll-listen ${JSON.stringify(v)}: expected HOST:PORT or PORT`);
  return m[1] ? { host: m[1].replace(/^\[|\]$/g, ""), port } : { port };
}

function healthAddress(v: string): { host?: string; port: number } {
  const a = parseListen(v);
  if (!a) throw new ConfigError(`--health-listen ${JSON.stringify(v)}: expected HOST:PORT or PORT`);
  return a;
}

function replicasOption(v: string): ReplicasSetting {
  try {
    return parseReplicas(v);
  } catch (err) {
    throw new ConfigError(`replicas: ${errText(err)}`);
  }
}

function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
      resolve(sig);
    };
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
  });
}

export function loadMasterConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env) {
  return loadConfig({
    program: "zester-master",
    options: MASTER_OPTIONS,
    argv,
    env,
    defaultFile: MASTER_CONFIG_FILE,
    configEnv: "ZESTER_MASTER_CONFIG",
  });
}

export async function run(argv: string[]): Promise<number> {
  const cfg = loadMasterConfig(argv);
  if (cfg.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (cfg.printConfig) {
    process.stdout.write(formatConfig("zester-master", MASTER_OPTIONS, cfg));
    return 0;
  }
  const o = cfg.values;
  const enroll = o.enroll_listen !== undefined ? listenAddress(o.enroll_listen) : undefined;
  const health = o.health_listen !== undefined ? healthAddress(o.health_listen) : undefined;
  let id = o.id ?? "master";
  const say = (m: string) =>
    o.log_format === "json"
      ? daemonLogger(o.log_format as LogFormat, "master", id).info(m)
      : process.stderr.write(`${new Date().toISOString()} master: ${m}\n`);
  const master = new Master({
    ...(o.id !== undefined ? { id: o.id } : {}),
    servers: o.nats_url,
    credsFile: o.creds ?? join(o.auth_dir, "master.creds"),
    ...(o.ca !== undefined ? { caFile: o.ca } : {}),
    authDir: o.auth_dir,
    statesDir: o.states_dir,
    publishIntervalMs: o.publish_interval * 1000,
    unreachableAfterMs: o.unreachable_after * 1000,
    defaultTimeoutS: o.default_timeout,
    queueTtlS: o.queue_ttl / 1000,
    replicas: replicasOption(o.replicas),
    settingsDir: o.settings_dir,
    ...(o.nodegroups !== undefined ? { nodegroups: o.nodegroups } : {}),
    log: say,
    reactorDir: o.reactor_dir,
    reactor: o.reactor ? { maxAgeMs: o.reactor_max_age * 1000 } : false,
    jobReturnEvents: o.job_return_events,
    ...(enroll !== undefined
      ? {
          enroll: {
            ...enroll,
            ...(o.enroll_cert !== undefined ? { certFile: o.enroll_cert } : {}),
            ...(o.enroll_key !== undefined ? { keyFile: o.enroll_key } : {}),
            maxPending: o.enroll_max_pending,
            requestsPerMinute: o.enroll_rate,
          },
        }
      : {}),
  });
  id = master.id;
  const banner = (m: string) =>
    o.log_format === "json" ? say(m) : process.stderr.write(`zester-master ${master.id}: ${m}\n`);
  await master.start();
  const { serveMasterHealth } = await import("../health/daemon.js");
  const served = health ? await serveMasterHealth(master, health) : undefined;
  if (served) banner(`health listener on ${served.url}`);
  banner(`running (signing key ${master.publicKey})`);
  const sig = await untilSignal();
  banner(`${sig}, stopping`);
  await served?.close();
  await master.stop();
  return 0;
}
