/**
 * `zester-peel`: runs one Peel until SIGINT/SIGTERM. The daemon is only argument parsing and
 * signal handling; everything else is the Peel library.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { EnforceSchedule } from "../peel/scheduler.js";
import { parseInterval } from "../util/duration.js";
import { UsageError } from "./errors.js";

const USAGE = `Usage: zester-peel --id ID --nats-url tls://HOST:4222 --creds FILE [options]
       zester-peel --id ID --nats-url tls://HOST:4222 --enroll-url https://MASTER:8443 [options]

Options:
  --id ID            peel id (A-Z a-z 0-9 _ -, max 128; default: $ZESTER_PEEL_ID)
  --nats-url URL     NATS server(s), comma separated; tls:// only (default: $ZESTER_NATS_URL)
  --creds FILE       this peel's .creds file (default: <auth-dir>/peels/<id>.creds)
  --ca FILE          CA that signed the server certificate (default: <auth-dir>/nats-ca.crt)
  --auth-dir DIR     holds trusted-masters.pub and nats-ca.crt (default /etc/zester/auth)
  --cache-dir DIR    state tree cache and job id store (default /var/lib/zester/peel/<id>)
  --facts-dir DIR    custom facts (default $ZESTER_FACTS_DIR or /etc/zester/facts)

Enforcement (applies the cached state tree on a timer, also while NATS is unreachable):
  --enforce-every D  e.g. 30m, 1h (at least 10s; default: off, states run only when asked)
  --enforce-splay D  random extra delay per run (default: a tenth of the interval, at most 5m)
  --enforce-sls A,B  apply these sls instead of the highstate (top.zy)
  --enforce-test     report drift only (test mode), change nothing

Enrollment (a new machine without creds; see docs/enrollment.md):
  --enroll-url URL   master enrollment API, https:// only (default: $ZESTER_ENROLL_URL). When the
                     creds file does not exist, the peel makes its own keys, asks to enroll, waits
                     for an operator's approval and writes <cache-dir>/peel.creds (or --creds)
  --enroll-token T   one-time token from \`zester enroll token\` (default: $ZESTER_ENROLL_TOKEN)
  --enroll-ca FILE   CA of the master's HTTPS certificate (default <auth-dir>/nats-ca.crt, else system)
  --enroll-replace   this machine replaces an earlier enrollment of the same id (rebuilt machine)

Environment:
  ZESTER_PEEL_JIT    lean (default): small young generation and no optimising compiler, for a
                     low idle footprint; full: V8's defaults, faster on compile-heavy state trees
`;

interface DaemonOptions {
  id?: string;
  url?: string;
  creds?: string;
  ca?: string;
  authDir?: string;
  cacheDir?: string;
  factsDir?: string;
  enrollUrl?: string;
  enrollToken?: string;
  enrollCa?: string;
  enrollReplace: boolean;
  enforceEvery?: string;
  enforceSplay?: string;
  enforceSls?: string;
  enforceTest: boolean;
  help: boolean;
}

function parseArgs(argv: string[]): DaemonOptions {
  const o: DaemonOptions = { help: false, enrollReplace: false, enforceTest: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--help" || a === "-h") {
      o.help = true;
      continue;
    }
    if (a === "--enroll-replace") {
      o.enrollReplace = true;
      continue;
    }
    if (a === "--enforce-test") {
      o.enforceTest = true;
      continue;
    }
    const eq = a.indexOf("=");
    const flag = a.startsWith("--") && eq > 0 ? a.slice(0, eq) : a;
    const value = () => {
      if (eq > 0 && a.startsWith("--")) return a.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--id":
        o.id = value();
        break;
      case "--nats-url":
        o.url = value();
        break;
      case "--creds":
        o.creds = value();
        break;
      case "--ca":
        o.ca = value();
        break;
      case "--auth-dir":
        o.authDir = value();
        break;
      case "--cache-dir":
        o.cacheDir = value();
        break;
      case "--facts-dir":
        o.factsDir = value();
        break;
      case "--enroll-url":
        o.enrollUrl = value();
        break;
      case "--enroll-token":
        o.enrollToken = value();
        break;
      case "--enroll-ca":
        o.enrollCa = value();
        break;
      case "--enforce-every":
        o.enforceEvery = value();
        break;
      case "--enforce-splay":
        o.enforceSplay = value();
        break;
      case "--enforce-sls":
        o.enforceSls = value();
        break;
      default:
        throw new UsageError(`unknown argument ${a}\n${USAGE}`);
    }
  }
  return o;
}

export async function run(argv: string[]): Promise<number> {
  const o = parseArgs(argv);
  if (o.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const id = o.id ?? process.env.ZESTER_PEEL_ID;
  const url = o.url ?? process.env.ZESTER_NATS_URL;
  if (!id) throw new UsageError(`--id is required\n${USAGE}`);
  if (!url) throw new UsageError(`--nats-url is required\n${USAGE}`);

  const { assertTlsUrls, DEFAULT_AUTH_DIR } = await import("../bus/connect.js");
  const { isValidPeelId } = await import("../bus/names.js");
  // Refuse nats:// and bad ids before anything touches the disk or the network.
  assertTlsUrls(url);
  if (!isValidPeelId(id)) throw new UsageError(`invalid peel id ${JSON.stringify(id)}`);
  const enforce = enforceSchedule(o);
  const enrollUrl = o.enrollUrl ?? (process.env.ZESTER_ENROLL_URL || undefined);
  if (enrollUrl !== undefined) {
    const { assertHttpsUrl } = await import("../enroll/client.js");
    try {
      assertHttpsUrl(enrollUrl);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const authDir = o.authDir ?? DEFAULT_AUTH_DIR;
  const { peelCredsPath } = await import("../auth/auth-dir.js");
  const { Peel, stderrLogger, DEFAULT_PEEL_CACHE_ROOT } = await import("../peel/peel.js");
  const logger = stderrLogger(id);
  const cacheDir = o.cacheDir ?? join(DEFAULT_PEEL_CACHE_ROOT, id);
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
    ...(o.factsDir !== undefined ? { customFactsDir: o.factsDir } : {}),
    ...(enforce !== undefined ? { enforce } : {}),
  });

  try {
    await peel.start();
    logger.info(`started (cache ${peel.cacheDir})`);
    const sig = await stopped;
    logger.info(`${sig} received, stopping`);
  } finally {
    await peel.stop();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  logger.info("stopped");
  return 0;
}

/** Shortest accepted enforcement interval: a full state run every few seconds is a mistake. */
const MIN_ENFORCE_MS = 10_000;

function enforceSchedule(o: DaemonOptions): EnforceSchedule | undefined {
  if (o.enforceEvery === undefined) {
    const stray = [
      o.enforceSplay !== undefined && "--enforce-splay",
      o.enforceSls !== undefined && "--enforce-sls",
      o.enforceTest && "--enforce-test",
    ].filter(Boolean);
    if (stray.length > 0) throw new UsageError(`${stray.join(", ")} needs --enforce-every`);
    return undefined;
  }
  const everyMs = parseInterval(o.enforceEvery);
  if (everyMs === undefined) {
    throw new UsageError(
      `--enforce-every: bad duration ${JSON.stringify(o.enforceEvery)} (use e.g. 30m, 1h)`,
    );
  }
  if (everyMs < MIN_ENFORCE_MS) throw new UsageError("--enforce-every must be at least 10s");
  const schedule: EnforceSchedule = { everyMs, test: o.enforceTest };
  if (o.enforceSplay !== undefined) {
    const splayMs = parseInterval(o.enforceSplay);
    if (splayMs === undefined) {
      throw new UsageError(
        `--enforce-splay: bad duration ${JSON.stringify(o.enforceSplay)} (use e.g. 30s, 5m)`,
      );
    }
    schedule.splayMs = splayMs;
  }
  if (o.enforceSls !== undefined) {
    const sls = o.enforceSls
      .split(",")
      .map((x) => x.trim())
      .filter((x) => x !== "");
    if (sls.length === 0) throw new UsageError("--enforce-sls needs at least one sls name");
    schedule.sls = sls;
  }
  return schedule;
}

interface EnrolledTrust {
  caFile?: string;
  trustedMasters?: ReadonlySet<string>;
}

interface EnrollStep {
  id: string;
  url: string;
  creds: string;
  cacheDir: string;
  authDir: string;
  o: DaemonOptions;
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
  if (!(await statOrUndefined(e.creds))) {
    const { enrollPeel, writeCreds } = await import("../enroll/client.js");
    const token = e.o.enrollToken ?? (process.env.ZESTER_ENROLL_TOKEN || undefined);
    e.logger.info(`no creds at ${e.creds}: enrolling with ${e.url}`);
    const res = await enrollPeel({
      url: e.url,
      peelId: e.id,
      cacheDir: e.cacheDir,
      authDir: e.authDir,
      logger: e.logger,
      signal: e.signal,
      replace: e.o.enrollReplace,
      ...(e.o.enrollCa !== undefined ? { caFile: e.o.enrollCa } : {}),
      ...(token !== undefined ? { token } : {}),
    });
    if (res.trustedMasters.length > 0) {
      await writeFile(
        mastersFile,
        `# master keys handed out at enrollment\n${res.trustedMasters.join("\n")}\n`,
        {
          mode: 0o644,
        },
      );
    }
    if (res.natsCa !== undefined) await writeFile(caCopy, res.natsCa, { mode: 0o644 });
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
    !process.env.NATS_CA_FILE &&
    !(await statOrUndefined(join(e.authDir, CA_FILE_NAME))) &&
    (await statOrUndefined(caCopy))
  ) {
    out.caFile = caCopy;
  }
  return out;
}
