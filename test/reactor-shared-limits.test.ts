/**
 * The reactor's limits are shared by every master (the `reactor-limits` bucket): two real masters
 * on one real nats-server share the durable consumer on `events`, and a throttled rule receiving
 * a burst from one source fires exactly once per window across both. With per-master counting
 * each master that handles an event of the burst fires once, so this fails with two firings.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openKv } from "../src/bus/bootstrap.js";
import { publishEvent } from "../src/events/index.js";
import type { Master } from "../src/master/master.js";
import { limitKeys } from "../src/reactor/shared-limits.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

let nats: StartedNats;
let work: string;
let admin: NatsConnection;
const masters: Master[] = [];
const logs: string[] = [];

const RULE = "_admin/storm/*";

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-reactor-limits-"));
  const reactorDir = join(work, "reactor");
  await mkdir(reactorDir, { recursive: true });
  // A window far longer than the test: "once per window" is "once".
  await writeFile(join(reactorDir, "top.zy"), `- '${RULE}':\n    react: [storm]\n    throttle: 1h\n`);
  await writeFile(join(reactorDir, "storm.zy"), 'note:\n  log: "storm {{ event.tag }}"\n');
  for (const id of ["m1", "m2"]) {
    masters.push(
      await startTestMaster(nats, {
        id,
        reactorDir,
        statesDir: join(work, "no-states"),
        reactor: { ackWaitMs: 3_000 },
        log: (line) => logs.push(`${id}: ${line}`),
      }),
    );
  }
  admin = await nats.connectAs("admin");
  await waitFor(
    "both masters to load the rules",
    () => masters.every((m) => m.reactor!.stats().rules === 1),
    {
      ms: 20_000,
    },
  );
}, 60_000);

afterAll(async () => {
  for (const m of masters) await m.stop().catch(() => {});
  await admin?.close().catch(() => {});
  await nats?.stop();
  await rm(work, { recursive: true, force: true });
});

describe("reactor limits shared across masters (real server, two masters)", () => {
  it("a throttled rule fires exactly once for a burst from one source, whichever master handles each event", async () => {
    const context = () => logs.slice(-30).join("\n");
    let sent = 0;
    const stats = () => masters.map((m) => m.reactor!.stats());
    // Every event of the burst either fired the rule or was dropped (counted once it is decided).
    const settled = () =>
      stats().reduce((n, s) => n + s.reactions + s.drops.throttle + s.drops.rate + s.drops.breaker, 0) ===
      sent;
    // Bursts until both masters have handled some of them, so per-master counting would show.
    while (sent < 400 && !stats().every((s) => s.handled > 0)) {
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          publishEvent(admin, { origin: "_admin", tag: `storm/${sent + i}` }),
        ),
      );
      sent += 20;
      await waitFor(`the masters to handle ${sent} events`, settled, { ms: 30_000, context });
    }
    const s = stats();
    expect(
      s.every((x) => x.handled > 0),
      `both masters handled events: ${JSON.stringify(s)}`,
    ).toBe(true);
    expect(
      s.reduce((n, x) => n + x.reactions, 0),
      JSON.stringify(s),
    ).toBe(1);
    expect(
      s.reduce((n, x) => n + x.drops.throttle, 0),
      JSON.stringify(s),
    ).toBe(sent - 1);
    // The firing is recorded in the shared bucket, under the rule and the source.
    const limits = await openKv(admin, "reactor-limits");
    const entry = await limits.get(limitKeys.throttle(RULE, "_admin"));
    expect(entry?.json<{ at: number; event: string }>().event).toMatch(/\S/);
  });
});
