/**
 * `zester dev`: a whole fleet on this machine for trying Zester — a TLS, operator-mode
 * nats-server, a master and one peel (this machine) — set up from nothing in a local folder.
 * With `--once` it applies the states tree through the fleet, prints the result and tears
 * everything down; otherwise it keeps running until Ctrl-C.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createConnection } from "node:net";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { AUTH_FILES, initAuthDir, issuePeelCredsFile, peelCredsPath } from "../auth/auth-dir.js";
import { isValidPeelId } from "../bus/names.js";
import { ensureMasterCurveKey } from "../settings/keys.js";
import { statOrUndefined } from "../util/files.js";
import { UsageError } from "./errors.js";

const USAGE = `Usage: zester dev [--dir DIR] [--port N] [--states-dir DIR] [--settings-dir DIR] [--id ID] [--once [FUN ...]]

Starts nats-server (TLS, operator JWTs), a master and a peel for this machine, all set up in DIR
(default ./.zester-dev; reused when it exists). --once runs FUN (default: state.apply, a highstate)
on the peel through the fleet, prints the result and stops; its exit code is the job's.
`;

interface DevOptions {
  dir: string;
  port: number;
  statesDir: string;
  settingsDir: string;
  id: string;
  once?: string[];
}

function parse(argv: string[]): DevOptions | "help" {
  const o: DevOptions = {
    dir: resolve(".zester-dev"),
    port: 4222,
    statesDir: resolve("examples/states"),
    settingsDir: resolve("examples/settings"),
    id: hostname()
      .split(".")[0]!
      .replace(/[^A-Za-z0-9_-]/g, "-"),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === "--help" || a === "-h") return "help";
    else if (a === "--dir") o.dir = resolve(value());
    else if (a === "--port") {
      o.port = Number(value());
      if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535)
        throw new UsageError("--port must be 1-65535");
    } else if (a === "--states-dir") o.statesDir = resolve(value());
    else if (a === "--settings-dir") o.settingsDir = resolve(value());
    else if (a === "--id") o.id = value();
    else if (a === "--once") {
      o.once = argv.slice(i + 1);
      break;
    } else throw new UsageError(`unknown option ${a}\n${USAGE}`);
  }
  if (!isValidPeelId(o.id)) throw new UsageError(`--id ${JSON.stringify(o.id)} is not a valid peel id`);
  return o;
}

function reachable(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createConnection({ port, host: "127.0.0.1" });
    s.setTimeout(500, () => {
      s.destroy();
      res(false);
    });
    s.on("data", (d) => {
      s.destroy();
      res(d.toString().startsWith("INFO "));
    });
    s.on("error", () => res(false));
  });
}

async function startServer(dir: string, port: number): Promise<ChildProcess> {
  if (await reachable(port)) {
    throw new Error(`something already listens on 127.0.0.1:${port}; stop it or pass --port`);
  }
  const child = spawn("nats-server", ["-c", join(dir, AUTH_FILES.serverConfig)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const failed = new Promise<never>((_, reject) => {
    child.on("error", (e) =>
      reject(
        new Error(`cannot start nats-server (${e.message}); install it, e.g. apt-get install nats-server`),
      ),
    );
    child.on("exit", (code) => reject(new Error(`nats-server exited with ${code}:\n${err}`)));
  });
  failed.catch(() => {});
  const deadline = Date.now() + 15_000;
  while (!(await Promise.race([reachable(port), failed]))) {
    if (Date.now() > deadline) throw new Error(`nats-server did not come up on port ${port}:\n${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return child;
}

export async function run(argv: string[]): Promise<number> {
  const o = parse(argv);
  if (o === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  const log = (m: string) => process.stderr.write(`dev: ${m}\n`);
  if (!(await statOrUndefined(join(o.dir, AUTH_FILES.serverConfig)))) {
    await initAuthDir({ dir: o.dir, port: o.port, listenHost: "127.0.0.1" });
    await ensureMasterCurveKey(o.dir);
    log(`created operator, accounts, creds, CA and nats-server.conf in ${o.dir}`);
  }
  const peelCreds = peelCredsPath(o.dir, o.id);
  if (!(await statOrUndefined(peelCreds))) await issuePeelCredsFile(o.dir, o.id);

  const url = `tls://127.0.0.1:${o.port}`;
  const server = await startServer(o.dir, o.port);
  const [{ Master }, { Peel }] = await Promise.all([
    import("../master/master.js"),
    import("../peel/peel.js"),
  ]);
  const quiet = o.once !== undefined;
  const master = new Master({
    servers: url,
    credsFile: join(o.dir, AUTH_FILES.masterCreds),
    authDir: o.dir,
    statesDir: o.statesDir,
    settingsDir: o.settingsDir,
    ...(quiet ? { log: () => {} } : { log: (m: string) => log(`master: ${m}`) }),
  });
  const peel = new Peel({
    id: o.id,
    servers: url,
    credsFile: peelCreds,
    authDir: o.dir,
    cacheDir: join(o.dir, "peel"),
    ...(quiet ? { logger: { info: () => {}, warn: () => {}, error: (m: string) => log(`peel: ${m}`) } } : {}),
  });
  const stop = async () => {
    await peel.stop().catch(() => {});
    await master.stop().catch(() => {});
    server.kill("SIGTERM");
  };
  try {
    await master.start();
    await peel.start();
    await master.publishStates();
    await master.publishSettings();
    await peel.syncStates();
    // The master learns about the peel through the facts KV watch; wait for it before targeting.
    const deadline = Date.now() + 10_000;
    while (!master.fleet.peels().includes(o.id) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    const connect = ["--nats-url", url, "--auth-dir", o.dir];
    if (o.once !== undefined) {
      // `--once --format json` still means the default job, with that option.
      const job = o.once[0] !== undefined && !o.once[0].startsWith("-") ? o.once : ["state.apply", ...o.once];
      const { run: runTarget } = await import("./target.js");
      return await runTarget([o.id, ...job, ...connect]);
    }
    process.stdout.write(
      `Zester dev fleet is up: nats-server ${url}, master, peel "${o.id}" (states: ${o.statesDir}, settings: ${o.settingsDir}).\n` +
        `In another shell:\n  export ZESTER_NATS_URL=${url} ZESTER_AUTH_DIR=${o.dir}\n` +
        `  zester '*' test.ping\n  zester '*' state.apply --test\n  zester peel list\nCtrl-C stops everything.\n`,
    );
    await new Promise<void>((res) => {
      process.once("SIGINT", res);
      process.once("SIGTERM", res);
    });
    return 0;
  } finally {
    await stop();
  }
}
