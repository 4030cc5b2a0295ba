/**
 * `zester event send|watch` and the peel function `event.send`, driven through the built CLI
 * against a real server, a real master and a real peel.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Master } from "../src/master/master.js";
import type { Peel } from "../src/peel/peel.js";
import { requireBuilt } from "./support/built.js";
import { type CliResult, cliJson, fleetCliOptions, runCli } from "./support/cli.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { startTestPeel } from "./support/peel.js";

const ZESTER = join(resolve(import.meta.dirname, ".."), "dist/bin/zester.js");
const _quiet = { info: () => {}, warn: () => {}, error: () => {} };

let nats: StartedNats;
let work: string;
let master: Master;
let peel: Peel;

function zester(...args: string[]): Promise<CliResult> {
  return runCli(ZESTER, args, fleetCliOptions(nats, work));
}

interface EventLine {
  id: string;
  tag: string;
  origin: string;
  depth: number;
  data: Record<string, unknown>;
  match_key: string;
  seq: number;
}

function lines(r: CliResult): EventLine[] {
  expect(r.code, r.stderr).toBe(0);
  return r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as EventLine);
}

beforeAll(async () => {
  requireBuilt(ZESTER);
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-events-cli-"));
  master = await startTestMaster(nats, { statesDir: join(work, "no-states") });
  peel = await startTestPeel(nats, "web-01", work, new Set([master.publicKey]));
}, 60_000);

afterAll(async () => {
  await peel?.stop().catch(() => {});
  await master?.stop().catch(() => {});
  await nats?.stop();
  await rm(work, { recursive: true, force: true });
});

describe("zester event (real server, master and peel)", () => {
  it("sends operator and peel events and replays them with --since 0", async () => {
    const sent = await zester("event", "send", "myco/deploy/start", "who=ops", "n=3", "--format", "json");
    expect(sent.code, sent.stderr).toBe(0);
    const ev = cliJson<EventLine>(sent);
    expect([ev.origin, ev.tag, ev.data]).toEqual(["_admin", "myco/deploy/start", { who: "ops", n: 3 }]);

    const fromPeel = await zester(
      "web-01",
      "event.send",
      "myco/deploy/finished",
      "version=1.2.3",
      "--format",
      "json",
    );
    expect(fromPeel.code, fromPeel.stderr).toBe(0);
    const [run] = cliJson<{ success: boolean; return: { tag: string; seq: number } }[]>(fromPeel);
    expect(run!.success).toBe(true);
    expect(run!.return.tag).toBe("myco/deploy/finished");

    const watched = lines(
      await zester("event", "watch", "*/myco/deploy/*", "--since", "0", "--count", "2", "--format", "json"),
    );
    expect(watched.map((e) => e.match_key)).toEqual([
      "_admin/myco/deploy/start",
      "web-01/myco/deploy/finished",
    ]);
    expect(watched[1]!.data).toEqual({ version: "1.2.3" });
    expect(watched[1]!.seq).toBe(run!.return.seq);

    const text = await zester("event", "watch", "_admin/myco/*", "--since", "0", "--count", "1");
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^\S+Z #\d+ _admin\/myco\/deploy\/start \{"who":"ops","n":3\}\n$/);
    // Four CLI processes in a row: on a loaded 2-core machine that alone can take 30 s.
  }, 120_000);

  /** Stream sequence of a fresh operator event: what the master announces next comes after it. */
  async function mark(): Promise<number> {
    const sent = await zester("event", "send", "test/mark", "--format", "json");
    expect(sent.code, sent.stderr).toBe(0);
    return cliJson<EventLine>(sent).seq;
  }

  async function jobEventsSince(seq: number, count: number): Promise<EventLine[]> {
    const watched = lines(
      await zester(
        "event",
        "watch",
        "_master/job/**",
        "--since",
        String(seq),
        "--count",
        String(count),
        "--format",
        "json",
      ),
    );
    for (const e of watched) e.tag = e.tag.replace(/job\/\w+\//, "job/J/");
    return watched;
  }

  it("shows the master's job events with their status", async () => {
    const from = await mark();
    const ping = await zester("web-01", "test.ping", "--format", "json");
    expect(ping.code, ping.stderr).toBe(0);
    // By default a job is announced twice, never once per return: `done` carries every peel.
    const events = await jobEventsSince(from, 2);
    expect(events.map((e) => e.tag)).toEqual(["job/J/new", "job/J/done"]);
    expect(events[1]!.data).toMatchObject({
      status: "complete",
      fun: "test.ping",
      peels: { "web-01": "success" },
    });
  });

  it("announces each return too when the master runs with job return events", async () => {
    await master.stop();
    master = await startTestMaster(nats, { statesDir: join(work, "no-states"), jobReturnEvents: true });
    const from = await mark();
    const ping = await zester("web-01", "test.ping", "--format", "json");
    expect(ping.code, ping.stderr).toBe(0);
    const events = await jobEventsSince(from, 3);
    expect(events.map((e) => e.tag)).toEqual(["job/J/new", "job/J/ret/web-01", "job/J/done"]);
    expect(events[1]!.data).toMatchObject({ peel: "web-01", fun: "test.ping", success: true });
  }, 60_000);

  it("watches live events and stops after --count", async () => {
    const watching = zester("event", "watch", "_admin/live/*", "--count", "1", "--format", "json");
    let result: CliResult | undefined;
    void watching.then((r) => {
      result = r;
    });
    // The watcher subscribes on its own schedule: keep sending until it has seen one.
    for (let i = 0; i < 100 && result === undefined; i++) {
      await zester("event", "send", "live/ping", `i=${i}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const got = lines(await watching);
    expect(got).toHaveLength(1);
    expect(got[0]!.match_key).toBe("_admin/live/ping");
  });

  it("refuses bad tags, data and options with a clear message and exit 1", async () => {
    const dotted = await zester("event", "send", "myco.deploy");
    expect(dotted.code).toBe(1);
    expect(dotted.stderr).toMatch(/invalid event tag "myco.deploy".*dots/);
    const data = await zester("event", "send", "myco/x", "novalue");
    expect(data.code).toBe(1);
    expect(data.stderr).toMatch(/key=value \(got "novalue"\)/);
    const since = await zester("event", "watch", "--since", "last tuesday");
    expect(since.code).toBe(1);
    expect(since.stderr).toMatch(/--since "last tuesday"/);
    const noTag = await zester("web-01", "event.send", "--format", "json");
    expect(noTag.code).toBe(2);
    expect(cliJson<{ error: string }[]>(noTag)[0]!.error).toMatch(/event.send needs a tag/);
  });
});
