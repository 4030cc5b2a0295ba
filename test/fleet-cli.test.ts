/**
 * The fleet CLI driven as an operator would: the built `zester` and `zester-master` binaries
 * against a real nats-server and real peels, asserting on JSON output and exit codes.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPairFromCreds } from "../src/auth/signing.js";
import { openKv } from "../src/bus/bootstrap.js";
import { connect } from "../src/bus/connect.js";
import { peelInboxPrefix } from "../src/bus/names.js";
import { parseKsuid } from "../src/jobs/ksuid.js";
import { Peel } from "../src/peel/peel.js";
import { requireBuilt } from "./support/built.js";
import { type CliResult, fleetCliOptions, cliJson as json, runCli } from "./support/cli.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { type WaitOptions, waitFor } from "./support/wait.js";

const ROOT = resolve(import.meta.dirname, "..");
const ZESTER = join(ROOT, "dist/bin/zester.js");
const ZESTER_MASTER = join(ROOT, "dist/bin/zester-master.js");

let nats: StartedNats;
let work: string;
let master: ChildProcess | undefined;
let masterLog = "";
const peels: Peel[] = [];
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

/** The built CLI, run without blocking this process (the peels live in it). */
function zester(...args: string[]): Promise<CliResult> {
  return runCli(ZESTER, args, fleetCliOptions(nats, work));
}

async function startPeel(id: string, trusted: Set<string>): Promise<void> {
  const p = new Peel({
    id,
    servers: nats.url,
    credsFile: await nats.credsFile(id),
    caFile: nats.caFile,
    cacheDir: join(work, id),
    customFactsDir: join(work, "no-facts"),
    trustedMasters: trusted,
    logger: quiet,
  });
  await p.start();
  await p.waitConnected();
  peels.push(p);
}

/** Polls slower than the default: most conditions here run the CLI once a try. */
const WAIT: WaitOptions = { ms: 20_000, intervalMs: 100, context: () => `master log:\n${masterLog}` };

type Run = { peel_id: string; success: boolean; status: string; error: string | null; return?: unknown };

beforeAll(async () => {
  requireBuilt(ZESTER);
  requireBuilt(ZESTER_MASTER);
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-fleet-cli-"));
  const states = join(work, "states");
  await mkdir(states);
  await writeFile(join(states, "top.zy"), "base:\n  '*': []\n");

  master = spawn(
    process.execPath,
    [
      ZESTER_MASTER,
      "--nats-url",
      nats.url,
      "--auth-dir",
      nats.authDir,
      "--id",
      "cli-master",
      "--states-dir",
      states,
      "--unreachable-after",
      "1",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  master.stderr?.on("data", (d: Buffer) => {
    masterLog += d.toString("utf8");
  });
  await waitFor("zester-master to start", async () => /running \(signing key/.test(masterLog), WAIT);

  const trusted = new Set([
    keyPairFromCreds(await readFile(await nats.credsFile("master"), "utf8")).getPublicKey(),
  ]);
  await startPeel("web-01", trusted);
  await startPeel("web-02", trusted);
  // web-03 is known by its facts but never comes online.
  const nc = await connect({
    servers: nats.url,
    credsFile: await nats.credsFile("web-03"),
    caFile: nats.caFile,
    inboxPrefix: peelInboxPrefix("web-03"),
  });
  await (await openKv(nc, "facts")).put("web-03", JSON.stringify({ id: "web-03", os: "linux" }));
  await nc.drain();
  // The master indexes facts from a KV watch: wait until a dispatch reaches all three.
  await waitFor(
    "the master to see 3 peels",
    async () => {
      const r = await zester("web-0*", "test.ping", "--async", "--format", "json");
      return r.code === 0 && json<{ peels: string[] }>(r).peels.length === 3;
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

describe("zester '<target>' <function>", () => {
  it("runs test.ping on two peels: JSON array, exit 0", async () => {
    const r = await zester("L@web-01,web-02", "test.ping", "--format", "json");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const runs = json<Run[]>(r);
    expect(runs).toEqual([
      expect.objectContaining({
        peel_id: "web-01",
        success: true,
        status: "success",
        error: null,
        return: true,
      }),
      expect.objectContaining({
        peel_id: "web-02",
        success: true,
        status: "success",
        error: null,
        return: true,
      }),
    ]);
  });

  it("streams text output and ends with the job summary", async () => {
    const r = await zester("L@web-01,web-02", "test.ping");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^web-0[12]:\n {4}True\n/);
    expect(r.stdout).toContain("web-01:\n    True");
    expect(r.stdout).toContain("web-02:\n    True");
    expect(r.stdout).toMatch(/Job [0-9A-Za-z]{27} complete: 2 peels, 2 succeeded, 0 failed, 0 unreachable/);
  });

  it("passes key=value arguments, keeping 0644 a string", async () => {
    const r = await zester("web-01", "test.echo", "text=0644", "--format", "json");
    expect(r.code).toBe(0);
    expect(json<Run[]>(r)[0]!.return).toBe("0644");
    const n = await zester("web-01", "test.echo", "text=[1, 2]", "--format", "json");
    expect(json<Run[]>(n)[0]!.return).toEqual([1, 2]);
  });

  it("exits 3 when a targeted peel is unreachable and none failed", async () => {
    const t0 = Date.now();
    const r = await zester("web-0*", "test.ping", "--format", "json");
    expect(r.code).toBe(3);
    expect(Date.now() - t0).toBeLessThan(15_000);
    const runs = json<Run[]>(r);
    expect(runs.map((x) => [x.peel_id, x.status])).toEqual([
      ["web-01", "success"],
      ["web-02", "success"],
      ["web-03", "unreachable"],
    ]);
    expect(runs[2]!.error).toMatch(/unreachable/);
  });

  it("exits 2 when a peel fails", async () => {
    const r = await zester("web-01", "test.fail_without_changes", "--format", "json");
    expect(r.code).toBe(2);
    const runs = json<Run[]>(r);
    expect(runs[0]).toMatchObject({ peel_id: "web-01", success: false, status: "failed" });
  });

  it("a failing cmd.run fails through the fleet: exit 2, output merged in order, retcode named", async () => {
    const r = await zester("web-01", "cmd.run", "echo out; echo err >&2; exit 3", "--format", "json");
    expect(r.code).toBe(2);
    const runs = json<Run[]>(r);
    expect(runs[0]).toMatchObject({
      peel_id: "web-01",
      success: false,
      status: "failed",
      return: "out\nerr",
    });
    expect(runs[0]!.error).toMatch(/retcode 3/);
    const missing = await zester("web-01", "cmd.run", "zester-no-such-command", "--format", "json");
    expect(missing.code).toBe(2);
    expect(json<Run[]>(missing)[0]!.return).toMatch(/not found/);
    const ignored = await zester("web-01", "cmd.run", "exit 3", "ignore_retcode=true", "--format", "json");
    expect(ignored.code).toBe(0);
  });

  it("exits 1 with a clear message when the target matches nothing", async () => {
    const r = await zester("nosuch-*", "test.ping", "--format", "json");
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe("zester: no peels match nosuch-*\n");
  });

  it("exits 1 on a usage error", async () => {
    const r = await zester("web-01", "test.ping", "--format", "xml");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--format must be text, json, yaml, highstate or nested, not "xml"/);
  });
});

describe("zester job and zester peel", () => {
  it("job show names the state tree revision a state job was pinned to", async () => {
    const a = await zester("web-01", "state.highstate", "--test", "--async");
    expect(a.code, a.stderr).toBe(0);
    const jid = a.stdout.trim();
    await waitFor(
      "the state job to finish",
      async () => {
        const s = await zester("job", "show", jid, "--format", "json");
        return s.code === 0 && json<{ status: string }>(s).status !== "running";
      },
      WAIT,
    );
    const rec = json<{ states_rev?: number }>(await zester("job", "show", jid, "--format", "json"));
    expect(rec.states_rev).toBeGreaterThanOrEqual(1);
    const text = await zester("job", "show", jid);
    expect(text.stdout).toMatch(new RegExp(`^States: +revision ${rec.states_rev}$`, "m"));
  });

  it("--async prints the jid; job show, list and active read it back", async () => {
    const a = await zester("L@web-01,web-02", "test.ping", "--async");
    expect(a.code).toBe(0);
    const jid = a.stdout.trim();
    expect(jid).toMatch(/^[0-9A-Za-z]{27}$/);
    await waitFor(
      "the job to finish",
      async () => {
        const s = await zester("job", "show", jid, "--format", "json");
        return s.code === 0 && json<{ status: string }>(s).status === "complete";
      },
      WAIT,
    );
    const show = json<{
      jid: string;
      fun: string;
      peels: Record<string, string>;
      returns: Record<string, unknown>;
    }>(await zester("job", "show", jid, "--format", "json"));
    expect(show).toMatchObject({
      jid,
      fun: "test.ping",
      peels: { "web-01": "success", "web-02": "success" },
    });
    expect(Object.keys(show.returns)).toEqual(["web-01", "web-02"]);
    expect(show.returns["web-01"]).toMatchObject({ success: true, return: true });

    const text = await zester("job", "show", jid);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/Status: +complete/);
    expect(text.stdout).toContain("web-02:\n    True");
    // A test.ping reads no state tree, so no revision is pinned or shown.
    expect(text.stdout).not.toMatch(/^States:/m);

    const list = json<{ jid: string }[]>(await zester("job", "list", "--format", "json", "--limit", "50"));
    expect(list.map((j) => j.jid)).toContain(jid);
    // Newest second first; within one second the order is by creation time (jobs-store test).
    const seconds = list.map((j) => parseKsuid(j.jid).timestamp.getTime());
    expect(seconds).toEqual([...seconds].sort((a, b) => b - a));
    const active = json<{ jid: string }[]>(await zester("job", "active", "--format", "json"));
    expect(active.map((j) => j.jid)).not.toContain(jid);
  });

  it("job kill cancels a running job", async () => {
    const a = await zester("L@web-01,web-02", "test.sleep", "length=30", "--async", "--timeout", "60");
    const jid = a.stdout.trim();
    await waitFor(
      "the job to be active",
      async () => {
        const act = json<{ jid: string }[]>(await zester("job", "active", "--format", "json"));
        return act.some((j) => j.jid === jid);
      },
      WAIT,
    );
    const k = await zester("job", "kill", jid);
    expect(k.stderr).toBe("");
    expect(k.code).toBe(0);
    expect(k.stdout).toMatch(new RegExp(`^job ${jid} canceled`));
    const show = json<{ status: string }>(await zester("job", "show", jid, "--format", "json"));
    expect(show.status).toBe("canceled");
    const again = await zester("job", "kill", jid);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already finished \(canceled\)/);
    const bad = await zester("job", "show", "nope");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/not a job id/);
  });

  it("peel list shows every known peel with os, online and last seen", async () => {
    const r = await zester("peel", "list", "--format", "json");
    expect(r.code).toBe(0);
    const list = json<{ id: string; os: string | null; online: boolean; last_seen: string | null }[]>(r);
    expect(list.map((p) => [p.id, p.online])).toEqual([
      ["web-01", true],
      ["web-02", true],
      ["web-03", false],
    ]);
    expect(list[0]!.os).toBeTruthy();
    // A peel without a heartbeat is last seen when it last wrote its facts, and says so.
    expect(list[2]).toMatchObject({ os: "linux", host: null, last_seen_from: "facts" });
    expect(Date.now() - Date.parse(list[2]!.last_seen!)).toBeLessThan(600_000);
    expect(list[0]).toMatchObject({ last_seen_from: "heartbeat" });
    expect(typeof (list[0] as { host?: unknown }).host).toBe("string");
    const text = await zester("peel", "list");
    expect(text.stdout.split("\n")[0]).toMatch(/^ID\s+HOST\s+OS\s+ONLINE\s+LAST SEEN\s+LAST RUN$/);
    expect(text.stdout).toMatch(/^web-01\s+\S+\s+.+\s+yes\s+\d+[smhd] ago\s+/m);
    // An offline peel shows no last run (test/peel-last-run.test.ts covers the column itself).
    expect(text.stdout).toMatch(/^web-03\s+-\s+linux\s+no\s+\d+[smhd] ago \(facts\)\s+-$/m);
  });
});
