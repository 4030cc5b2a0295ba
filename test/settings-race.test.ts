import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { fetchSettingsTree, publishSettingsTree, SettingsIntegrityError } from "../src/settings/bus.js";
import { type StartedNats, startNats } from "./support/nats.js";

let nats: StartedNats;
let nc: NatsConnection;

beforeAll(async () => {
  nats = await startNats();
  nc = await nats.connectAs("master");
  await bootstrap(nc);
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe("fetching settings while a master publishes", () => {
  it("retries when the manifest is already the next revision's, and fails when the mismatch stays", async () => {
    const kv = await openKv(nc, "settings-files");
    await publishSettingsTree(kv, { "top.zy": "base:\n  '*':\n    - a\n", "a.zy": "x: 1\n" });
    const rev1 = (await kv.get("revision"))!.value;
    await publishSettingsTree(kv, { "top.zy": "base:\n  '*':\n    - a\n", "a.zy": "x: 2\n" });
    const rev2 = (await kv.get("revision"))!.value;
    // The moment between a master's manifest write and its revision write: new manifest, old revision.
    await kv.put("revision", rev1);
    setTimeout(() => void kv.put("revision", rev2), 50);
    const got = await fetchSettingsTree(kv);
    expect(got.rev).toBe(2);
    expect(got.files["a.zy"]).toBe("x: 2\n");
    // A manifest that does not match a revision that does not move is tampering, not a race.
    await kv.put("revision", rev1);
    await expect(fetchSettingsTree(kv)).rejects.toBeInstanceOf(SettingsIntegrityError);
  });
});
