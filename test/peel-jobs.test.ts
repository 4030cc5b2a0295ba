import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createUser } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPairFromCreds, signCancel, signCommand } from "../src/auth/signing.js";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import { connect } from "../src/bus/connect.js";
import { subjects } from "../src/bus/names.js";
import type { Ack, Command, PeelHeartbeat, PeelReturn } from "../src/jobs/wire.js";
import { Peel, type PeelConfig } from "../src/peel/peel.js";
import { testCommand } from "./support/commands.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { nextEvent } from "./support/wait.js";

let nats: StartedNats;
let master: NatsConnection;
let signer: ReturnType<typeof keyPairFromCreds>;
let work: string;
const peels: Peel[] = [];

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-peel-jobs-"));
  const creds = await nats.credsFile("master");
  master = await connect({ servers: nats.url, caFile: nats.caFile, credsFile: creds });
  await bootstrap(master);
  signer = keyPairFromCreds(await readFile(creds, "utf8"));
});

afterAll(async () => {
  for (const p of peels) await p.stop();
  await master?.close();
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

interface Logged {
  peel: Peel;
  lines: string[];
}

async function startPeel(id: string, over: Partial<PeelConfig> = {}): Promise<Logged> {
  const lines: string[] = [];
  const peel = new Peel({
    id,
    servers: nats.url,
    credsFile: await nats.credsFile(id),
    caFile: nats.caFile,
    authDir: nats.authDir,
    cacheDir: join(work, `cache-${id}`),
    customFactsDir: join(work, `custom-facts-${id}`),
    factsIntervalMs: 3_600_000,
    heartbeatMs: 3_600_000,
    logger: {
      info: (m) => lines.push(`INFO ${m}`),
      warn: (m) => lines.push(`WARN ${m}`),
      error: (m) => lines.push(`ERROR ${m}`),
    },
    ...over,
  });
  peels.push(peel);
  await peel.start();
  await peel.waitConnected(10_000);
  return { peel, lines };
}

function command(peel: string, fun: string, args: unknown[] = [], kwargs: Record<string, unknown> = {}) {
  return testCommand(signer, peel, fun, args, kwargs);
}

interface Exchange {
  acks: Ack[];
  /** Resolves with the return; also records the order of messages seen. */
  ret: Promise<PeelReturn>;
  order: string[];
}

/** Listens on the job's subjects (as the master does), then publishes the command. */
async function send(cmd: Command | Record<string, unknown>, subjectPeel?: string): Promise<Exchange> {
  const jid = String((cmd as Command).jid);
  const acks: Ack[] = [];
  const order: string[] = [];
  const sub = master.subscribe(`zester.job.${jid}.>`);
  const ret = (async () => {
    for await (const m of sub) {
      const kind = m.subject.split(".")[3]!;
      order.push(kind);
      if (kind === "ack") acks.push(decode<Ack>(m.data));
      if (kind === "return") {
        sub.unsubscribe();
        return decode<PeelReturn>(m.data);
      }
    }
    throw new Error("subscription closed without a return");
  })();
  // Refused commands never get a return; their pending promise must not count as unhandled.
  ret.catch(() => {});
  await master.flush();
  master.publish(subjects.cmd(subjectPeel ?? String((cmd as Command).peel)), encode(cmd));
  return { acks, ret, order };
}

async function returnInKv(jid: string, peel: string): Promise<PeelReturn | undefined> {
  const e = await (await openKv(master, "job-returns")).get(`${jid}.${peel}`);
  return e && e.operation === "PUT" ? decode<PeelReturn>(e.value) : undefined;
}

describe("peel over real NATS", () => {
  it("answers test.ping: ack, then return, stored in job-returns; heartbeat and facts are there", async () => {
    const { peel } = await startPeel("ping-01");
    const cmd = command("ping-01", "test.ping");
    const x = await send(cmd);
    const ret = await x.ret;
    expect(x.order).toEqual(["ack", "return"]);
    expect(x.acks).toEqual([{ v: 1, jid: cmd.jid, queued: 0 }]);
    expect(ret).toMatchObject({
      jid: cmd.jid,
      peel: "ping-01",
      fun: "test.ping",
      success: true,
      return: true,
    });
    expect(await returnInKv(cmd.jid, "ping-01")).toMatchObject({ success: true, return: true });

    const hb = await (await openKv(master, "peel-heartbeat")).get("ping-01");
    expect(decode<PeelHeartbeat>(hb!.value)).toMatchObject({ peel: "ping-01", version: "0.1.0" });
    const facts = await (await openKv(master, "facts")).get("ping-01");
    expect(decode<Record<string, unknown>>(facts!.value).id).toBe("ping-01");
    expect(peel.connected).toBe(true);
  });

  it("runs facts.get with a colon path, sys.list_functions and reports unknown functions", async () => {
    await startPeel("fn-01");
    const get = await (await send(command("fn-01", "grains.get", ["memory:total"]))).ret;
    expect(get.success).toBe(true);
    expect(typeof get.return).toBe("number");
    const list = await (await send(command("fn-01", "sys.list_functions", ["state"]))).ret;
    expect(list.return).toEqual(expect.arrayContaining(["state.apply", "state.highstate", "state.show_sls"]));
    const bad = await (await send(command("fn-01", "test.pnig"))).ret;
    expect(bad).toMatchObject({
      success: false,
      error: expect.stringMatching(/unknown function.*test\.ping/),
    });
  });

  it("refuses unsigned, altered, untrusted, stale and misaddressed commands without running them", async () => {
    const { peel, lines } = await startPeel("sec-01");
    const marker = (n: string) => join(work, `sec-01-${n}`);
    const attempts: [string, Record<string, unknown>, RegExp, string?][] = [];
    const base = (n: string) => command("sec-01", "cmd.run", [`touch ${marker(n)}`]);

    attempts.push(["unsigned", { ...base("unsigned"), sig: "" }, /unsigned command/]);
    const altered = command("sec-01", "cmd.run", ["true"]);
    attempts.push(["altered", { ...altered, args: [`touch ${marker("altered")}`] }, /bad signature/]);
    attempts.push(["untrusted", { ...signCommand(createUser(), base("untrusted")) }, /untrusted key/]);
    const stale = signCommand(signer, { ...base("stale"), ts: Date.now() - 10 * 60_000 });
    attempts.push(["stale", { ...stale }, /stale command/]);
    // Signed for another peel, delivered onto this peel's subject.
    attempts.push([
      "misaddressed",
      { ...command("other-01", "cmd.run", [`touch ${marker("misaddressed")}`]) },
      /addressed to other-01/,
      "sec-01",
    ]);

    for (const [name, cmd, reason, subjectPeel] of attempts) {
      const refused = nextEvent<{ reason: string }>(peel, "refused");
      await send(cmd, subjectPeel ?? "sec-01");
      expect((await refused).reason, name).toMatch(reason);
      expect(
        lines.some((l) => l.startsWith("WARN refused command") && reason.test(l)),
        name,
      ).toBe(true);
    }
    // Give any (wrongly) started command time to show itself.
    await new Promise((r) => setTimeout(r, 300));
    for (const [name] of attempts) expect(existsSync(marker(name)), name).toBe(false);
    for (const [, cmd] of attempts) expect(await returnInKv(String(cmd.jid), "sec-01")).toBeUndefined();
  });

  it("refuses a replayed command, also after the peel restarted", async () => {
    const { peel } = await startPeel("replay-01");
    const marker = join(work, "replay-01-ran");
    const cmd = command("replay-01", "cmd.run", [`touch ${marker}`]);
    expect((await (await send(cmd)).ret).success).toBe(true);
    expect(existsSync(marker)).toBe(true);
    await rm(marker);

    const refused = nextEvent<{ reason: string }>(peel, "refused");
    await send(cmd);
    expect((await refused).reason).toMatch(/replayed/);

    await peel.stop();
    const again = await startPeel("replay-01");
    const refusedAfterRestart = nextEvent<{ reason: string }>(again.peel, "refused");
    await send(cmd);
    expect((await refusedAfterRestart).reason).toMatch(/replayed/);
    await new Promise((r) => setTimeout(r, 300));
    expect(existsSync(marker)).toBe(false);
    const store = JSON.parse(await readFile(join(work, "cache-replay-01", "jids.json"), "utf8"));
    expect(Object.keys(store.jids)).toContain(cmd.jid);
  });

  it("records read-only job ids too (written behind the call): a replayed test.ping is refused after a restart", async () => {
    const { peel } = await startPeel("replay-02");
    const cmd = command("replay-02", "test.ping");
    expect((await (await send(cmd)).ret).return).toBe(true);
    await peel.stop();
    const store = JSON.parse(await readFile(join(work, "cache-replay-02", "jids.json"), "utf8"));
    expect(Object.keys(store.jids)).toContain(cmd.jid);
    const again = await startPeel("replay-02");
    const refused = nextEvent<{ reason: string }>(again.peel, "refused");
    await send(cmd);
    expect((await refused).reason).toMatch(/replayed/);
    expect(await returnInKv(String(cmd.jid), "replay-02")).toBeDefined();
  });

  it("answers busy when the queue is full, and cancels running and queued jobs", async () => {
    const { peel } = await startPeel("busy-01", { queueLimit: 1 });
    const a = await send(command("busy-01", "cmd.run", ["sleep 30"]));
    const b = await send(command("busy-01", "cmd.run", ["sleep 30"]));
    const c = await send(command("busy-01", "cmd.run", ["sleep 30"]));
    const cRet = await c.ret;
    expect(cRet).toMatchObject({ success: false, error: "busy: 2 jobs queued" });
    // Read-only work does not wait behind the queue.
    const ping = await (await send(command("busy-01", "test.ping"))).ret;
    expect(ping.success).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(a.acks[0]?.queued).toBe(0);
    expect(b.acks[0]?.queued).toBe(1);

    const started = Date.now();
    const aJid = a.acks[0]!.jid;
    const bJid = b.acks[0]!.jid;
    master.publish(subjects.jobCancel(bJid, "busy-01"), encode(signCancel(signer, bJid, "busy-01")));
    expect(await b.ret).toMatchObject({ success: false, error: "canceled" });
    master.publish(subjects.jobCancel(aJid, "busy-01"), encode(signCancel(signer, aJid, "busy-01")));
    expect(await a.ret).toMatchObject({ success: false, error: "canceled" });
    expect(Date.now() - started).toBeLessThan(10_000);
    // The queue is free again.
    expect((await (await send(command("busy-01", "cmd.run", ["echo next"]))).ret).return).toBe("next");
    expect(peel.connected).toBe(true);
  });

  it("cancels a running state run through the engine's abort signal", async () => {
    await startPeel("cancel-01");
    const x = await send(command("cancel-01", "test.succeed_with_changes", ["slow"], { sleep: 30 }));
    const deadline = Date.now() + 5000;
    while (x.acks.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200));
    // An unsigned or forged cancel is refused: the job keeps running.
    const xJid = x.acks[0]!.jid;
    let settled = false;
    void x.ret.then(() => {
      settled = true;
    });
    master.publish(subjects.jobCancel(xJid, "cancel-01"));
    master.publish(
      subjects.jobCancel(xJid, "cancel-01"),
      encode(signCancel(createUser(), xJid, "cancel-01")),
    );
    master.publish(
      subjects.jobCancel(xJid, "cancel-01"),
      encode(signCancel(signer, "2AAAAAAAAAAAAAAAAAAAAAAAAAA", "cancel-01")),
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(settled).toBe(false);
    const started = Date.now();
    master.publish(subjects.jobCancel(xJid, "cancel-01"), encode(signCancel(signer, xJid, "cancel-01")));
    expect(await x.ret).toMatchObject({ success: false, error: "canceled" });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("publishes facts on start and then only when they changed", async () => {
    const { peel } = await startPeel("facts-01");
    const kv = await openKv(master, "facts");
    const first = await kv.get("facts-01");
    expect(first).not.toBeNull();
    expect(await peel.refreshFacts()).toBe(false);
    expect(await peel.refreshFacts()).toBe(false);
    expect((await kv.get("facts-01"))!.revision).toBe(first!.revision);

    await mkdir(join(work, "custom-facts-facts-01"), { recursive: true });
    await writeFile(join(work, "custom-facts-facts-01", "dc.yaml"), "datacenter:\n  value: lab-7\n", "utf8");
    expect(await peel.refreshFacts()).toBe(true);
    const after = await kv.get("facts-01");
    expect(after!.revision).toBeGreaterThan(first!.revision);
    expect(decode<Record<string, unknown>>(after!.value).datacenter).toBe("lab-7");
  });

  it("runs two peels in one process, each seeing only its own commands", async () => {
    const one = await startPeel("twin-01");
    const two = await startPeel("twin-02");
    const seen: Record<string, string[]> = { "twin-01": [], "twin-02": [] };
    for (const [id, p] of [
      ["twin-01", one.peel],
      ["twin-02", two.peel],
    ] as const) {
      p.on("return", (r: PeelReturn) => seen[id]!.push(r.jid));
      p.on("refused", (r: { jid?: string }) => seen[id]!.push(`refused ${r.jid}`));
    }
    const c1 = command("twin-01", "test.echo", ["for one"]);
    const c2 = command("twin-02", "test.echo", ["for two"]);
    const [r1, r2] = await Promise.all([(await send(c1)).ret, (await send(c2)).ret]);
    expect(r1).toMatchObject({ peel: "twin-01", return: "for one" });
    expect(r2).toMatchObject({ peel: "twin-02", return: "for two" });
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).toEqual({ "twin-01": [c1.jid], "twin-02": [c2.jid] });
  });
});
