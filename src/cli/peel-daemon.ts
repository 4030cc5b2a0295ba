/**
 * `zester-peel`: runs one Peel until SIGINT/SIGTERM. The daemon is only argument parsing and
 * signal handling; everything else is the Peel library.
 */
import { UsageError } from "./errors.js";

const USAGE = `Usage: zester-peel --id ID --nats-url tls://HOST:4222 --creds FILE [options]

Options:
  --id ID            peel id (A-Z a-z 0-9 _ -, max 128; default: $ZESTER_PEEL_ID)
  --nats-url URL     NATS server(s), comma separated; tls:// only (default: $ZESTER_NATS_URL)
  --creds FILE       this peel's .creds file (default: <auth-dir>/peels/<id>.creds)
  --ca FILE          CA that signed the server certificate (default: <auth-dir>/nats-ca.crt)
  --auth-dir DIR     holds trusted-masters.pub and nats-ca.crt (default /etc/zester/auth)
  --cache-dir DIR    state tree cache and job id store (default /var/lib/zester/peel/<id>)
  --facts-dir DIR    custom facts (default $ZESTER_FACTS_DIR or /etc/zester/facts)
`;

interface DaemonOptions {
  id?: string;
  url?: string;
  creds?: string;
  ca?: string;
  authDir?: string;
  cacheDir?: string;
  factsDir?: string;
  help: boolean;
}

function parseArgs(argv: string[]): DaemonOptions {
  const o: DaemonOptions = { help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--help" || a === "-h") {
      o.help = true;
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
  const authDir = o.authDir ?? DEFAULT_AUTH_DIR;
  const { peelCredsPath } = await import("../auth/auth-dir.js");
  const creds = o.creds ?? peelCredsPath(authDir, id);

  const { Peel, stderrLogger } = await import("../peel/peel.js");
  const logger = stderrLogger(id);
  const peel = new Peel({
    id,
    servers: url,
    credsFile: creds,
    authDir,
    logger,
    ...(o.ca !== undefined ? { caFile: o.ca } : {}),
    ...(o.cacheDir !== undefined ? { cacheDir: o.cacheDir } : {}),
    ...(o.factsDir !== undefined ? { customFactsDir: o.factsDir } : {}),
  });

  let signalled: (sig: string) => void = () => {};
  const stopped = new Promise<string>((resolve) => {
    signalled = resolve;
  });
  const onSignal = (sig: NodeJS.Signals) => signalled(sig);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
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
