/** One real Peel in the test process, connected, with its own cache dir under a test's work dir. */
import { join } from "node:path";
import { Peel, type PeelConfig } from "../../src/peel/peel.js";
import type { StartedNats } from "./nats.js";

const quiet = { info: () => {}, warn: () => {}, error: () => {} };

export async function startTestPeel(
  nats: Pick<StartedNats, "url" | "caFile" | "credsFile">,
  id: string,
  work: string,
  trustedMasters: ReadonlySet<string>,
  extra: Partial<PeelConfig> = {},
): Promise<Peel> {
  const peel = new Peel({
    id,
    servers: nats.url,
    credsFile: await nats.credsFile(id),
    caFile: nats.caFile,
    cacheDir: join(work, id),
    customFactsDir: join(work, "no-facts"),
    trustedMasters,
    logger: quiet,
    ...extra,
  });
  await peel.start();
  await peel.waitConnected();
  return peel;
}
