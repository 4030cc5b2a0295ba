/**
 * `zester-peel`: runs one Peel until SIGINT/SIGTERM. The daemon is only argument parsing and
 * signal handling; everything else is the Peel library.
 */
import { join } from "node:path";
import { connectOptions } from "../config/connect.js";
import { formatConfig, formatOptionsHelp, loadConfig } from "../config/load.js";
import type { ConfigValues, OptionTable } from "../config/options.js";
import { PEEL_CONFIG_FILE } from "../config/paths.js";
import { parseListen } from "../health/server.js";
import type { EnforceSchedule } from "../peel/scheduler.js";
import { errText } from "../util/errors.js";
import { daemonHealthLogOptions, daemonLogger, type LogFormat } from "./daemon-log.js";
import { UsageError } from "./errors.js";

export { PEEL_CONFIG_FILE };

/** Every option of zester-peel: flag `--<key>`, env `ZESTER_<KEY>`, key in peel.yaml. */
export const PEEL_OPTIONS = {
  id: {
    kind: "string",
    env: "ZESTER_PEEL_ID",
    valueName: "ID",
    help: "peel id: A-Z a-z 0-9 _ -, max 128",
    defaultText: "the FQDN, else the hostname, dots as _ (web.example.com: web_example_com)",
  },
  ...connectOptions("peel"),
  cache_dir: {
    kind: "string",
    env: "ZESTER_PEEL_CACHE_DIR",
    valueName: "DIR",
    help: "state tree cache and job id store",
    defaultText: "/var/lib/zester/peel/<id>",
  },
  facts_dir: {
    kind: "string",
    env: "ZESTER_FACTS_DIR",
    valueName: "DIR",
    help: "custom facts",
    defaultText: "/etc/zester/facts",
  },
  enforce_every: {
    kind: "duration",
    valueName: "D",
    group: "Enforcement (applies the cached state tree on a timer, also while NATS is unreachable)",
    help: "e.g. 30m, 1h (at least 10s; unset: states run only when asked)",
  },
  enforce_splay: {
    kind: "duration",
    valueName: "D",
    group: "Enforcement (applies the cached state tree on a timer, also while NATS is unreachable)",
    help: "random extra delay per run",
    defaultText: "a tenth of the interval, at most 5m",
  },
  enforce_sls: {
    kind: "list",
    valueName: "A,B",
    group: "Enforcement (applies the cached state tree on a timer, also while NATS is unreachable)",
    help: "apply these sls instead of the highstate (top.zy)",
  },
  enforce_test: {
    kind: "boolean",
    default: false,
    group: "Enforcement (applies the cached state tree on a timer, also while NATS is unreachable)",
    help: "report drift only (test mode), change nothing",
  },
  ...daemonHealthLogOptions(9642),
  enroll_url: {
    kind: "string",
    valueName: "URL",
    group: "Enrollment (a new machine without creds; see docs/enrollment.md)",
    help:
      "master enrollment API, https:// only; when the creds file does not exist, the peel makes its own keys, " +
      "asks to enroll, waits for approval and writes <cache-dir>/peel.creds (or --creds)",
  },
  enroll_token: {
    kind: "string",
    valueName: "T",
    secret: true,
    group: "Enrollment (a new machine without creds; see docs/enrollment.md)",
    help: "one-time token from `zester enroll token`",
  },
  enroll_ca: {
    kind: "string",
    valueName: "FILE",
    group: "Enrollment (a new machine without creds; see docs/enrollment.md)",
    help: "CA of the master's HTTPS certificate",
    defaultText: "<auth-dir>/nats-ca.crt, else the system's",
  },
  enroll_replace: {
    kind: "boolean",
    default: false,
    group: "Enrollment (a new machine without creds; see docs/enrollment.md)",
    help: "this machine replaces an earlier enrollment of the same id (rebuilt machine)",
  },
} as const satisfies OptionTable;

type PeelValues = ConfigValues<typeof PEEL_OPTIONS>;

const USAGE = `Usage: zester-peel [options]

Every option is also an environment variable and a key in the config file; precedence:
flag > env > config file > default (docs/peel.md).

  --config FILE      config file (env ZESTER_PEEL_CONFIG, default ${PEEL_CONFIG_FILE})
  --print-config     print the effective configuration, each value with its origin, and exit

${formatOptionsHelp(PEEL_OPTIONS)}
Environment only:
  ZESTER_PEEL_JIT    lean (default): small young generation and no optimising compiler, for a
                     low idle footprint; full: V8's defaults, faster on compile-heavy state trees
`;

export function loadPeelConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env) {
  return loadConfig({
    program: "zester-peel",
    options: PEEL_OPTIONS,
    argv,
    env,
    defaultFile: PEEL_CONFIG_FILE,
    configEnv: "ZESTER_PEEL_CONFIG",
  });
}

export async function run(argv: string[]): Promise<number> {
  const cfg = loadPeelConfig(argv);
  if (cfg.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const o = cfg.values;
  if (cfg.printConfig) {
    process.stdout.write(formatConfig("zester-peel", PEEL_OPTIONS, cfg));
    return 0;
  }
  const url = o.nats_url;
  const { defaultPeelId, peelIdForHost } = await import("../peel/identity.js");
  const derived = o.id === undefined ? await defaultPeelId() : undefined;
  const id = o.id ?? derived!.id;

  const { assertTlsUrls } = await import("../bus/connect.js");
  const { isValidPeelId } = await import("../bus/names.js");
  // Refuse nats:// and bad ids before anything touches the disk or the network.
  assertTlsUrls(url);
  if (!isValidPeelId(id)) {
    const mapped = peelIdForHost(id);
    throw new UsageError(
      `invalid peel id ${JSON.stringify(id)}: use 1-128 characters from A-Z a-z 0-9 _ -, starting with a ` +
        "letter or digit (no dots: the id is a NATS subject token)" +
        (mapped !== undefined && mapped !== id ? `; for this host name use --id ${mapped} (dots as _)` : ""),
    );
  }
  const enforce = enforceSchedule(o);
  const health = o.health_listen !== undefined ? parseListen(o.health_listen) : undefined;
  if (o.health_listen !== undefined && health === undefined) {
    throw new UsageError(`--health-listen ${JSON.stringify(o.health_listen)}: expected HOST:PORT or PORT`);
  }
  const enrollUrl = o.enroll_url;
  if (enrollUrl !== undefined) {
    const { assertHttpsUrl } = await import("../enroll/client.js");
    try {
      assertHttpsUrl(enrollUrl);
    } catch (err) {
      throw new UsageError(errText(err));
    }
  }
  const authDir = o.auth_dir;
  const { peelCredsPath } = await import("../auth/auth-dir.js");
  const { Peel, DEFAULT_PEEL_CACHE_ROOT } = await import("../peel/peel.js");
  const logger = daemonLogger(o.log_format as LogFormat, "peel", id);
  if (derived) logger.info(`peel id ${id} from the ${derived.source} ${derived.from} (dots as _)`);
  const cacheDir = o.cache_dir ?? join(DEFAULT_PEEL_CACHE_ROOT, id);
  const creds =
    o.creds ?? (enrollUrl !== undefined ? join(cacheDir, "peel.creds") : peelCredsPath(authDir, id));

  let signalled: (sig: string) => void = () => {};
  const stopped = new Promise<string>((resolve) => {
    signalled = resolve;
  });
  const aborter = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    aborter.abort();
    signalled(sig);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  let enrolled: EnrolledTrust = {};
  if (enrollUrl !== undefined) {
    try {
      enrolled = await enrollIfNeeded({
        id,
        url: enrollUrl,
        creds,
        cacheDir,
        authDir,
        o,
        logger,
        signal: aborter.signal,
      });
    } catch (err) {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      if (aborter.signal.aborted) return 0;
      throw err;
    }
  }

  const caFile = o.ca ?? enrolled.caFile;
  const peel = new Peel({
    id,
    servers: url,
    credsFile: creds,
    authDir,
    logger,
    cacheDir,
    ...(caFile !== undefined ? { caFile } : {}),
    ...(enrolled.trustedMasters !== undefined ? { trustedMasters: enrolled.trustedMasters } : {}),
    ...(enrolled.masterCurvePub !== undefined ? { masterCurvePub: enrolled.masterCurvePub } : {}),
    ...(o.facts_dir !== undefined ? { customFactsDir: o.facts_dir } : {}),
    ...(enforce !== undefined ? { enforce } : {}),
  });

  const { servePeelHealth } = await import("../health/daemon.js");
  const served = health ? await servePeelHealth(peel, health) : undefined;
  if (served) logger.info(`health listener on ${served.url}`);
  try {
    await peel.start();
    logger.info(`started (cache ${peel.cacheDir})`);
    const sig = await stopped;
    logger.info(`${sig} received, stopping`);
  } finally {
    await served?.close();
    await peel.stop();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  logger.info("stopped");
  return 0;
}

/** Shortest accepted enforcement interval: a full state run every few seconds is a mistake. */
const MIN_ENFORCE_MS = 10_000;

function enforceSchedule(o: PeelValues): EnforceSchedule | undefined {
  if (o.enforce_every === undefined) {
    const stray = [
      o.enforce_splay !== undefined && "--enforce-splay",
      o.enforce_sls !== undefined && "--enforce-sls",
      o.enforce_test && "--enforce-test",
    ].filter(Boolean);
    if (stray.length > 0) throw new UsageError(`${stray.join(", ")} needs --enforce-every`);
    return undefined;
  }
  const everyMs = o.enforce_every;
  if (everyMs < MIN_ENFORCE_MS) throw new UsageError("--enforce-every must be at least 10s");
  const schedule: EnforceSchedule = { everyMs, test: o.enforce_test };
  if (o.enforce_splay !== undefined) schedule.splayMs = o.enforce_splay;
  if (o.enforce_sls !== undefined) {
    if (o.enforce_sls.length === 0) throw new UsageError("--enforce-sls needs at least one sls name");
    schedule.sls = [...o.enforce_sls];
  }
  return schedule;
}

interface EnrolledTrust {
  caFile?: string;
  trustedMasters?: ReadonlySet<string>;
  masterCurvePub?: string;
}

interface EnrollStep {
  id: string;
  url: string;
  creds: string;
  cacheDir: string;
  authDir: string;
  o: PeelValues;
  logger: { info(m: string): void; warn(m: string): void };
  signal: AbortSignal;
}

/**
 * Enrolls when the creds file does not exist yet; either way, fills in what a machine without an
 * auth dir lacks (trusted master keys, the NATS CA) from what the master handed out at enrollment.
 */
async function enrollIfNeeded(e: EnrollStep): Promise<EnrolledTrust> {
  const { statOrUndefined } = await import("../util/files.js");
  const { AUTH_FILES, loadTrustedMasters } = await import("../auth/auth-dir.js");
  const { CA_FILE_NAME } = await import("../bus/connect.js");
  const mastersFile = join(e.cacheDir, AUTH_FILES.trustedMasters);
  const caCopy = join(e.cacheDir, CA_FILE_NAME);
  const { MASTER_CURVE_FILES, loadMasterCurvePub } = await import("../settings/keys.js");
  const curveCopy = join(e.cacheDir, MASTER_CURVE_FILES.pub);
  if (!(await statOrUndefined(e.creds))) {
    const { enrollPeel, writeCreds } = await import("../enroll/client.js");
    const token = e.o.enroll_token;
    e.logger.info(`no creds at ${e.creds}: enrolling with ${e.url}`);
    const res = await enrollPeel({
      url: e.url,
      peelId: e.id,
      cacheDir: e.cacheDir,
      authDir: e.authDir,
      logger: e.logger,
      signal: e.signal,
      replace: e.o.enroll_replace,
      ...(e.o.enroll_ca !== undefined ? { caFile: e.o.enroll_ca } : {}),
      ...(token !== undefined ? { token } : {}),
    });
    // Each file atomically, and the creds last: a daemon that finds creds finds the whole set.
    const { writeFileAtomic } = await import("../util/files.js");
    if (res.trustedMasters.length > 0) {
      await writeFileAtomic(
        mastersFile,
        `# master keys handed out at enrollment\n${res.trustedMasters.join("\n")}\n`,
        { mode: 0o644 },
      );
    }
    if (res.natsCa !== undefined) await writeFileAtomic(caCopy, res.natsCa, { mode: 0o644 });
    if (res.masterCurvePub !== undefined)
      await writeFileAtomic(curveCopy, `${res.masterCurvePub}\n`, { mode: 0o644 });
    await writeCreds(e.creds, res.creds);
    e.logger.info(`wrote ${e.creds}`);
  }
  const out: EnrolledTrust = {};
  // The auth dir, when the machine has one, wins over copies made at enrollment.
  if (
    !(await statOrUndefined(join(e.authDir, AUTH_FILES.trustedMasters))) &&
    (await statOrUndefined(mastersFile))
  ) {
    out.trustedMasters = await loadTrustedMasters(e.cacheDir);
  }
  if (
    !(await statOrUndefined(join(e.authDir, MASTER_CURVE_FILES.pub))) &&
    (await statOrUndefined(curveCopy))
  ) {
    out.masterCurvePub = await loadMasterCurvePub(e.cacheDir);
  }
  if (
    !process.env.NATS_CA_FILE &&
    !(await statOrUndefined(join(e.authDir, CA_FILE_NAME))) &&
    (await statOrUndefined(caCopy))
  ) {
    out.caFile = caCopy;
  }
  return out;
}
