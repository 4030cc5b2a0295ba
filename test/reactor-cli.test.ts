/**
 * `zester reactor test|log|stats` through the built CLI against a real server, master and peel.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Master } from "../src/master/master.js";
import type { Peel } from "../src/peel/peel.js";
import type { ReactorStats } from "../src/reactor/reactor.js";
import type { ReactorTestReply } from "../src/reactor/service.js";
import { requireBuilt } from "./support/built.js";
import { type CliResult, cliJson, fleetCliOptions, runCli } from "./support/cli.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { startTestPeel } from "./support/peel.js";
import { waitFor } from "./support/wait.js";

const ZESTER = join(resolve(import.meta.dirname, ".."), "dist/bin/zester.js");
const _quiet = { info: () => {}, warn: () => {}, error: () => {} };

let nats: StartedNats;
let work: string;
let master: Master;
let peel: Peel;

function zester(...args: string[]): Promise<CliResult> {
  return runCli(ZESTER, args, fleetCliOptions(nats, work));
}

beforeAll(async () => {
  requireBuilt(ZESTER);
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-reactor-cli-"));
  const dir = join(work, "reactor");
  await mkdir(join(dir, "deploy"), { recursive: true });
  await writeFile(join(dir, "top.zy"), "- '*/myco/deploy/finished':\n    - deploy/nginx\n");
  await writeFile(
    join(dir, "deploy", "nginx.zy"),
    [
      "apply_nginx:",
      "  dispatch.state:",
      "    target: \"{{ event.data.target | default('web-*') }}\"",
      "    sls: nginx",
      "{% if event.data.broken is defined %}",
      "oops:",
      "  dispatch.modul: {target: web-01, function: test.ping}",
      "{% endif %}",
      "",
    ].join("\n"),
  );
  master = await startTestMaster(nats, { reactorDir: dir, statesDir: join(work, "no-states") });
  peel = await startTestPeel(nats, "web-01", work, new Set([master.publicKey]));
}, 60_000);

afterAll(async () => {
  await peel?.stop().catch(() => {});
  await master?.stop().catch(() => {});
  await nats?.stop();
  await rm(work, { recursive: true, force: true });
});

describe("zester reactor (real server, master and peel)", () => {
  it("test prints the actions an event would take, and takes none", async () => {
    const r = await zester(
      "reactor",
      "test",
      "web-01/myco/deploy/finished",
      "target=web-01",
      "--format",
      "json",
    );
    expect(r.code, r.stderr).toBe(0);
    const reply = cliJson<ReactorTestReply>(r);
    expect(reply.reactions).toHaveLength(1);
    const [a] = reply.reactions[0]!.actions;
    expect([a!.block, a!.action, a!.plan]).toEqual([
      "apply_nginx",
      "dispatch.state",
      { target: "web-01", function: "state.apply", args: ["nginx"], kwargs: {}, test: false },
    ]);
    const text = await zester("reactor", "test", "web-01/myco/deploy/finished");
    expect(text.stdout).toMatch(
      /\*\/myco\/deploy\/finished → deploy\/nginx\.zy: ok\n.*apply_nginx: dispatch\.state/s,
    );
    expect((await zester("job", "list", "--format", "json")).stdout.trim()).toBe("[]");
  });

  it("test reports an invalid reaction with file:line:column and exit 2", async () => {
    const r = await zester("reactor", "test", "_admin/myco/deploy/finished", "broken=1");
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/deploy\/nginx\.zy: invalid/);
    expect(r.stdout).toMatch(
      /deploy\/nginx\.zy:\d+:3: oops: unknown action "dispatch\.modul" \(did you mean "dispatch\.module"\?\)/,
    );
    const none = await zester("reactor", "test", "_admin/other/thing");
    expect([none.code, none.stdout]).toEqual([
      0,
      expect.stringMatching(/^no rule matches _admin\/other\/thing/),
    ]);
    const bad = await zester("reactor", "test", "nonsense");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/<origin>\/<tag>/);
  });

  it("log shows a reaction with its job id, and stats count it", async () => {
    const sent = await zester("event", "send", "myco/deploy/finished", "target=web-01");
    expect(sent.code, sent.stderr).toBe(0);
    const log = await waitFor(
      "the reaction in reactor log",
      async () => {
        const r = await zester("reactor", "log", "--format", "json");
        const rows = cliJson<{ tag: string; data: { actions: { jid?: string }[] } }[]>(r);
        return rows.find((x) => x.tag === "reactor/reaction") ? r : undefined;
      },
      { ms: 20_000, intervalMs: 300 },
    );
    const rows = cliJson<{ tag: string; data: { match_key: string; actions: { jid?: string }[] } }[]>(log);
    const rec = rows.find((x) => x.tag === "reactor/reaction")!;
    expect(rec.data.match_key).toBe("_admin/myco/deploy/finished");
    const jid = rec.data.actions[0]!.jid!;
    const show = await zester("job", "show", jid, "--format", "json");
    expect(show.code, show.stderr).toBe(0);
    const text = await zester("reactor", "log");
    expect(text.stdout).toContain(`job ${jid}`);
    const stats = cliJson<ReactorStats[]>(await zester("reactor", "stats", "--format", "json"));
    expect(stats.map((s) => [s.master, s.jobs >= 1])).toEqual([[master.id, true]]);
  });
});

describe("zester reactor test with a broken reactor dir", () => {
  it("tests the live rules, lists the dir's errors with file:line:col and exits 2", async () => {
    const top = join(work, "reactor", "top.zy");
    await writeFile(
      top,
      "- '*/myco/deploy/finished':\n    - deploy/nginx\n- '_admin/x': {react: [nginx], throtle: 5s}\n",
    );
    try {
      const r = await zester("reactor", "test", "web-01/myco/deploy/finished");
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/the reactor dir has errors and was not published/);
      expect(r.stderr).toMatch(/top\.zy:3:\d+: unknown rule key "throtle" \(did you mean "throttle"\?\)/);
      expect(r.stderr).toMatch(
        /top\.zy:3:\d+: reaction file for "nginx" not found.*did you mean "deploy\/nginx"\?/,
      );
      expect(r.stdout).toMatch(/deploy\/nginx\.zy: ok/);
    } finally {
      await writeFile(top, "- '*/myco/deploy/finished':\n    - deploy/nginx\n");
    }
  });
});
