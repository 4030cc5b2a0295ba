/**
 * Account isolation (spec "Three-Tier Trust Hierarchy"): accounts production and staging under
 * one operator, added with `zester nats-auth account add`, pushed to a running server. A peel or
 * operator of one account can neither see nor reach the other's subjects, buckets and streams.
 */
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addAccount, pushAccount } from "../../src/auth/accounts.js";
import { AUTH_FILES, issuePeelCredsFile } from "../../src/auth/auth-dir.js";
import { bootstrap, openKv } from "../../src/bus/bootstrap.js";
import { encode } from "../../src/bus/codec.js";
import { connect } from "../../src/bus/connect.js";
import { peelInboxPrefix, subjects } from "../../src/bus/names.js";
import { runMain } from "../support/cli.js";
import { type StartedNats, startNats } from "../support/nats.js";
import { report } from "./setup.js";

let nats: StartedNats;
const conns: NatsConnection[] = [];
let prodDir: string;
let stgDir: string;

async function as(dir: string, who: "master" | "admin" | string): Promise<NatsConnection> {
  const creds =
    who === "master"
      ? join(dir, AUTH_FILES.masterCreds)
      : who === "admin"
        ? join(dir, AUTH_FILES.adminCreds)
        : await issuePeelCredsFile(dir, who, { force: true });
  const peel = who !== "master" && who !== "admin";
  const nc = await connect({
    servers: nats.url,
    caFile: nats.caFile,
    credsFile: creds,
    reconnect: false,
    ...(peel ? { inboxPrefix: peelInboxPrefix(who) } : {}),
  });
  conns.push(nc);
  return nc;
}

beforeAll(async () => {
  nats = await startNats();
  const out = await runMain([
    "nats-auth",
    "account",
    "add",
    "production",
    "--dir",
    nats.authDir,
    "--push",
    "--nats-url",
    nats.url,
  ]);
  expect(out.code, out.err).toBe(0);
  expect(out.out).toMatch(/pushed account production/);
  const stg = await addAccount(nats.authDir, "staging");
  await pushAccount(nats.authDir, stg.jwt, nats.url, nats.caFile);
  prodDir = join(nats.authDir, "accounts", "production");
  stgDir = stg.dir;
}, 60_000);

afterAll(async () => {
  for (const nc of conns) await nc.close().catch(() => {});
  await nats?.stop();
});

describe("accounts production and staging", () => {
  it("each account has its own buckets: staging cannot see production's facts, even as its master", async () => {
    const prodMaster = await as(prodDir, "master");
    const stgMaster = await as(stgDir, "master");
    expect((await bootstrap(prodMaster)).created).toContain("KV_facts");
    // Staging's buckets are created in staging: production's existing ones do not count there.
    expect((await bootstrap(stgMaster)).created).toContain("KV_facts");
    const prodPeel = await as(prodDir, "web-01");
    await (await openKv(prodPeel, "facts")).put("web-01", encode({ id: "web-01", secret: "prod" }));
    const stgFacts = await openKv(stgMaster, "facts");
    expect(await stgFacts.get("web-01")).toBeNull();
    const stgPeel = await as(stgDir, "stg-01");
    expect(await (await openKv(stgPeel, "facts")).get("web-01")).toBeNull();
    expect((await (await openKv(prodMaster, "facts")).get("web-01"))?.operation).toBe("PUT");
    report("staging master/peel read production's facts", "nothing there (separate account)");
  });

  it("staging's master cannot command a production peel, nor staging's operator ask production's master", async () => {
    const prodPeel = await as(prodDir, "web-02");
    const got: string[] = [];
    prodPeel.subscribe(subjects.cmd("web-02"), { callback: (_e, m) => void got.push(m.subject) });
    const prodMaster = await as(prodDir, "master");
    prodMaster.subscribe(subjects.dispatch, { callback: (_e, m) => void got.push(m.subject) });
    await prodPeel.flush();
    await prodMaster.flush();
    const stgMaster = await as(stgDir, "master");
    stgMaster.publish(subjects.cmd("web-02"), encode({ fun: "cmd.run" }));
    await stgMaster.flush();
    const stgAdmin = await as(stgDir, "admin");
    const err = await stgAdmin
      .request(subjects.dispatch, encode({ target: "*", fun: "test.ping", args: [], kwargs: {} }), {
        timeout: 2000,
      })
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );
    await new Promise((r) => setTimeout(r, 500));
    report(
      "staging master publishes zester.cmd.web-02 / staging admin dispatches",
      `not delivered (${err?.message})`,
    );
    expect(got).toEqual([]);
    expect(err?.message).toMatch(/no responders|503/i);
    // The same subjects inside production do arrive: the subscriptions were live.
    prodMaster.publish(subjects.cmd("web-02"), encode({ fun: "x" }));
    await prodMaster.flush();
    await new Promise((r) => setTimeout(r, 200));
    expect(got).toEqual([subjects.cmd("web-02")]);
  });

  it("creds of the default account see neither production nor staging", async () => {
    const zmaster = await nats.connectAs("master");
    conns.push(zmaster);
    const err = await openKv(zmaster, "facts")
      .then((kv) => kv.get("web-01"))
      .then(
        (e) => e,
        (e: unknown) => e as Error,
      );
    report(
      "default-account master reads production facts",
      err === null || err instanceof Error ? "nothing there" : "READ",
    );
    expect(err === null || err instanceof Error).toBe(true);
  });
});
