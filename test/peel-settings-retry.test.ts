/**
 * A settings fetch caught by a server restart, on a peel that has no last-known-good snapshot
 * yet: it is tried again within its budget and resolves from the bus once the server is back,
 * instead of failing the peel's first run.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCurve } from "@nats-io/nkeys";
import { expect, it } from "vitest";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { connect } from "../src/bus/connect.js";
import { PeelSettings } from "../src/peel/settings.js";
import { startRestartableNats } from "./support/nats-restart.js";

it("a fetch that started connected is retried through a restart when no snapshot exists", async () => {
  const nats = await startRestartableNats();
  const cacheDir = await mkdtemp(join(tmpdir(), "zester-settings-retry-"));
  const nc = await connect({
    servers: nats.url,
    caFile: nats.caFile,
    credsFile: await nats.credsFile("master"),
  });
  try {
    await bootstrap(nc);
    const buckets = { files: await openKv(nc, "settings-files"), secrets: await openKv(nc, "secrets") };
    const settings = new PeelSettings({
      peelId: "retry-01",
      cacheDir,
      curve: createCurve(),
      masterCurvePub: [],
      buckets: () => buckets,
      facts: async () => ({ id: "retry-01" }),
      fetchTimeoutMs: 1_000,
      retryBudgetMs: 30_000,
    });
    await nats.halt();
    const resolving = settings.resolve();
    // Down for longer than one fetch timeout: the first try fails for certain.
    await new Promise((r) => setTimeout(r, 1_500));
    await nats.start();
    const got = await resolving;
    expect(got.source).toBe("bus");
    expect(got.settings).toEqual({});
  } finally {
    await nc.close();
    await nats.stop();
    await rm(cacheDir, { recursive: true, force: true });
  }
}, 60_000);
