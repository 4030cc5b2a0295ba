/**
 * Custom command facts on a real peel: an interval shorter than the facts cycle is honoured as
 * written, and facts.refresh / saltutil.refresh_grains / saltutil.refresh_pillar work on demand.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KeyPair } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyPairFromCreds } from "../src/auth/signing.js";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { Peel } from "../src/peel/peel.js";
import { returnOf, testCommand } from "./support/commands.js";
import { type StartedNats, startNats } from "./support/nats.js";
import { waitFor } from "./support/wait.js";

let nats: StartedNats;
let work: string;
let master: NatsConnection;
let signer: KeyPair;
let peel: Peel;
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

async function publishedFact(name: string): Promise<unknown> {
  const e = await (await openKv(master, "facts")).get("refresh-01");
  return e && e.operation === "PUT" ? (e.json<Record<string, unknown>>()[name] ?? undefined) : undefined;
}

beforeAll(async () => {
  nats = await startNats();
  work = await mkdtemp(join(tmpdir(), "zester-facts-refresh-"));
  master = await nats.connectAs("master");
  await bootstrap(master);
  signer = keyPairFromCreds(await readFile(await nats.credsFile("master"), "utf8"));
  const facts = join(work, "facts");
  await mkdir(facts);
  // Each run counts up in a file next to the definitions (commands run in the facts directory).
  const count = (file: string) =>
    `n=$(cat ${file} 2>/dev/null || echo 0); n=$((n+1)); echo $n > ${file}; echo $n`;
  await writeFile(
    join(facts, "counters.yaml"),
    `fast:\n  cmd: '${count("fast.n")}'\n  interval: 2s\nslow:\n  cmd: '${count("slow.n")}'\n  interval: 1h\n`,
  );
  peel = new Peel({
    id: "refresh-01",
    servers: nats.url,
    credsFile: await nats.credsFile("refresh-01"),
    caFile: nats.caFile,
    cacheDir: join(work, "cache"),
    customFactsDir: facts,
    trustedMasters: new Set([signer.getPublicKey()]),
    logger: quiet,
  });
  await peel.start();
  await peel.waitConnected();
}, 60_000);

afterAll(async () => {
  await peel?.stop().catch(() => {});
  await master?.close();
  await nats?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("custom fact intervals", () => {
  it("a 2s command fact is re-run and republished every ~2s, not at the 60s facts cycle", async () => {
    const first = Number(await waitFor("fast published", () => publishedFact("fast")));
    await waitFor(
      "fast to be re-run twice",
      async () => {
        const v = Number(await publishedFact("fast"));
        return v >= first + 2 ? v : undefined;
      },
      { ms: 20_000, intervalMs: 200 },
    );
    // The 1h fact ran once in all that time.
    expect(await publishedFact("slow")).toBe(1);
  });
});

describe("refresh functions", () => {
  it("facts.refresh and saltutil.refresh_grains re-run every command fact now and publish", async () => {
    const r = await returnOf(master, testCommand(signer, "refresh-01", "facts.refresh"));
    expect(r).toMatchObject({ success: true, return: true });
    expect(await publishedFact("slow")).toBe(2);
    const g = await returnOf(master, testCommand(signer, "refresh-01", "saltutil.refresh_grains"));
    expect(g).toMatchObject({ success: true, return: true });
    expect(await publishedFact("slow")).toBe(3);
  });

  it("saltutil.refresh_pillar resolves settings now, as settings.refresh does", async () => {
    const r = await returnOf(master, testCommand(signer, "refresh-01", "saltutil.refresh_pillar"));
    expect(r.success, r.error).toBe(true);
    expect(r.return).toBe(true);
    const s = await returnOf(master, testCommand(signer, "refresh-01", "settings.refresh"));
    expect(s).toMatchObject({ success: true, return: { source: "bus" } });
  });
});
