/**
 * The health listener: `/healthz`, `/readyz`, Prometheus `/metrics` for a real master and a real
 * peel on a real nats-server, with counters that move when a job runs.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPairFromCreds } from "../src/auth/signing.js";
import { decode, encode } from "../src/bus/codec.js";
import { subjects } from "../src/bus/names.js";
import { daemonLogger } from "../src/cli/daemon-log.js";
import { publishEvent } from "../src/events/index.js";
import { type MasterHealth, masterHealth } from "../src/health/master-metrics.js";
import { Metrics } from "../src/health/metrics.js";
import { type PeelHealth, peelHealth } from "../src/health/peel-metrics.js";
import { type HealthServer, parseListen, startHealthServer } from "../src/health/server.js";
import { JobStore } from "../src/jobs/store.js";
import type { DispatchReply } from "../src/jobs/wire.js";
import type { Master } from "../src/master/master.js";
import { Peel } from "../src/peel/peel.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

let nats: StartedNats;
let work: string;
let master: Master;
let peel: Peel;
let admin: NatsConnection;
let mh: MasterHealth;
let ph: PeelHealth;
const servers: HealthServer[] = [];
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

async function get(server: HealthServer, path: string, method = "GET") {
  const r = await fetch(`http://127.0.0.1:${server.port}${path}`, { method });
  return { code: r.status, type: r.headers.get("content-type"), body: await r.text() };
}

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-health-"));
  // A reactor with one rule whose reaction works and one whose reaction is invalid for an event.
  const reactorDir = join(work, "reactor");
  await mkdir(reactorDir, { recursive: true });
  await writeFile(
    join(reactorDir, "top.zy"),
    "- '_admin/health/ok':\n    - ok\n- '_admin/health/bad':\n    - bad\n",
  );
  await writeFile(join(reactorDir, "ok.zy"), "note:\n  log: fine\n");
  await writeFile(
    join(reactorDir, "bad.zy"),
    'ping:\n  dispatch.module: {target: "{{ event.data.target }}", fucntion: test.ping}\n',
  );
  master = await startTestMaster(nats, {
    id: "health-master",
    statesDir: join(work, "no-states"),
    reactorDir,
    reactor: { maxDepth: 2 },
  });
  const trusted = new Set([
    keyPairFromCreds(await readFile(await nats.credsFile("master"), "utf8")).getPublicKey(),
  ]);
  peel = new Peel({
    id: "web-01",
    servers: nats.url,
    credsFile: await nats.credsFile("web-01"),
    caFile: nats.caFile,
    cacheDir: join(work, "web-01"),
    customFactsDir: join(work, "no-facts"),
    trustedMasters: trusted,
    logger: quiet,
  });
  ph = peelHealth(peel);
  await peel.start();
  await peel.waitConnected();
  mh = await masterHealth(master);
  servers.push(await startHealthServer({ host: "127.0.0.1", port: 0, metrics: mh.metrics, ready: mh.ready }));
  servers.push(await startHealthServer({ host: "127.0.0.1", port: 0, metrics: ph.metrics, ready: ph.ready }));
  admin = await nats.connectAs("admin");
  await waitFor("the master to see web-01", () => master.fleet.peels().includes("web-01") || undefined);
}, 60_000);

afterAll(async () => {
  for (const s of servers) await s.close();
  mh?.stop();
  ph?.detach();
  await peel?.stop().catch(() => {});
  await master?.stop();
  await admin?.drain().catch(() => {});
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("the health listener", () => {
  it("answers /healthz, /readyz and refuses other paths and methods", async () => {
    const [m, p] = servers as [HealthServer, HealthServer];
    expect(await get(m, "/healthz")).toMatchObject({ code: 200, body: "ok\n" });
    expect(await get(m, "/readyz")).toMatchObject({ code: 200, body: "ready\n" });
    expect(await get(p, "/readyz")).toMatchObject({ code: 200, body: "ready\n" });
    expect(await get(p, "/nope")).toMatchObject({
      code: 404,
      body: "not found: try /healthz, /readyz or /metrics\n",
    });
    expect(await get(p, "/healthz", "POST")).toMatchObject({ code: 405 });
  });

  it("counts a job on both sides: dispatched, finished, returned, run on the peel", async () => {
    const [m, p] = servers as [HealthServer, HealthServer];
    const reply = decode<DispatchReply>(
      (
        await admin.request(
          subjects.dispatch,
          encode({ target: "web-01", fun: "test.ping", args: [], kwargs: {} }),
          {
            timeout: 10_000,
          },
        )
      ).data,
    );
    expect(reply.jid).toBeDefined();
    const store = await JobStore.open(admin);
    await waitFor("the job to finish", async () => {
      const r = await store.get(reply.jid!);
      return r && r.record.status !== "running" ? r : undefined;
    });
    let last = "";
    const scraped = await waitFor(
      "the master's counters",
      async () => {
        const r = await get(m, "/metrics");
        last = r.body;
        return /^zester_master_jobs_total\{status="complete"\} 1$/m.test(r.body) ? r : undefined;
      },
      { context: () => `\n${last}` },
    );
    expect(scraped.type).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(scraped.body).toMatch(/^# TYPE zester_master_jobs_total counter$/m);
    expect(scraped.body).toMatch(/^zester_master_jobs_created_total 1$/m);
    expect(scraped.body).toMatch(/^zester_master_returns_total\{result="success"\} 1$/m);
    expect(scraped.body).toMatch(/^zester_master_job_peels_total\{status="success"\} 1$/m);
    expect(scraped.body).toMatch(/^zester_master_peels\{state="online"\} 1$/m);
    expect(scraped.body).toMatch(/^zester_master_job_duration_seconds_count 1$/m);
    expect(scraped.body).toMatch(/^zester_master_bus_reconnects_total 0$/m);
    const peelText = (await get(p, "/metrics")).body;
    expect(peelText).toMatch(/^zester_peel_runs_total\{origin="job",result="success"\} 1$/m);
    expect(peelText).toMatch(/^zester_peel_connected 1$/m);
    expect(peelText).toMatch(/^zester_peel_facts_published_total [1-9]\d*$/m);
  });

  it("counts the reactor's reactions by outcome and its drops by reason", async () => {
    const [m] = servers as [HealthServer];
    await publishEvent(admin, { origin: "_admin", tag: "health/ok" });
    await publishEvent(admin, { origin: "_admin", tag: "health/bad", data: { target: "web-01" } });
    await publishEvent(admin, { origin: "_admin", tag: "health/ok", depth: 3 });
    let last = "";
    const body = await waitFor(
      "the reactor's counters",
      async () => {
        last = (await get(m, "/metrics")).body;
        return /^zester_master_reactor_drops_total\{reason="depth"\} 1$/m.test(last) &&
          /^zester_master_reactions_total\{outcome="invalid"\} 1$/m.test(last)
          ? last
          : undefined;
      },
      { context: () => `\n${last}` },
    );
    expect(body).toMatch(/^# TYPE zester_master_reactions_total counter$/m);
    expect(body).toMatch(/^zester_master_reactions_total\{outcome="ok"\} 1$/m);
    expect(body).toMatch(/^zester_master_reactions_total\{outcome="failed"\} 0$/m);
    expect(body).toMatch(/^zester_master_reactor_events_total 3$/m);
    for (const reason of ["rate", "throttle", "breaker", "age"]) {
      expect(body).toMatch(new RegExp(`^zester_master_reactor_drops_total\\{reason="${reason}"\\} 0$`, "m"));
    }
    expect(body).toMatch(/^zester_master_reactor_open_breakers 0$/m);
  });

  it("a peel that is not connected is alive but not ready", async () => {
    const lonely = new Peel({
      id: "web-02",
      servers: "tls://127.0.0.1:1",
      credsFile: await nats.credsFile("web-02"),
      caFile: nats.caFile,
      cacheDir: join(work, "web-02"),
      customFactsDir: join(work, "no-facts"),
      logger: quiet,
    });
    const h = peelHealth(lonely);
    const s = await startHealthServer({ port: 0, host: "127.0.0.1", metrics: h.metrics, ready: h.ready });
    try {
      expect(await get(s, "/healthz")).toMatchObject({ code: 200 });
      expect(await get(s, "/readyz")).toMatchObject({
        code: 503,
        body: "not ready: not connected to NATS\n",
      });
      expect((await get(s, "/metrics")).body).toMatch(/^zester_peel_connected 0$/m);
    } finally {
      await s.close();
      h.detach();
    }
  });
});

describe("metrics text and listen addresses", () => {
  it("renders counters with escaped labels, scrape-time gauges and cumulative histograms", async () => {
    const m = new Metrics();
    m.counter("a_total", "A").inc({ why: 'say "hi"\n' }, 2);
    m.gaugeFn("b", "B", () => 3);
    const h = m.histogram("c_seconds", "C", [1, 5]);
    h.observe(0.5);
    h.observe(3);
    m.gaugeFn("d", "D", () => {
      throw new Error("no bus");
    });
    expect(await m.render()).toBe(
      [
        "# HELP a_total A",
        "# TYPE a_total counter",
        'a_total{why="say \\"hi\\"\\n"} 2',
        "# HELP b B",
        "# TYPE b gauge",
        "b 3",
        "# HELP c_seconds C",
        "# TYPE c_seconds histogram",
        'c_seconds_bucket{le="1"} 1',
        'c_seconds_bucket{le="5"} 2',
        'c_seconds_bucket{le="+Inf"} 2',
        "c_seconds_sum 3.5",
        "c_seconds_count 2",
        "# d unavailable: no bus",
        "",
      ].join("\n"),
    );
    expect(() => m.counter("a_total", "again")).toThrow("metric a_total is registered twice");
  });

  it("parses HOST:PORT, :PORT, PORT and [v6]:PORT", () => {
    expect(parseListen("127.0.0.1:9641")).toEqual({ host: "127.0.0.1", port: 9641 });
    expect(parseListen(":9642")).toEqual({ port: 9642 });
    expect(parseListen("9642")).toEqual({ port: 9642 });
    expect(parseListen("[::1]:9641")).toEqual({ host: "::1", port: 9641 });
    expect(parseListen("localhost")).toBeUndefined();
    expect(parseListen("1:70000")).toBeUndefined();
  });

  it("json logs: one object per line with level, component and id", () => {
    const lines: string[] = [];
    const log = daemonLogger("json", "peel", "web-01", (l) => lines.push(l));
    log.warn('disk "full"');
    const rec = JSON.parse(lines[0]!);
    expect(rec).toMatchObject({ level: "warn", component: "peel", id: "web-01", msg: 'disk "full"' });
    expect(Number.isNaN(Date.parse(rec.ts))).toBe(false);
    expect(lines[0]!.endsWith("}\n")).toBe(true);
    const text: string[] = [];
    daemonLogger("text", "peel", "web-01", (l) => text.push(l)).info("started");
    expect(text[0]).toMatch(/^\d{4}-\d\d-\d\dT\S+Z INFO peel web-01: started\n$/);
  });
});
