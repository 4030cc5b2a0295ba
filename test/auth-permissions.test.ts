import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrap, openKv } from "../src/bus/bootstrap.js";
import { decode, encode } from "../src/bus/codec.js";
import { connect } from "../src/bus/connect.js";
import { peelInboxPrefix, subjects } from "../src/bus/names.js";
import { type StartedNats, startNats } from "./support/nats.js";

let nats: StartedNats;
let master: NatsConnection;
let peel: NatsConnection;
let admin: NatsConnection;
/** Permission violations the server reported to each connection. */
const violations = new Map<NatsConnection, { operation: string; subject: string }[]>();

function track(nc: NatsConnection): NatsConnection {
  const list: { operation: string; subject: string }[] = [];
  violations.set(nc, list);
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error" && s.error.name === "PermissionViolationError") {
        const e = s.error as unknown as { operation: string; subject: string };
        list.push({ operation: e.operation, subject: e.subject });
      }
    }
  })().catch(() => {});
  return nc;
}

async function violationFor(
  nc: NatsConnection,
  operation: string,
  subject: string | ((s: string) => boolean),
): Promise<boolean> {
  const match = typeof subject === "string" ? (s: string) => s === subject : subject;
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    if (violations.get(nc)?.some((v) => v.operation === operation && match(v.subject))) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

/** Requests denied by the server fail with a PermissionViolationError, possibly wrapped. */
function isPermissionError(err: unknown): boolean {
  const e = err as { name?: string; cause?: { name?: string } } | undefined;
  return e?.name === "PermissionViolationError" || e?.cause?.name === "PermissionViolationError";
}

async function asPeel(id: string, inboxPrefix = peelInboxPrefix(id)): Promise<NatsConnection> {
  return track(
    await connect({
      servers: nats.url,
      caFile: nats.caFile,
      credsFile: await nats.credsFile(id),
      inboxPrefix,
      reconnect: false,
    }),
  );
}

beforeAll(async () => {
  nats = await startNats();
  master = track(await nats.connectAs("master"));
  await bootstrap(master);
  peel = await asPeel("web-01");
  admin = track(await nats.connectAs("admin"));
});
afterAll(async () => {
  for (const nc of [peel, admin, master]) await nc?.close().catch(() => {});
  await nats?.stop();
});

describe("peel web-01 permissions (real server)", () => {
  it("receives its own commands and replies to them", async () => {
    const sub = peel.subscribe(subjects.cmd("web-01"), {
      callback: (_err, msg) => {
        msg.respond(encode({ ok: true, got: decode<{ fn: string }>(msg.data).fn }));
      },
    });
    await peel.flush();
    const reply = await master.request(subjects.cmd("web-01"), encode({ fn: "test.ping" }), {
      timeout: 3000,
    });
    expect(decode(reply.data)).toEqual({ v: 1, ok: true, got: "test.ping" });
    sub.unsubscribe();
  });

  it("publishes its own events and job returns", async () => {
    const events = master.subscribe(subjects.eventsOf("web-01"), { max: 1 });
    const returns = master.subscribe(subjects.jobAnyReturn("web-01"), { max: 1 });
    await master.flush();
    peel.publish(subjects.event("web-01", "beacon.disk"), encode({ used: 91 }));
    peel.publish(subjects.jobReturn("J1", "web-01"), encode({ retcode: 0 }));
    for await (const m of events) expect(m.subject).toBe("zester.event.web-01.beacon.disk");
    for await (const m of returns) expect(m.subject).toBe("zester.job.J1.return.web-01");
  });

  it("puts its own facts, heartbeat and basket keys", async () => {
    const kvm = new Kvm(peel);
    const facts = await kvm.open("facts", { allow_direct: true });
    await facts.put("web-01", encode({ os: "debian" }));
    await (await kvm.open("peel-heartbeat", { allow_direct: true })).put("web-01", encode({ at: 1 }));
    await (await kvm.open("basket", { allow_direct: true })).put("web-01.network.ip_addrs", encode({ a: 1 }));
    const seen = await (await openKv(master, "facts")).get("web-01");
    expect(decode(seen!.value)).toEqual({ v: 1, os: "debian" });
  });

  it("reads its own secrets key via direct get", async () => {
    await (await openKv(master, "secrets")).put("web-01", encode({ db: "ENC[nkey,abc]" }));
    const secrets = await openKv(peel, "secrets");
    const e = await secrets.get("web-01");
    expect(decode(e!.value)).toEqual({ v: 1, db: "ENC[nkey,abc]" });
  });

  it("reads and watches the shared state-files bucket", async () => {
    const files = await openKv(master, "state-files");
    await files.put("top.zy", new TextEncoder().encode("base: {}"));
    const mine = await openKv(peel, "state-files");
    expect(new TextDecoder().decode((await mine.get("top.zy"))!.value)).toBe("base: {}");
    const w = await mine.watch();
    const it = w[Symbol.asyncIterator]();
    expect((await it.next()).value?.key).toBe("top.zy");
    await files.put("web.zy", new TextEncoder().encode("x"));
    expect((await it.next()).value?.key).toBe("web.zy");
    w.stop();
    const keys: string[] = [];
    for await (const k of await mine.keys()) keys.push(k);
    expect(keys.sort()).toEqual(["top.zy", "web.zy"]);
  });

  it("cannot subscribe to another peel's commands", async () => {
    const sub = peel.subscribe(subjects.cmd("web-02"));
    expect(await violationFor(peel, "subscription", "zester.cmd.web-02")).toBe(true);
    sub.unsubscribe();
  });

  it("cannot read another peel's secrets key", async () => {
    await (await openKv(master, "secrets")).put("web-02", encode({ db: "theirs" }));
    const secrets = await new Kvm(peel).open("secrets", { allow_direct: true, timeout: 2000 });
    const err = await secrets.get("web-02").catch((e: unknown) => e);
    expect(isPermissionError(err)).toBe(true);
    expect(await violationFor(peel, "publish", "$JS.API.DIRECT.GET.KV_secrets.$KV.secrets.web-02")).toBe(
      true,
    );
    // Neither the by-revision form nor the plain stream API lets it in.
    const byRev = await peel
      .request("$JS.API.DIRECT.GET.KV_secrets", JSON.stringify({ last_by_subj: "$KV.secrets.web-02" }), {
        timeout: 2000,
      })
      .catch((e: unknown) => e);
    expect(isPermissionError(byRev)).toBe(true);
    const watch = await secrets.watch().catch((e: unknown) => e);
    expect(watch).toBeInstanceOf(Error);
  });

  it("cannot write another peel's facts key", async () => {
    const facts = await new Kvm(peel).open("facts", { allow_direct: true, timeout: 2000 });
    const err = await facts.put("web-02", encode({ os: "evil" })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(await violationFor(peel, "publish", "$KV.facts.web-02")).toBe(true);
    expect(await (await openKv(master, "facts")).get("web-02")).toBeNull();
  });

  it("cannot publish to zester.dispatch or another peel's returns", async () => {
    peel.publish(subjects.dispatch, encode({ tgt: "*" }));
    peel.publish(subjects.jobReturn("J1", "web-02"), encode({ retcode: 0 }));
    expect(await violationFor(peel, "publish", "zester.dispatch")).toBe(true);
    expect(await violationFor(peel, "publish", "zester.job.J1.return.web-02")).toBe(true);
  });

  it("cannot read replies outside its own inbox prefix", async () => {
    const other = await asPeel("web-03", "_INBOX");
    try {
      const err = await other
        .request(subjects.targetResolve, encode({}), { timeout: 2000 })
        .catch((e: unknown) => e);
      expect((err as Error).name).toMatch(/PermissionViolationError|RequestError/);
      expect(await violationFor(other, "subscription", (s) => s.startsWith("_INBOX."))).toBe(true);
    } finally {
      await other.close();
    }
  });
});

describe("system account", () => {
  it("sys.creds connects to the system account and can ping the server", async () => {
    const sys = await connect({
      servers: nats.url,
      caFile: nats.caFile,
      credsFile: join(nats.authDir, "sys.creds"),
    });
    try {
      const r = await sys.request("$SYS.REQ.SERVER.PING", "", { timeout: 3000 });
      expect(JSON.parse(new TextDecoder().decode(r.data)).server.name).toBe("zester-nats");
    } finally {
      await sys.close();
    }
  });
});

describe("long peel ids", () => {
  it("a 128-character peel id connects: its JWT exceeds the default 4 KiB control line", async () => {
    const id = `p${"x".repeat(127)}`;
    const creds = await nats.credsFile(id);
    const jwt = /-----BEGIN NATS USER JWT-----\n(.+)\n/.exec(await readFile(creds, "utf8"))![1]!;
    expect(jwt.length).toBeGreaterThan(4096);
    const nc = await asPeel(id);
    nc.publish(subjects.event(id, "up"), encode({}));
    await nc.flush();
    await nc.close();
  });
});

describe("admin permissions (real server)", () => {
  it("may dispatch and read facts, but not command peels, write KV or read secrets", async () => {
    const seen = master.subscribe(subjects.dispatch, { max: 1 });
    await master.flush();
    admin.publish(subjects.dispatch, encode({ tgt: "*" }));
    for await (const m of seen) expect(m.subject).toBe("zester.dispatch");

    expect((await (await openKv(admin, "facts")).get("web-01"))?.key).toBe("web-01");

    admin.publish(subjects.cmd("web-01"), encode({}));
    expect(await violationFor(admin, "publish", "zester.cmd.web-01")).toBe(true);
    const err = await (await new Kvm(admin).open("secrets", { allow_direct: true, timeout: 2000 }))
      .get("web-01")
      .catch((e: unknown) => e);
    expect(isPermissionError(err)).toBe(true);
    const put = await (await new Kvm(admin).open("facts", { allow_direct: true, timeout: 2000 }))
      .put("web-01", encode({}))
      .catch((e: unknown) => e);
    expect(put).toBeInstanceOf(Error);
  });
});
