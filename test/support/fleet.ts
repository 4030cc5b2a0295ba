/**
 * A fleet of real Peels in the test process, each with its own TLS connection, least-privilege
 * creds and cache dir, started a few at a time (facts collection is the slow part).
 */
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { keyPairFromCreds } from "../../src/auth/signing.js";
import { Peel, type PeelConfig } from "../../src/peel/peel.js";
import type { StartedNats } from "./nats.js";

export interface TestFleet {
  ids: string[];
  /** In the order of `ids`. */
  peels: Peel[];
  /** Stops every peel still running and removes the cache dirs. */
  stop(): Promise<void>;
}

const quiet = { info: () => {}, warn: () => {}, error: () => {} };

export async function startTestFleet(
  nats: { url: string | string[]; caFile: string; credsFile: StartedNats["credsFile"] },
  count: number,
  opts: { prefix?: string; concurrency?: number; peel?: Partial<PeelConfig> } = {},
): Promise<TestFleet> {
  const work = await mkdtemp(join(tmpdir(), "zester-fleet-"));
  const facts = join(work, "facts");
  await mkdir(facts);
  const trusted = new Set([
    keyPairFromCreds(await readFile(await nats.credsFile("master"), "utf8")).getPublicKey(),
  ]);
  const ids = Array.from(
    { length: count },
    (_, i) => `${opts.prefix ?? "fleet"}-${String(i).padStart(3, "0")}`,
  );
  const peels: Peel[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const id = ids[i]!;
      const p = new Peel({
        id,
        servers: nats.url,
        credsFile: await nats.credsFile(id),
        caFile: nats.caFile,
        cacheDir: join(work, id),
        customFactsDir: facts,
        trustedMasters: trusted,
        logger: quiet,
        // One process plays the whole fleet: signature checks queue up behind each other.
        maxSkewMs: 120_000,
        ...opts.peel,
      });
      peels[i] = p;
      await p.start();
      await p.waitConnected();
    }
  };
  const stop = async () => {
    await Promise.allSettled(peels.map((p) => p?.stop()));
    await rm(work, { recursive: true, force: true });
  };
  try {
    await Promise.all(Array.from({ length: Math.min(count, opts.concurrency ?? 8) }, worker));
  } catch (err) {
    await stop();
    throw err;
  }
  return { ids, peels, stop };
}
