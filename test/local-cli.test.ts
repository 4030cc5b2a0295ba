import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireBuilt } from "./support/built.js";
import { type CliResult, runCli } from "./support/cli.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester.js");
const STATES = join(ROOT, "test/fixtures/states");

let tmp: string;
let settingsFile: string;

beforeAll(async () => {
  requireBuilt(BIN);
  tmp = await mkdtemp(join(tmpdir(), "zester-local-"));
  settingsFile = join(tmp, "settings.yaml");
  await writeFile(settingsFile, `paths:\n  root: ${tmp}\nsite:\n  name: Example\n  users: [ann, bob]\n`);
}, 120_000);

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function zester(...args: string[]): Promise<CliResult> {
  return runCli(BIN, ["local", "--states-dir", STATES, ...args], {
    env: { NO_COLOR: "1", ZESTER_CACHE_DIR: join(tmp, "cache") },
  });
}

function json(r: CliResult): Record<string, unknown>[] {
  try {
    return JSON.parse(r.stdout) as Record<string, unknown>[];
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

describe("zester local", () => {
  it("runs execution functions", async () => {
    const ping = await zester("test.ping", "--format", "json");
    expect(ping.code).toBe(0);
    expect(json(ping)[0]).toMatchObject({ success: true, status: "success", return: true, error: null });
    const echo = await zester("test.echo", "hello world", "--format", "json");
    expect(json(echo)[0]!.return).toBe("hello world");
  });

  it("prints through Salt's nested and highstate outputters (--out, Salt's spelling)", async () => {
    const ping = await zester("test.ping", "--id", "web-01", "--out", "nested");
    expect(ping.code).toBe(0);
    expect(ping.stdout).toBe("web-01:\n    True\n");
    const r = await zester(
      "test.configurable_test_state",
      "one",
      "comment=fine",
      "--id",
      "web-01",
      "--out",
      "highstate",
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^web-01:\n----------\n {10}ID: one\n {4}Function: test\.configurable_test_state\n {6}Result: True\n {5}Comment: fine\n {5}Started: \d\d:\d\d:\d\d\.\d{6}\n {4}Duration: [\d.]+ ms\n {5}Changes: {3}\n/,
    );
    expect(r.stdout).toMatch(
      /\nSummary for web-01\n-{12}\nSucceeded: 1 \(changed=1\)\nFailed: {4}0\n-{12}\nTotal states run: {5}1\nTotal run time: +[\d.]+ ms\n$/,
    );
    const bad = await zester("test.ping", "--out", "pretty");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("--format must be text, json, yaml, highstate, nested");
  });

  it("runs a state function directly, keeping key=value 0644 a string", async () => {
    const r = await zester(
      "test.configurable_test_state",
      "one",
      "comment=0644",
      "changes=false",
      "--format",
      "json",
    );
    expect(r.code).toBe(0);
    const res = (json(r)[0]!.results as Record<string, unknown>[])[0]!;
    expect(res).toMatchObject({ name: "test.configurable_test_state:one", comment: "0644", changed: false });
  });

  it("reports an unknown function as a usage error with a suggestion", async () => {
    const r = await zester("test.pingg");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('did you mean "test.ping"');
  });

  it("state.apply: test mode changes nothing, then a real run converges, then nothing to do", async () => {
    const motd = join(tmp, "motd");
    const applyWeb = (...extra: string[]) =>
      zester(
        "state.apply",
        "web",
        "--settings-file",
        settingsFile,
        "--id",
        "cli-web1",
        ...extra,
        "--format",
        "json",
      );
    const dry = await applyWeb("test=true");
    expect(dry.code).toBe(0);
    const dryResults = json(dry)[0]!.results as Record<string, unknown>[];
    expect(dryResults.find((x) => x.id === "web_motd")).toMatchObject({ pending: true, changed: false });
    expect(existsSync(motd)).toBe(false);

    const real = await applyWeb();
    expect(real.code).toBe(0);
    const [peel] = json(real);
    expect(peel).toMatchObject({ peel_id: "cli-web1", success: true, status: "success" });
    const results = peel!.results as Record<string, unknown>[];
    expect(results.map((x) => x.id)).toEqual(
      expect.arrayContaining(["common_ready", "user_ann", "user_bob", "web_motd", "web_notify"]),
    );
    expect(results.find((x) => x.id === "common_ready")!.comment).toBe("common for cli-web1");
    expect(results.find((x) => x.id === "web_notify")).toMatchObject({ changed: true, skipped: false });
    expect(await readFile(motd, "utf8")).toBe("Welcome to Example\n");
    expect((await stat(motd)).mode & 0o777).toBe(0o640);

    const again = await applyWeb();
    const second = json(again)[0]!.results as Record<string, unknown>[];
    expect(second.find((x) => x.id === "web_motd")!.changed).toBe(false);
    expect(second.find((x) => x.id === "web_notify")).toMatchObject({
      skipped: true,
      skip_reason: "onchanges_not_met",
    });
  });

  it("highstate picks sls from top.zy by id", async () => {
    const r = await zester(
      "state.apply",
      "--settings-file",
      settingsFile,
      "--id",
      "other-host",
      "--format",
      "json",
    );
    expect(r.code).toBe(0);
    const ids = (json(r)[0]!.results as Record<string, unknown>[]).map((x) => x.id);
    expect(ids).toEqual(["common_ready"]);
  });

  it("exits 2 when a state fails", async () => {
    const r = await zester("state.apply", "failing", "--format", "json");
    expect(r.code).toBe(2);
    const [peel] = json(r);
    expect(peel).toMatchObject({ success: false, status: "failed" });
    const results = peel!.results as Record<string, unknown>[];
    expect(results.find((x) => x.id === "second")).toMatchObject({
      skipped: true,
      skip_reason: "require_failed",
    });
  });

  it("cmd.run fails on a non-zero exit: exit 2, stdout and stderr merged in order, retcode named", async () => {
    const r = await zester("cmd.run", "echo out; echo err >&2; echo out2; exit 3", "--format", "json");
    expect(r.code).toBe(2);
    expect(json(r)[0]).toMatchObject({ success: false, status: "failed", return: "out\nerr\nout2" });
    expect(json(r)[0]!.error).toMatch(/retcode 3/);
    const text = await zester("cmd.shell", "echo visible; exit 5");
    expect(text.code).toBe(2);
    expect(text.stdout).toContain("visible");
    expect(text.stdout).toMatch(/retcode 5/);
    const missing = await zester("cmd.run", "zester-no-such-command --flag", "--format", "json");
    expect(missing.code).toBe(2);
    expect(json(missing)[0]!.return).toMatch(/zester-no-such-command.*not found/);
    const all = await zester("cmd.run_all", "echo out; echo err >&2; exit 4", "--format", "json");
    expect(all.code).toBe(2);
    expect(json(all)[0]!.return).toEqual({ retcode: 4, stdout: "out", stderr: "err" });
    expect((await zester("cmd.run", "exit 3", "ignore_retcode=true")).code).toBe(0);
    expect((await zester("cmd.run", "exit 3", "success_retcodes=[3]")).code).toBe(0);
    expect((await zester("cmd.retcode", "exit 3", "--format", "json")).code).toBe(0);
  });

  it("cmd.run and cmd.script states fail on a non-zero exit or a missing command, with retcode", async () => {
    const run = await zester("state.single", "cmd.run", "echo out; exit 3", "--format", "json");
    expect(run.code).toBe(2);
    const res = (json(run)[0]!.results as Record<string, unknown>[])[0]!;
    expect(res).toMatchObject({ result: false, changes: { retcode: 3, stdout: "out" } });
    const missing = await zester("state.single", "cmd.run", "zester-no-such-command", "--format", "json");
    expect(missing.code).toBe(2);
    const ok = await zester("state.single", "cmd.run", "exit 3", "success_retcodes=[3]", "--format", "json");
    expect(ok.code).toBe(0);
  });

  it("compile errors: exit 1, file:line:column with a suggestion, nothing executed", async () => {
    const r = await zester("state.apply", "broken", "--settings-file", settingsFile, "--format", "json");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("broken/init.zy:8:7");
    expect(r.stderr).toContain('did you mean "require"');
    expect(json(r)[0]).toMatchObject({ success: false, status: "failed" });
    expect(existsSync(join(tmp, "should-not-exist"))).toBe(false);
  });

  it("state.show_sls and state.show_order print the compiled plan", async () => {
    const sls = await zester(
      "state.show_sls",
      "web",
      "--settings-file",
      settingsFile,
      "--id",
      "cli-web1",
      "--format",
      "json",
    );
    expect(sls.code).toBe(0);
    const states = JSON.parse(sls.stdout) as Record<string, unknown>[];
    const motd = states.find((s) => s.id === "web_motd")!;
    expect(motd).toMatchObject({
      function: "file.managed",
      sls: "web",
      source: "web/init.zy:7:3",
      requisites: [{ require: ["test.show_notification:common_ready"] }],
    });
    expect(motd.params).toMatchObject({ name: join(tmp, "motd"), mode: "0640" });
    const order = await zester(
      "state.show_order",
      "web",
      "--settings-file",
      settingsFile,
      "--id",
      "cli-web1",
      "--format",
      "json",
    );
    const rows = JSON.parse(order.stdout) as { name: string; after: string[] }[];
    const at = (n: string) => rows.findIndex((x) => x.name === n);
    expect(at("file.managed:web_motd")).toBeGreaterThan(at("test.show_notification:common_ready"));
    expect(rows[at("test.succeed_with_changes:web_notify")]!.after).toEqual([
      "onchanges file.managed:web_motd",
    ]);
  });

  it("zester doc shows functions and parameters", async () => {
    const r = await runCli(BIN, ["doc", "test.configurable_test_state"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("test.configurable_test_state (state)");
    expect(r.stdout).toMatch(/changes \(boolean; default true\)/);
  });
});
