/**
 * A real Master in the test process, connected to a test nats-server with the master creds.
 * Auth dir, settings dir and reactor dir default to the test server's and to directories that do not exist:
 * a test master never reads the host's /etc/zester or /srv/zester.
 */
import { join } from "node:path";
import { Master, type MasterConfig } from "../../src/master/master.js";
import type { StartedNats } from "./nats.js";

export async function startTestMaster(
  nats: Pick<StartedNats, "caFile" | "authDir" | "credsFile"> & { url: string | string[] },
  cfg: Omit<MasterConfig, "servers" | "credsFile">,
): Promise<Master> {
  const m = new Master({
    servers: nats.url,
    credsFile: await nats.credsFile("master"),
    caFile: nats.caFile,
    authDir: nats.authDir,
    settingsDir: join(nats.authDir, "no-settings"),
    reactorDir: join(nats.authDir, "no-reactor"),
    log: () => {},
    ...cfg,
  });
  await m.start();
  return m;
}
