import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enrollAdmin } from "../src/enroll/admin.js";
import { enrollPeel } from "../src/enroll/client.js";
import type { Master } from "../src/master/master.js";
import { Peel } from "../src/peel/peel.js";
import { runMain } from "./support/cli.js";
import { startTestMaster } from "./support/master.js";
import { type StartedNats, startNats } from "./support/nats.js";

let nats: StartedNats;
let master: Master;
let work: string;

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-master-enroll-"));
  master = await startTestMaster(nats, {
    statesDir: join(work, "states"),
    settingsDir: join(work, "settings"),
    enroll: { host: "127.0.0.1", port: 0 },
  });
});

afterAll(async () => {
  await master?.stop();
  await nats?.stop();
  await rm(work, { recursive: true, force: true });
});

describe("a master with --enroll-listen", () => {
  it("zester-master checks the enrollment limits before connecting", async () => {
    const base = ["master", "--nats-url", "tls://127.0.0.1:1", "--auth-dir", work, "--enroll-listen", "0"];
    for (const [flag, v] of [
      ["--enroll-max-pending", "-1"],
      ["--enroll-rate", "lots"],
    ] as const) {
      const r = await runMain([...base, flag, v]);
      expect(r.code, flag).toBe(1);
      expect(r.err).toContain(`${flag} must be a whole number ≥ 0`);
    }
  });

  it("enrolls a new machine with a one-time token; the peel joins the fleet with its own key", async () => {
    expect(master.enrollPort).toBeGreaterThan(0);
    const admin = await nats.connectAs("admin");
    try {
      const tok = await enrollAdmin(admin, "token", { ttl_s: 600, peel: "new-01" });
      expect(tok.ok).toBe(true);
      const cacheDir = join(work, "new-01");
      const got = await enrollPeel({
        url: `https://127.0.0.1:${master.enrollPort}`,
        peelId: "new-01",
        cacheDir,
        caFile: nats.caFile,
        token: tok.token!,
      });
      const credsFile = join(cacheDir, "peel.creds");
      await writeFile(credsFile, got.creds, { mode: 0o600 });
      const peel = new Peel({
        id: "new-01",
        servers: nats.url,
        credsFile,
        caFile: nats.caFile,
        cacheDir,
        trustedMasters: new Set(got.trustedMasters),
        logger: { info: () => {}, warn: () => {}, error: () => {} },
      });
      await peel.start();
      let stopped = false;
      try {
        const deadline = Date.now() + 10_000;
        while (!master.fleet.peels().includes("new-01") && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 50));
        expect(master.fleet.resolve("new-*")).toEqual(["new-01"]);
        // Revocation drops the live connection; stopping a peel whose client is now retrying must not hang.
        const rev = await enrollAdmin(admin, "revoke", { id: "new-01" });
        expect(rev.ok).toBe(true);
        const gone = Date.now() + 10_000;
        while (peel.connected && Date.now() < gone) await new Promise((r) => setTimeout(r, 100));
        const t0 = Date.now();
        await peel.stop();
        stopped = true;
        expect(Date.now() - t0).toBeLessThan(8000);
      } finally {
        if (!stopped) await peel.stop();
      }
      // The token is burned: a second machine cannot reuse it.
      await expect(
        enrollPeel({
          url: `https://127.0.0.1:${master.enrollPort}`,
          peelId: "new-01",
          cacheDir: join(work, "again"),
          caFile: nats.caFile,
          token: tok.token!,
          timeoutMs: 3000,
        }),
      ).rejects.toThrow();
    } finally {
      await admin.close();
    }
  });
});
