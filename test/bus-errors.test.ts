/** Bus errors by kind (src/bus/errors.ts), against a real server: the client's classes, not its wording. */

import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { isNoResponders, isStreamNotFound, isTimeout, isWrongLastSequence } from "../src/bus/errors.js";
import { subjects } from "../src/bus/names.js";
import { explainRequestError } from "../src/cli/connect-options.js";
import { type StartedNats, startNats } from "./support/nats.js";

let nats: StartedNats;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(() => nats?.stop());

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe("bus errors", () => {
  it("tells no responders from a timeout, and the CLI explains each", async () => {
    const nc = await nats.connectAs("admin");
    try {
      const none = await rejection(nc.request("zester.admin.nobody.here", "x", { timeout: 2_000 }));
      expect(isNoResponders(none)).toBe(true);
      expect(isTimeout(none)).toBe(false);
      expect(explainRequestError(none, "zester.admin.nobody.here").message).toMatch(/^no master answered on/);
      // A master that hears the dispatch subject and never answers.
      const master = await nats.connectAs("master");
      try {
        master.subscribe(subjects.dispatch);
        await master.flush();
        const slow = await rejection(nc.request(subjects.dispatch, "x", { timeout: 300 }));
        expect(isTimeout(slow)).toBe(true);
        expect(isNoResponders(slow)).toBe(false);
        expect(explainRequestError(slow, subjects.dispatch).message).toMatch(
          /^no answer on zester.dispatch in time/,
        );
      } finally {
        await master.close();
      }
    } finally {
      await nc.close();
    }
  });

  it("tells a lost compare-and-set and a missing stream from other errors", async () => {
    const nc = await nats.connectAs("master");
    try {
      await bootstrap(nc);
      const jsm = await jetstreamManager(nc);
      expect(isStreamNotFound(await rejection(jsm.streams.info("NO_SUCH_STREAM")))).toBe(true);
      const kv = await openKv(nc, "leases");
      await kv.create("bus-errors-probe", "a");
      expect(isWrongLastSequence(await rejection(kv.create("bus-errors-probe", "b")))).toBe(true);
      expect(isWrongLastSequence(await rejection(kv.update("bus-errors-probe", "c", 999)))).toBe(true);
      await kv.delete("bus-errors-probe");
      expect(isWrongLastSequence(new Error("wrong last sequence"))).toBe(false);
      expect(isStreamNotFound(new Error("stream not found"))).toBe(false);
    } finally {
      await nc.close();
    }
  });
});
