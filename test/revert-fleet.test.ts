/**
 * A bad config rollout reverted fleet-wide: the built `zester-master` and CLI against a real
 * nats-server (TLS, JWT auth) and two real peels. One job changes a file on both peels, then
 * `zester 'web-*' state.revert <jid>` restores both; a peel whose file changed again since the
 * job is refused (exit 2) until force=true.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPairFromCreds } from "../src/auth/signing.js";
import { Peel } from "../src/peel/peel.js";
import { requireBuilt } from "./support/built.js";
import { type CliResult, cliJson, fleetCliOptions, runCli } from "./support/cli.js";
import { type MasterProcess, startMasterProcess } from "./support/master-process.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

const ROOT = resolve(import.meta.dirname, "..");
const ZESTER = join(ROOT, "dist/bin/zester.js");
const IDS = ["web-01", "web-02"];
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

let nats: StartedNats;
let work: string;
let master: MasterProcess | undefined;
const peels: Peel[] = [];

function zester(...args: string[]): Promise<CliResult> {
  return runCli(ZESTER, args, fleetCliOptions(nats, work));
}

type Result = {
  name: string;
  result: boolean;
  changed: boolean;
  comment: string;
  pending?: boolean;
  diff?: string;
};
type Run = {
  peel_id: string;
  success: boolean;
  error: string | null;
  results: Result[];
  revert?: { run: string; states: number; cannot: number };
  return?: unknown;
};
const runs = (r: CliResult) => cliJson<Run[]>(r, () => master?.log() ?? "");
const conf = (id: string) => join(work, "etc", id, "app.conf");
const GOOD = "listen = 80\ntimeout = 30\n";

beforeAll(async () => {
  requireBuilt(ZESTER);
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-revert-fleet-"));
  const states = join(work, "states");
  await mkdir(states);
  await writeFile(join(states, "top.zy"), "base:\n  '*': []\n");
  // The rollout: a new config (with a typo that breaks the service) and a restart command.
  await writeFile(
    join(states, "app.zy"),
    `app-config:
  file.managed:
    - name: ${work}/etc/{{ grains['id'] }}/app.conf
    - contents: |
        listen = 8O
        timeout = 30
    - mode: "0600"
reload:
  cmd.run:
    - name: "true"
    - onchanges:
      - file: app-config
`,
  );
  master = await startMasterProcess(nats, ["--id", "revert-master", "--states-dir", states]);
  const trusted = new Set([
    keyPairFromCreds(await readFile(await nats.credsFile("master"), "utf8")).getPublicKey(),
  ]);
  for (const id of IDS) {
    await mkdir(join(work, "etc", id), { recursive: true });
    const p = new Peel({
      id,
      servers: nats.url,
      credsFile: await nats.credsFile(id),
      caFile: nats.caFile,
      cacheDir: join(work, "peels", id),
      customFactsDir: join(work, "no-facts"),
      trustedMasters: trusted,
      logger: quiet,
    });
    await p.start();
    await p.waitConnected();
    peels.push(p);
  }
  await waitFor(
    "the master to see both peels",
    async () => {
      const r = await zester("web-*", "test.ping", "--format", "json");
      return r.code === 0 && runs(r).length === 2;
    },
    { ms: 30_000, intervalMs: 200, context: () => master?.log() ?? "" },
  );
}, 300_000);

afterAll(async () => {
  for (const p of peels) await p.stop().catch(() => {});
  await master?.kill("SIGTERM");
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function rollout(): Promise<string> {
  for (const id of IDS) await writeFile(conf(id), GOOD, { mode: 0o644 });
  const r = await zester("web-*", "state.apply", "app", "--format", "json");
  expect(r.code, r.stdout + r.stderr).toBe(0);
  const out = runs(r);
  const jids = new Set(out.map((x) => x.revert?.run));
  expect(jids.size).toBe(1);
  for (const x of out) expect(x.revert).toMatchObject({ states: 1, cannot: 1 });
  for (const id of IDS) expect(await readFile(conf(id), "utf8")).toContain("listen = 8O");
  return [...jids][0]!;
}

describe("state.revert across a fleet", () => {
  it("reverts one job on both peels: --test shows the diff, the revert restores bytes and mode", async () => {
    const jid = await rollout();
    const dry = await zester("web-*", "state.revert", jid, "--test", "--format", "json");
    expect(dry.code, dry.stdout).toBe(0);
    for (const x of runs(dry)) {
      const r = x.results.find((s) => s.name === "file.managed:app-config")!;
      expect(r.pending).toBe(true);
      expect(r.diff).toContain("-listen = 8O\n+listen = 80\n");
    }
    for (const id of IDS) expect(await readFile(conf(id), "utf8")).toContain("8O");

    const listed = await zester("web-01", "state.runs", "--format", "json");
    expect((runs(listed)[0]!.return as { run: string }[]).map((x) => x.run)).toContain(jid);

    const done = await zester("web-*", "state.revert", jid, "--format", "json");
    expect(done.code, done.stdout).toBe(0);
    for (const x of runs(done)) {
      expect(x.success).toBe(true);
      const cmd = x.results.find((s) => s.name === "cmd.run:reload")!;
      expect(cmd.comment).toMatch(/^cannot be reverted: /);
    }
    for (const id of IDS) {
      expect(await readFile(conf(id), "utf8")).toBe(GOOD);
      expect((await stat(conf(id))).mode & 0o777).toBe(0o644);
    }
    const text = await zester("web-*", "state.revert", jid);
    expect(text.stdout).toContain("Nothing to revert");
  });

  it("refuses on the peel whose file changed since the job (exit 2), force=true reverts it", async () => {
    const jid = await rollout();
    await writeFile(conf("web-02"), "listen = 81\n");
    const r = await zester("web-*", "state.revert", jid, "--format", "json");
    expect(r.code).toBe(2);
    const [one, two] = runs(r).sort((a, b) => a.peel_id.localeCompare(b.peel_id));
    expect(one!.success).toBe(true);
    expect(two!.success).toBe(false);
    expect(two!.results.find((s) => s.name === "file.managed:app-config")!.comment).toMatch(
      /refused: file .*web-02\/app\.conf changed since the run \(content/,
    );
    expect(await readFile(conf("web-01"), "utf8")).toBe(GOOD);
    expect(await readFile(conf("web-02"), "utf8")).toBe("listen = 81\n");
    const forced = await zester("web-02", "state.revert", jid, "force=true", "--format", "json");
    expect(forced.code, forced.stdout).toBe(0);
    expect(await readFile(conf("web-02"), "utf8")).toBe(GOOD);
  });

  it("names a jid the peel does not keep", async () => {
    const r = await zester("web-01", "state.revert", "3N1icV4mJvoN69iJWGiGRWFN1fR", "--format", "json");
    expect(r.code).toBe(2);
    expect(runs(r)[0]!.error).toMatch(/no run 3N1icV4mJvoN69iJWGiGRWFN1fR is kept here/);
  });
});
