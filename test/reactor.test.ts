/**
 * The reactor on a real server with real masters and peels: rules and reaction files from a
 * reactor dir, jobs dispatched with deterministic ids, Salt's local.* form, chained events and
 * loop protection, all-or-nothing validation, last-good rules, replay after every master was
 * down, max age, and exactly-once with two masters.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encode } from "../src/bus/codec.js";
import { eventSubject, makeEvent, publishEvent, watchEvents, type ZesterEvent } from "../src/events/index.js";
import { JobStore } from "../src/jobs/store.js";
import type { JobRecord } from "../src/jobs/wire.js";
import type { Master } from "../src/master/master.js";
import type { Peel } from "../src/peel/peel.js";
import { reactionId } from "../src/reactor/ids.js";
import type { ReactionRecord, ReactorOptions } from "../src/reactor/reactor.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { startTestPeel } from "./support/peel.js";
import { waitFor } from "./support/wait.js";

const _quiet = { info: () => {}, warn: () => {}, error: () => {} };

let nats: StartedNats;
let work: string;
let reactorDir: string;
let admin: NatsConnection;
let store: JobStore;
const masters: Master[] = [];
const peels: Peel[] = [];
const logs: string[] = [];

async function writeTree(files: Record<string, string>): Promise<void> {
  await rm(reactorDir, { recursive: true, force: true });
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(reactorDir, path)), { recursive: true });
    await writeFile(join(reactorDir, path), text);
  }
}

const TREE: Record<string, string> = {
  "top.zy": `
- 'web-*/myco/deploy/finished':
    - deploy/nginx
- '_admin/salt/ping':
    - salt-ping
- '_admin/loop/*':
    - loop
- '_master/loop/*':
    - loop
- '_admin/mixed':
    - mixed
- '_admin/burst/*':
    - burst
- '_admin/peelloop/start':
    - peel-loop
- 'web-01/peelloop/*':
    - peel-loop
`,
  "deploy/nginx.zy": `
apply_nginx:
  dispatch.state:
    target: 'web-*'
    sls: nginx
    timeout: 30
note:
  log: "deploy {{ event.data.version }} finished on {{ event.peel }}"
`,
  "salt-ping.sls": `
ping_web01:
  local.test.ping:
    - tgt: 'web-01'
    - tgt_type: glob
`,
  "loop.zy": `
again:
  event.send:
    tag: loop/again
    data: {from: "{{ event.tag }}"}
`,
  // Templated, so only rendering for an event can find the typo (a plain file fails the publish).
  "mixed.zy": `
good:
  dispatch.module: {target: web-01, function: test.ping}
bad:
  dispatch.module: {target: "{{ event.data.target }}", fucntion: test.ping}
`,
  // A loop through a peel: the reaction has web-01 send the event that fires it again.
  "peel-loop.zy": `
resend:
  dispatch.module: {target: web-01, function: event.send, args: [peelloop/again]}
`,
  "burst.zy": `
ping:
  dispatch.module: {target: web-01, function: test.ping}
`,
};

async function startMaster(id: string, reactor: ReactorOptions = {}): Promise<Master> {
  const m = await startTestMaster(nats, {
    id,
    reactorDir,
    statesDir: join(work, "states"),
    reactor: { ackWaitMs: 3_000, maxDepth: 3, ...reactor },
    log: (line) => logs.push(`${id}: ${line}`),
  });
  masters.push(m);
  return m;
}

async function stopMaster(m: Master): Promise<void> {
  await m.stop();
  masters.splice(masters.indexOf(m), 1);
}

async function startPeel(id: string, trusted: Set<string>): Promise<void> {
  const p = await startTestPeel(nats, id, work, trusted);
  peels.push(p);
}

/** Reaction records (`_master/reactor/reaction`) for one event, from the stream. */
async function recordsFor(eventId: string, n: number): Promise<ReactionRecord[]> {
  const out: ReactionRecord[] = [];
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 20_000);
  await watchEvents(admin, {
    glob: "_master/reactor/reaction",
    since: { kind: "all" },
    signal: ac.signal,
    onEvent: (w) => {
      const r = w.event.data as unknown as ReactionRecord;
      if (r.event_id === eventId) out.push(r);
      return out.length < n;
    },
  });
  clearTimeout(timer);
  return out;
}

function job(jid: string): Promise<JobRecord | undefined> {
  return store.get(jid).then((s) => s?.record);
}

const context = () => logs.slice(-40).join("\n");

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-reactor-"));
  reactorDir = join(work, "reactor");
  await mkdir(join(work, "states"), { recursive: true });
  await writeFile(join(work, "states", "nginx.zy"), "nginx-config:\n  test.succeed_without_changes: []\n");
  await writeFile(join(work, "states", "top.zy"), "base:\n  '*': []\n");
  await writeTree(TREE);
  const m = await startMaster("m1");
  admin = await nats.connectAs("admin");
  store = await JobStore.open(admin);
  const trusted = new Set([m.publicKey]);
  await startPeel("web-01", trusted);
  await startPeel("web-02", trusted);
  await waitFor("the master to see both peels", () => m.fleet.resolve("web-*").length === 2);
}, 60_000);

afterAll(async () => {
  for (const p of peels) await p.stop().catch(() => {});
  for (const m of masters) await m.stop().catch(() => {});
  await admin?.close().catch(() => {});
  await nats?.stop();
  await rm(work, { recursive: true, force: true });
});

describe("reactor (real server, masters and peels)", () => {
  it("runs state.apply nginx on the web peels when a peel sends myco/deploy/finished", async () => {
    const peelNc = await nats.connectAs("web-01");
    const { event } = await publishEvent(peelNc, {
      origin: "web-01",
      tag: "myco/deploy/finished",
      data: { version: "1.2.3" },
    });
    await peelNc.close();
    const jid = reactionId(event.id, "web-*/myco/deploy/finished", "deploy/nginx.zy", "apply_nginx");
    const rec = await waitFor(
      "the reaction's job to finish",
      async () => {
        const r = await job(jid);
        return r && r.status !== "running" ? r : undefined;
      },
      { ms: 30_000, context },
    );
    expect(rec.fun).toBe("state.apply");
    expect(rec.args).toEqual(["nginx"]);
    expect(Object.keys(rec.peels).sort()).toEqual(["web-01", "web-02"]);
    expect(rec.status).toBe("complete");
    expect(rec.user).toBe("reactor:web-01/myco/deploy/finished");
    const [r] = await recordsFor(event.id, 1);
    expect(r!.outcome).toBe("ok");
    expect(r!.actions.map((a) => [a.block, a.action, a.ok])).toEqual([
      ["apply_nginx", "dispatch.state", true],
      ["note", "log", true],
    ]);
    expect(logs.join("\n")).toContain("deploy 1.2.3 finished on web-01");
  });

  it("runs Salt's local.<function> form unchanged", async () => {
    const { event } = await publishEvent(admin, { origin: "_admin", tag: "salt/ping" });
    const jid = reactionId(event.id, "_admin/salt/ping", "salt-ping.sls", "ping_web01");
    const rec = await waitFor(
      "the local.test.ping job",
      async () => {
        const r = await job(jid);
        return r && r.status !== "running" ? r : undefined;
      },
      { ms: 20_000, context },
    );
    expect([rec.fun, rec.target, rec.status]).toEqual(["test.ping", "web-01", "complete"]);
  });

  it("stops chained events at the maximum depth and counts the drop", async () => {
    const m = masters[0]!;
    const before = m.reactor!.stats().drops.depth;
    await publishEvent(admin, { origin: "_admin", tag: "loop/start" });
    const chain: ZesterEvent[] = [];
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 15_000);
    await watchEvents(admin, {
      glob: "_master/loop/again",
      since: { kind: "all" },
      signal: ac.signal,
      onEvent: (w) => {
        chain.push(w.event);
        return chain.length < 4;
      },
    });
    clearTimeout(timer);
    // depth 1..3 are handled (maxDepth 3); the depth-4 event is made but never reacted to.
    expect(chain.map((e) => e.depth)).toEqual([1, 2, 3, 4]);
    await waitFor("the depth drop to be counted", () => m.reactor!.stats().drops.depth === before + 1, {
      context,
    });
    await new Promise((r) => setTimeout(r, 500));
    expect(m.reactor!.stats().drops.depth).toBe(before + 1);
  });

  it("stops a loop through a peel at the maximum depth: the reaction's job carries the depth to the peel's event.send", async () => {
    const m = masters[0]!;
    const before = m.reactor!.stats().drops.depth;
    const start = await publishEvent(admin, { origin: "_admin", tag: "peelloop/start" });
    const chain: ZesterEvent[] = [];
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 30_000);
    await watchEvents(admin, {
      glob: "web-01/peelloop/again",
      since: { kind: "all" },
      signal: ac.signal,
      onEvent: (w) => {
        chain.push(w.event);
        return chain.length < 4;
      },
    });
    clearTimeout(timer);
    // The job a depth-0 event makes is depth 1; its event.send is depth 1; ... the depth-4 event is
    // over maxDepth 3 and makes no job.
    expect(chain.map((e) => e.depth)).toEqual([1, 2, 3, 4]);
    const first = await job(reactionId(start.event.id, "_admin/peelloop/start", "peel-loop.zy", "resend"));
    expect(first?.event_depth).toBe(1);
    await waitFor("the depth drop to be counted", () => m.reactor!.stats().drops.depth === before + 1, {
      context,
    });
    const last = chain[3]!;
    expect(await job(reactionId(last.id, "web-01/peelloop/*", "peel-loop.zy", "resend"))).toBeUndefined();
  });

  it("runs none of a reaction file's actions when one block is invalid, and says where", async () => {
    const { event } = await publishEvent(admin, {
      origin: "_admin",
      tag: "mixed",
      data: { target: "web-01" },
    });
    const [r] = await recordsFor(event.id, 1);
    expect(r!.outcome).toBe("invalid");
    expect(r!.actions).toEqual([]);
    expect(r!.error).toMatch(
      /mixed\.zy:5:\d+: bad: dispatch.module: unknown field "fucntion" \(did you mean "function"\?\)/,
    );
    expect(await job(reactionId(event.id, "_admin/mixed", "mixed.zy", "good"))).toBeUndefined();
  });

  it("keeps the last good rules when the reactor dir breaks, and says so as an event", async () => {
    const m = masters[0]!;
    const rev = m.reactor!.reactor.rules.rev;
    await writeTree({ ...TREE, "top.zy": `${TREE["top.zy"]}\n- '_admin/new': [missing-file]\n` });
    const r = await m.reactor!.publish();
    expect(r?.published).toBe(false);
    expect(r?.problems?.[0]?.message).toMatch(/reaction file for "missing-file" not found/);
    expect(m.reactor!.reactor.rules.rev).toBe(rev);
    const rejected: ZesterEvent[] = [];
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 10_000);
    await watchEvents(admin, {
      glob: "_master/reactor/rejected",
      since: { kind: "all" },
      signal: ac.signal,
      onEvent: (w) => {
        rejected.push(w.event);
        return false;
      },
    });
    clearTimeout(timer);
    expect(String((rejected[0]!.data.errors as string[])[0])).toMatch(
      /^top\.zy:\d+:\d+: reaction file for "missing-file"/,
    );
    // The old rules still react.
    const { event } = await publishEvent(admin, { origin: "_admin", tag: "salt/ping" });
    await waitFor(
      "a job from the kept rules",
      () => job(reactionId(event.id, "_admin/salt/ping", "salt-ping.sls", "ping_web01")),
      { context },
    );
    await writeTree(TREE);
  });

  it("replays events sent while every master was down, and skips those past the max age", async () => {
    const m1 = masters[0]!;
    const trusted = m1.publicKey;
    await stopMaster(m1);
    const fresh = await publishEvent(admin, { origin: "_admin", tag: "burst/while-down" });
    // An event made an hour ago (a stale queued event): stored now, too old to act on.
    const old = {
      ...makeEvent({ origin: "_admin", tag: "burst/stale" }),
      ts: new Date(Date.now() - 3_600_000).toISOString(),
    };
    admin.publish(eventSubject("_admin", old.tag), encode(old));
    await admin.flush();
    const m = await startMaster("m1", { maxAgeMs: 600_000 });
    expect(m.publicKey).toBe(trusted);
    const jid = reactionId(fresh.event.id, "_admin/burst/*", "burst.zy", "ping");
    await waitFor("the replayed event's job", () => job(jid), { ms: 20_000, context });
    await waitFor("the stale event to be dropped", () => m.reactor!.stats().drops.age >= 1, { context });
    expect(await job(reactionId(old.id, "_admin/burst/*", "burst.zy", "ping"))).toBeUndefined();
  });

  it("handles each event once with two masters sharing the consumer", async () => {
    const m2 = await startMaster("m2");
    await waitFor("m2 to see both peels", () => m2.fleet.resolve("web-*").length === 2);
    const sent: string[] = [];
    for (let i = 0; i < 40; i++)
      sent.push((await publishEvent(admin, { origin: "_admin", tag: `burst/${i}` })).event.id);
    const jids = sent.map((id) => reactionId(id, "_admin/burst/*", "burst.zy", "ping"));
    await waitFor("40 reaction jobs", async () => (await Promise.all(jids.map(job))).every(Boolean), {
      ms: 30_000,
      context,
    });
    const owners = new Set((await Promise.all(jids.map(job))).map((r) => r!.master));
    const stats = masters.map((m) => m.reactor!.stats());
    expect(stats.reduce((n, s) => n + s.duplicates, 0)).toBe(0);
    expect(owners.size).toBeGreaterThanOrEqual(1);
    // Each event reacted exactly once across both masters.
    const handled = new Map<string, number>();
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 5_000);
    await watchEvents(admin, {
      glob: "_master/reactor/reaction",
      since: { kind: "all" },
      signal: ac.signal,
      onEvent: (w) => {
        const r = w.event.data as unknown as ReactionRecord;
        if (sent.includes(r.event_id)) handled.set(r.event_id, (handled.get(r.event_id) ?? 0) + 1);
        return handled.size < sent.length;
      },
    });
    clearTimeout(timer);
    expect([...handled.values()].every((n) => n === 1)).toBe(true);
    expect(handled.size).toBe(40);
  });
});
