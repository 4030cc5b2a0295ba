/**
 * Salt's CLI habits on the built `zester` against a real `zester-master` (started from a config
 * file) and real peels: options anywhere, `-t`, `--out`, `-b` rolling batches, `-v`, nodegroups
 * from master.yaml, the CLI's own config file, unknown functions refused before dispatch, and a
 * quiet exit when the reader of stdout goes away.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPairFromCreds } from "../src/auth/signing.js";
import type { Peel } from "../src/peel/peel.js";
import { ROOT, requireBuilt } from "./support/built.js";
import { type CliResult, cliJson, fleetCliOptions, runCli } from "./support/cli.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { startTestPeel } from "./support/peel.js";
import { type WaitOptions, waitFor } from "./support/wait.js";

const ZESTER = join(ROOT, "dist/bin/zester.js");
const ZESTER_MASTER = join(ROOT, "dist/bin/zester-master.js");

let nats: StartedNats;
let work: string;
let master: ChildProcess | undefined;
let masterLog = "";
const peels: Peel[] = [];
const _quiet = { info: () => {}, warn: () => {}, error: () => {} };
const WAIT: WaitOptions = { ms: 30_000, intervalMs: 200, context: () => `master log:\n${masterLog}` };

type Run = { peel_id: string; success: boolean; status: string; return?: unknown };

function zester(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const base = fleetCliOptions(nats, work);
  // HOME points into the test dir: the operator's own ~/.config/zester is never read.
  return runCli(ZESTER, args, { ...base, env: { ...base.env, HOME: work, XDG_CONFIG_HOME: "", ...env } });
}

const ids = (r: CliResult) => cliJson<Run[]>(r).map((x) => x.peel_id);

beforeAll(async () => {
  requireBuilt(ZESTER);
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-cli-habits-"));
  const states = join(work, "states");
  await mkdir(states);
  await writeFile(join(states, "top.zy"), "base:\n  '*': []\n");
  const masterYaml = join(work, "master.yaml");
  await writeFile(
    masterYaml,
    [
      `nats_url: ${nats.url}`,
      `auth_dir: ${nats.authDir}`,
      "id: habits-master",
      `states_dir: ${states}`,
      `settings_dir: ${join(work, "no-settings")}`,
      "unreachable_after: 1",
      "nodegroups:",
      '  webs: "web-*"',
      "  pair: [web-01, db-01]",
      '  all: "N@webs or N@pair"',
      '  loop: "N@loop2"',
      '  loop2: "N@loop"',
      "",
    ].join("\n"),
  );
  // Only the file: no flags, no ZESTER_* variables for the master.
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("ZESTER_")) delete env[k];
  master = spawn(process.execPath, [ZESTER_MASTER, "--config", masterYaml], {
    stdio: ["ignore", "ignore", "pipe"],
    env,
  });
  master.stderr?.on("data", (d: Buffer) => {
    masterLog += d.toString("utf8");
  });
  await waitFor("zester-master to start", async () => /running \(signing key/.test(masterLog), WAIT);
  const { readFile } = await import("node:fs/promises");
  const trusted = new Set([
    keyPairFromCreds(await readFile(await nats.credsFile("master"), "utf8")).getPublicKey(),
  ]);
  for (const id of ["web-01", "web-02", "db-01"]) {
    const p = await startTestPeel(nats, id, work, trusted);
    peels.push(p);
  }
  await waitFor(
    "the master to see 3 peels",
    async () => {
      const r = await zester(["*", "test.ping", "--async", "--format", "json"]);
      return r.code === 0 && cliJson<{ peels: string[] }>(r).peels.length === 3;
    },
    WAIT,
  );
}, 300_000);

afterAll(async () => {
  for (const p of peels) await p.stop().catch(() => {});
  if (master && master.exitCode === null) {
    const exited = new Promise((r) => master!.once("exit", r));
    master.kill("SIGTERM");
    await exited;
  }
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("options anywhere", () => {
  it("before the target, between target and function, and after, with Salt's short names", async () => {
    for (const args of [
      ["-t", "20", "--out", "json", "web-*", "test.ping"],
      ["--timeout=20", "web-*", "--format", "json", "test.ping"],
      ["web-*", "test.ping", "-t", "20", "--out=json"],
    ]) {
      const r = await zester(args);
      expect(r.code, `${args.join(" ")}\n${r.stderr}`).toBe(0);
      expect(ids(r)).toEqual(["web-01", "web-02"]);
    }
  });

  it("names a bad option, a bad value and a missing function", async () => {
    const bad = await zester(["--timout", "5", "*", "test.ping"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe(
      'zester: unknown option --timout (did you mean "--timeout"?); see zester --help\n',
    );
    const value = await zester(["-t", "soon", "*", "test.ping"]);
    expect(value.stderr).toBe('zester: -t must be a positive number of seconds, not "soon"\n');
    const out = await zester(["*", "test.ping", "--out", "jsno"]);
    expect(out.stderr).toBe(
      'zester: --out must be text, json, yaml, highstate or nested, not "jsno" (did you mean "json"?)\n',
    );
    const missing = await zester(["-t", "5"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^zester: missing target or function\n/);
  });
});

describe("unknown functions", () => {
  it("are refused before anything is sent: exit 1 and a did-you-mean, even with no bus at all", async () => {
    const r = await zester(["*", "test.pnig"], { ZESTER_NATS_URL: "tls://127.0.0.1:1" });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('zester: unknown function "test.pnig" (did you mean "test.ping"?)\n');
    const fam = await zester(["*", "nosuch.thing"], { ZESTER_NATS_URL: "tls://127.0.0.1:1" });
    expect(fam.code).toBe(1);
    expect(fam.stderr).toMatch(/^zester: unknown function "nosuch\.thing"/);
  });
});

describe("nodegroups from master.yaml", () => {
  it("N@ targets a group, a list group and a group of groups, also inside compounds", async () => {
    const webs = await zester(["N@webs", "test.ping", "--format", "json"]);
    expect(webs.code, webs.stderr).toBe(0);
    expect(ids(webs)).toEqual(["web-01", "web-02"]);
    const pair = await zester(["N@pair", "test.ping", "--format", "json"]);
    expect(ids(pair)).toEqual(["db-01", "web-01"]);
    const all = await zester(["N@all and not web-02", "test.ping", "--format", "json"]);
    expect(ids(all)).toEqual(["db-01", "web-01"]);
  });

  it("refuses an unknown group with the defined ones, and a group that includes itself", async () => {
    const r = await zester(["N@web", "test.ping"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^zester: invalid target: target: unknown nodegroup "web" at column 1 \(did you mean "webs"\?\); defined: webs, pair, all, loop, loop2\n/,
    );
    const loop = await zester(["N@loop", "test.ping"]);
    expect(loop.code).toBe(1);
    expect(loop.stderr).toContain('nodegroup "loop" includes itself (loop -> loop2 -> loop)');
  });
});

describe("-b/--batch", () => {
  it("runs one job per peel, at most N at a time, and prints every peel's result", async () => {
    const r = await zester(["-b", "1", "-v", "*", "test.ping", "--format", "json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(ids(r)).toEqual(["db-01", "web-01", "web-02"]);
    const jids = [...r.stderr.matchAll(/^Executing job with jid (\S+) on 1 peel: (\S+)$/gm)];
    expect(jids.map((m) => m[2]).sort()).toEqual(["db-01", "web-01", "web-02"]);
    expect(new Set(jids.map((m) => m[1])).size).toBe(3);
    expect(r.stderr).toMatch(/^Batch of 1 over 3 peels: db-01, web-01, web-02$/m);
  });

  it("takes a percentage (rounded down, at least one) and refuses nonsense", async () => {
    const r = await zester(["--batch", "50%", "-v", "web-*", "test.ping"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^Batch of 1 over 2 peels/m);
    expect(r.stdout).toMatch(/^Batch of 1 done: 2 peels, 2 succeeded, 0 failed, 0 unreachable$/m);
    const bad = await zester(["-b", "0", "*", "test.ping"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe(
      'zester: --batch must be a number of peels (10) or a percentage of the matched ones (25%), not "0"\n',
    );
  });
});

describe("the CLI's config file", () => {
  it("~/.config/zester/config.yaml sets defaults that env and flags override", async () => {
    const dir = join(work, ".config", "zester");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "config.yaml"), "format: json\ntimeout: 20\n");
    try {
      const r = await zester(["web-01", "test.ping"]);
      expect(r.code, r.stderr).toBe(0);
      expect(ids(r)).toEqual(["web-01"]);
      const text = await zester(["web-01", "test.ping"], { ZESTER_FORMAT: "text" });
      expect(text.stdout).toMatch(/^web-01:\n {4}True$/m);
      const flag = await zester(["web-01", "test.ping", "--out", "yaml"], { ZESTER_FORMAT: "text" });
      expect(flag.stdout).toMatch(/^- peel_id: web-01$/m);
      await writeFile(join(dir, "config.yaml"), "format: json\ntimout: 20\n");
      const typo = await zester(["web-01", "test.ping"]);
      expect(typo.code).toBe(1);
      expect(typo.stderr).toBe(
        `zester: ${join(dir, "config.yaml")}:2:1: unknown key "timout" (did you mean "timeout"?)\n`,
      );
    } finally {
      await rm(join(work, ".config"), { recursive: true, force: true });
    }
  });
});

describe("a closed pipe", () => {
  it("ends the command quietly when the reader goes away (zester ... | head)", async () => {
    const child = spawn(process.execPath, [ZESTER, "local", "cmd.run", "seq 300000"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString("utf8");
    });
    // Read one chunk, then close our end, as `head -1` does.
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    expect(stderr).toBe("");
    expect(code).toBe(0);
  });
});
