/**
 * Beacon events made while NATS is down: kept in the bounded on-disk buffer (also across a peel
 * restart), then stored in the events stream in the order they were made once the server is
 * back. A real nats-server is stopped and started again; the file edits are real.
 */
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issuePeelCredsFile } from "../src/auth/auth-dir.js";
import { bootstrap } from "../src/bus/bootstrap.js";
import type { ZesterEvent } from "../src/events/index.js";
import { Peel } from "../src/peel/peel.js";
import { publishSettingsTree } from "../src/settings/bus.js";
import { asMaster, storedEvents } from "./support/events.js";
import { type RestartableNats, startRestartableNats } from "./support/nats-restart.js";
import { waitFor } from "./support/wait.js";

const ID = "off-01";
let nats: RestartableNats;
let work: string;
let creds: string;
const peels: Peel[] = [];
const logs: string[] = [];
const context = () => logs.join("\n");

function newPeel(): Peel {
  const p = new Peel({
    id: ID,
    servers: nats.url,
    credsFile: creds,
    caFile: nats.caFile,
    authDir: nats.authDir,
    cacheDir: join(work, "cache"),
    customFactsDir: join(work, "no-facts"),
    trustedMasters: new Set(),
    settingsFetchTimeoutMs: 2_000,
    connectRetryMs: 300,
    eventBufferLimit: 3,
    logger: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
  });
  peels.push(p);
  return p;
}

const beaconEvents = () => storedEvents(nats, `${ID}/beacon/**`, 1_000);

const edit = async (n: number) => {
  await writeFile(join(work, "watched"), `edit ${n}\n`);
  await new Promise((r) => setTimeout(r, 150));
};

beforeAll(async () => {
  nats = await startRestartableNats();
  work = await mkdtemp(join(tmpdir(), "zester-beacons-off-"));
  await writeFile(join(work, "watched"), "start\n");
  creds = await issuePeelCredsFile(nats.authDir, ID);
  await asMaster(nats, async (nc) => {
    await bootstrap(nc);
    await publishSettingsTree(nc, {
      "top.zy": "base:\n  '*':\n    - beacons\n",
      "beacons.zy": `beacons:\n  watched:\n    beacon_module: inotify\n    files:\n      ${work}/watched: {mask: [modify]}\n`,
    });
  });
}, 60_000);

afterAll(async () => {
  for (const p of peels) await p.stop().catch(() => {});
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("the beacon event buffer", () => {
  it("keeps events while NATS is down, across a restart, bounded, and sends them in order", async () => {
    const first = newPeel();
    await first.start();
    await first.waitConnected();
    // The watch starts once the settings revision is resolved.
    await waitFor(
      "the beacon to report a live edit",
      async () => {
        await edit(0);
        return (await beaconEvents()).length > 0;
      },
      { ms: 20_000, context },
    );
    const sentLive = await beaconEvents();

    await nats.halt();
    await waitFor("the peel to notice", () => !first.connected || logs.some((l) => /disconnected/.test(l)), {
      context,
    });
    const made: ZesterEvent[] = [];
    first.on("beacon", (e: ZesterEvent) => made.push(e));
    const buffered = async () =>
      (await readdir(join(work, "cache", "events"))).filter((f) => f.endsWith(".json")).length;
    for (const n of [1, 2]) await edit(n);
    await waitFor("two buffered events", async () => made.length >= 2 && (await buffered()) === made.length, {
      context,
    });
    await first.stop();
    const before = made.length;

    // A new peel process, still offline: it finds the buffer and keeps adding to it.
    const second = newPeel();
    await second.start();
    second.on("beacon", (e: ZesterEvent) => made.push(e));
    await waitFor(
      "the buffer found again",
      () => logs.some((l) => l.includes(`event buffer: ${before} event(s) from before the restart`)),
      { context },
    );
    await new Promise((r) => setTimeout(r, 500));
    for (const n of [3, 4]) await edit(n);
    await waitFor("more events made offline", () => made.length >= before + 2, { context });
    await waitFor(
      "the buffer bounded at 3",
      async () =>
        logs.some((l) => /outbox is full \(3 events\): dropped the oldest/.test(l)) &&
        (await buffered()) === 3,
      { context },
    );

    await nats.start();
    await second.waitConnected(30_000);
    // The oldest offline events gave way; the newest 3 remain, in the order they were made.
    const expected = [...sentLive, ...made.slice(-3)];
    await waitFor("every kept event stored", async () => (await beaconEvents()).length === expected.length, {
      context,
      ms: 30_000,
    });
    const stored = await beaconEvents();
    expect(stored.map((e) => e.id)).toEqual(expected.map((e) => e.id));
    expect(stored.map((e) => e.data)).toEqual(expected.map((e) => e.data));
    expect(stored.every((e) => e.tag === `beacon/${ID}/watched` && e.origin === ID)).toBe(true);
    expect((await readdir(join(work, "cache", "events"))).filter((f) => f.endsWith(".json"))).toEqual([]);
  }, 120_000);
});
