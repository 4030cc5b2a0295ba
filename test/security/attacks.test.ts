/**
 * The attack suite: a real deployment attacked with one peel's credentials (`mallory`), trying
 * what a compromised node would try. Each attempt prints one line; each test fails if the attack
 * works.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { createCurve, createUser } from "@nats-io/nkeys";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { peelPermissions } from "../../src/auth/permissions.js";
import { verifyCommand } from "../../src/auth/signing.js";
import { openKv } from "../../src/bus/bootstrap.js";
import { decode, encode } from "../../src/bus/codec.js";
import { BUCKET_NAMES, JS_API, kvStream, subjects } from "../../src/bus/names.js";
import { enforceRollupPolicy } from "../../src/bus/stream-policy.js";
import { enrollAdmin } from "../../src/enroll/admin.js";
import { enrollPeel, writeCreds } from "../../src/enroll/client.js";
import { enrollSignedString, signString } from "../../src/enroll/protocol.js";
import { matchKey as matchKeyOf } from "../../src/events/event.js";
import { watchEvents } from "../../src/events/watch.js";
import { newKsuid } from "../../src/jobs/ksuid.js";
import { JobStore } from "../../src/jobs/store.js";
import type { DispatchReply, PeelReturn } from "../../src/jobs/wire.js";
import { SETTINGS_PUBLISH_SUBJECT } from "../../src/master/settings.js";
import { Peel } from "../../src/peel/peel.js";
import { runMain } from "../support/cli.js";
import { returnOf, testCommand } from "../support/commands.js";
import { waitFor } from "../support/wait.js";
import {
  ATTACKER,
  type Deployment,
  ENROLLED,
  ENROLLED_SECRET,
  failureOf,
  GOOD_TOP,
  jsPublish,
  relayOwnFacts,
  report,
  startDeployment,
  VICTIM,
  writeSettingsTree,
} from "./setup.js";

let d: Deployment;

beforeAll(async () => {
  d = await startDeployment();
}, 60_000);
afterAll(async () => {
  await d?.stop();
});

/** The KV keys a peel may put, one per bucket: every `$KV.<bucket>.<key>` its JWT allows. */
function writableKeys(id: string): { bucket: string; subject: string }[] {
  const out: { bucket: string; subject: string }[] = [];
  for (const s of peelPermissions(id).pub.allow) {
    const m = /^\$KV\.([^.]+)\.(.+)$/.exec(s);
    if (!m) continue;
    const subject = `$KV.${m[1]}.${m[2]!.replace(/\*/g, "J1").replace(/>/g, "f")}`;
    out.push({ bucket: m[1]!, subject });
  }
  return out;
}

describe("rollups, purges and stream operations", () => {
  const targets = writableKeys(ATTACKER);

  it("finds the buckets a peel writes", () => {
    expect(targets.map((t) => t.bucket)).toEqual(
      expect.arrayContaining(["facts", "peel-heartbeat", "job-returns", "basket"]),
    );
  });

  for (const { bucket, subject } of targets) {
    it(`a peel cannot wipe ${bucket} with Nats-Rollup: all on its own key`, async () => {
      const kv = await openKv(d.master, bucket as never);
      const victimKey =
        bucket === "job-returns" ? `J0.${VICTIM}` : bucket === "basket" ? `${VICTIM}.f` : VICTIM;
      await kv.put(victimKey, encode({ owner: VICTIM }));
      const err = await failureOf(() =>
        jsPublish(d.attacker, subject, encode({ x: 1 }), { "Nats-Rollup": "all" }),
      );
      report(`rollup all on ${subject}`, err ? `refused (${err.message})` : "ACCEPTED");
      expect(err?.message).toMatch(/rollup not permitted/i);
      expect((await kv.get(victimKey))?.operation).toBe("PUT");
    });
  }

  it("a plain put on its own keys still works (the fix keeps peels working)", async () => {
    for (const { subject } of targets) await jsPublish(d.attacker, subject, encode({ ok: true }));
    report("plain put on own keys", "accepted (expected)");
  });

  it("a peel can call no stream or purge API on any bucket or stream", async () => {
    const streams = [...BUCKET_NAMES.map(kvStream), "events", "job-events"];
    for (const s of streams) {
      const refused: string[] = [];
      for (const api of [
        "STREAM.PURGE",
        "STREAM.DELETE",
        "STREAM.UPDATE",
        "STREAM.MSG.DELETE",
        "STREAM.INFO",
        "CONSUMER.LIST",
        "CONSUMER.NAMES",
      ]) {
        const subject = `${JS_API}.${api}.${s}`;
        const err = await failureOf(() => d.attacker.request(subject, "{}", { timeout: 2000 }));
        expect(err?.name ?? err?.cause, subject).toBeDefined();
        expect(`${err?.name} ${(err?.cause as Error | undefined)?.name ?? ""} ${err?.message}`).toMatch(
          /Permission/i,
        );
        refused.push(api.toLowerCase());
      }
      report(`${refused.join(", ")} on stream ${s}`, "refused (permission violation)");
    }
    for (const api of ["STREAM.CREATE.evil", "STREAM.NAMES", "STREAM.LIST", "ACCOUNT.INFO"]) {
      const err = await failureOf(() => d.attacker.request(`${JS_API}.${api}`, "{}", { timeout: 2000 }));
      expect(`${err?.name} ${(err?.cause as Error | undefined)?.name ?? ""} ${err?.message}`).toMatch(
        /Permission/i,
      );
      report(`${JS_API}.${api}`, "refused (permission violation)");
    }
  });

  it("a peel cannot purge or delete another peel's key with a KV operation header on its own key", async () => {
    const facts = await openKv(d.master, "facts");
    await facts.put(VICTIM, encode({ id: VICTIM }));
    for (const op of ["PURGE", "DEL"]) {
      await jsPublish(d.attacker, `$KV.facts.${ATTACKER}`, "", { "KV-Operation": op });
      report(`KV-Operation: ${op} on $KV.facts.${ATTACKER}`, "affects only its own key (expected)");
    }
    expect((await facts.get(VICTIM))?.operation).toBe("PUT");
    await facts.put(ATTACKER, encode({ id: ATTACKER }));
  });

  it("bootstrap turns rollups off on a bucket made before the policy, and purges still work where Zester uses them", async () => {
    const kvm = new Kvm(d.master);
    const old = await kvm.create("made-by-an-old-master");
    expect((await old.status()).streamInfo.config.allow_rollup_hdrs).toBe(true);
    const jsm = await jetstreamManager(d.master);
    expect(await enforceRollupPolicy(jsm, "made-by-an-old-master")).toBe(true);
    expect((await old.status()).streamInfo.config.allow_rollup_hdrs).toBe(false);
    expect(await enforceRollupPolicy(jsm, "made-by-an-old-master")).toBe(false);
    const secrets = await openKv(d.master, "secrets");
    await secrets.put("gone", encode({}));
    await secrets.purge("gone");
    expect((await secrets.get("gone"))?.operation).toBe("PURGE");
  });

  it("the bucket configs say no rollups where peels write", async () => {
    const kvm = new Kvm(d.master);
    for (const { bucket } of targets) {
      const st = await (await kvm.open(bucket)).status();
      expect(st.streamInfo.config.allow_rollup_hdrs, bucket).toBe(false);
    }
  });
});

/** A command signed by nobody, naming the trusted master key, with args nested `depth` deep. */
function deepCommandText(masterKey: string, depth: number): string {
  const head = `{"v":1,"jid":"2ZZZZZZZZZZZZZZZZZZZZZZZZZZ","fun":"test.ping","kwargs":{},"test":false,"peel":"${VICTIM}","ts":${Date.now()},"timeout_s":5,"master":"${masterKey}","sig":"AAAA","args":`;
  return `${head}${"[".repeat(depth)}${"]".repeat(depth)}}`;
}

describe("crashing another peel", () => {
  it("a 100,000-deep command relayed onto the victim's command subject is refused and the victim lives", async () => {
    const facts = await openKv(d.attacker, "facts");
    await facts.put(ATTACKER, new TextEncoder().encode(deepCommandText(d.signer.getPublicKey(), 100_000)));
    const before = d.victimLog.length;
    await relayOwnFacts(d.attacker, ATTACKER, subjects.cmd(VICTIM), "deep1");
    await waitFor(
      "two refusals",
      () => d.victimLog.slice(before).filter((l) => l.includes("refused")).length >= 2,
    );
    const refusals = d.victimLog.slice(before).filter((l) => l.includes("refused"));
    for (const r of refusals)
      report("100,000-deep command relayed to zester.cmd.bob", `refused (${r.replace(/^WARN /, "")})`);
    expect(refusals.join("\n")).toMatch(/relayed here/);
    expect(refusals.join("\n")).toMatch(/JetStream answer/);
    // Still alive and obeying its master.
    const ret = await returnOf(d.master, testCommand(d.signer, VICTIM, "test.ping"));
    expect(ret.success).toBe(true);
  });

  it("the same payload sent straight to the peel (as a compromised master would) is refused by the size/depth limits", async () => {
    const before = d.victimLog.length;
    d.master.publish(subjects.cmd(VICTIM), deepCommandText(d.signer.getPublicKey(), 100_000));
    await waitFor("a refusal", () => d.victimLog.slice(before).find((l) => l.includes("refused")));
    const line = d.victimLog.slice(before).find((l) => l.includes("refused"))!;
    report("100,000-deep command on zester.cmd.bob", `refused (${line.replace(/^WARN /, "")})`);
    expect(line).toMatch(/nests deeper than 100/);
    expect((await returnOf(d.master, testCommand(d.signer, VICTIM, "test.ping"))).success).toBe(true);
  });

  it("a command whose fields have the wrong types is refused before its signature is computed", () => {
    const good = testCommand(d.signer, VICTIM, "test.ping");
    for (const [field, value] of [
      ["args", { a: 1 }],
      ["kwargs", []],
      ["test", "yes"],
      ["timeout_s", "5"],
    ] as const) {
      const v = verifyCommand(
        { ...good, [field]: value },
        { trusted: new Set([d.signer.getPublicKey()]), peel: VICTIM },
      );
      report(`command with ${field}=${JSON.stringify(value)}`, v.ok ? "ACCEPTED" : `refused (${v.reason})`);
      expect(v.ok).toBe(false);
      if (!v.ok) expect(v.reason).toContain(`malformed command: ${field}`);
    }
  });
});

describe("relaying the attacker's data onto master services", () => {
  it("a dispatch request relayed onto zester.dispatch runs no job", async () => {
    const facts = await openKv(d.attacker, "facts");
    await facts.put(ATTACKER, encode({ target: "*", fun: "test.ping", args: [], kwargs: {} }));
    const seen: string[] = [];
    const sub = d.master.subscribe("zester.cmd.>", {
      callback: (_e, m) => {
        seen.push(m.subject);
      },
    });
    await d.master.flush();
    await relayOwnFacts(d.attacker, ATTACKER, subjects.dispatch, "disp1");
    await new Promise((r) => setTimeout(r, 1500));
    sub.unsubscribe();
    report(
      "DispatchRequest relayed onto zester.dispatch (consumer + direct-get reply-to)",
      seen.length ? `ACCEPTED: ${seen.join(", ")}` : "ignored (no command sent)",
    );
    expect(seen).toEqual([]);
  });
});

async function publishSettings(): Promise<{ error?: string; sealed?: string[] }> {
  const r = await d.admin.request(SETTINGS_PUBLISH_SUBJECT, encode({}), { timeout: 15_000 });
  return decode<{ error?: string; sealed?: string[] }>(r.data);
}

async function dispatch(target: string, fun: string, args: unknown[] = []): Promise<PeelReturn> {
  const reply = decode<DispatchReply>(
    (
      await d.admin.request(subjects.dispatch, encode({ target, fun, args, kwargs: {}, timeout_s: 30 }), {
        timeout: 15_000,
      })
    ).data,
  );
  expect(reply.error, reply.error).toBeUndefined();
  const store = await JobStore.open(d.admin);
  return waitFor(
    `${fun} return from ${target}`,
    async () => (await store.returnsOf(reply.jid!, [target])).get(target),
    {
      ms: 30_000,
    },
  );
}

describe("claiming a fact to get secrets", () => {
  afterAll(async () => {
    await writeSettingsTree(d.settingsDir, d.masterCurvePub, GOOD_TOP);
    await publishSettings();
  });

  it("a settings tree that targets a secret by a fact is refused at publish, with top.zy:line:col", async () => {
    await writeSettingsTree(d.settingsDir, d.masterCurvePub, `${GOOD_TOP}  'role:db':\n    - db\n`);
    const r = await publishSettings();
    report(
      "settings top.zy 'role:db': [db] with !encrypted values",
      r.error ? `refused at publish (${r.error.split("\n")[1]?.trim()})` : "PUBLISHED",
    );
    expect(r.error).toMatch(/top\.zy:8:3/);
    expect(r.error).toMatch(/matches on role:db, which each peel writes itself/);
    // The same with G@ and S@.
    for (const t of ["G@role:db", "S@127.0.0.0/8", `${VICTIM} or G@role:db`]) {
      await writeSettingsTree(d.settingsDir, d.masterCurvePub, `${GOOD_TOP}  '${t}':\n    - db\n`);
      const e = (await publishSettings()).error;
      report(`settings top.zy '${t}': [db]`, e ? "refused at publish" : "PUBLISHED");
      expect(e).toMatch(/top\.zy:8:3: .*which each peel writes itself/s);
    }
  });

  it("with a templated top.zy that reads facts, the master refuses to seal for the peel that claims the fact", async () => {
    const top = `${GOOD_TOP}{% if facts.role is defined and facts.role == 'db' %}\n  '${ATTACKER}':\n    - db\n{% endif %}\n`;
    await writeSettingsTree(d.settingsDir, d.masterCurvePub, top);
    expect((await publishSettings()).error).toBeUndefined();
    const mine = await connectPeelKv();
    const curve = createCurve();
    await mine.put(ATTACKER, encode({ id: ATTACKER, role: "db", curve_pub: curve.getPublicKey() }));
    const secrets = await openKv(d.master, "secrets");
    // Give the master time to see the fact and (not) seal.
    await new Promise((r) => setTimeout(r, 1500));
    await publishSettings();
    const sealed = await secrets.get(ATTACKER);
    report(
      "peel writes role: db into its facts (templated top.zy)",
      sealed?.operation === "PUT" ? "SEALED TO ATTACKER" : "refused (nothing sealed)",
    );
    expect(sealed?.operation === "PUT" ? "sealed" : "none").toBe("none");
  });
});

async function connectPeelKv() {
  return openKv(d.attacker, "facts");
}

describe("enrollment abuse", () => {
  const enrollUrl = () => `https://127.0.0.1:${d.zesterMaster.enrollPort}`;

  async function enrollAs(id: string, extra: { replace?: boolean; token?: string } = {}) {
    const work = await mkdtemp(join(tmpdir(), "zester-enroll-attack-"));
    const ac = new AbortController();
    const p = enrollPeel({
      url: enrollUrl(),
      peelId: id,
      cacheDir: work,
      caFile: d.nats.caFile,
      signal: ac.signal,
      timeoutMs: 20_000,
      ...extra,
    });
    return { p, abort: () => ac.abort(), work };
  }

  it("a new key enrolling as a peel that has creds from `zester peel creds` gets 409", async () => {
    const { p } = await enrollAs(VICTIM);
    const err = await p.then(
      () => undefined,
      (e: unknown) => e as Error & { status?: number },
    );
    report(`enroll as ${VICTIM} (creds issued)`, err ? `refused (${err.message})` : "ACCEPTED");
    expect(err?.status).toBe(409);
    expect(err?.message).toMatch(/already exists \(creds issued by `zester peel creds` for key U/);
  });

  it("saying it replaces a rebuilt machine makes it a pending request a token cannot approve, shown by enroll list", async () => {
    const tok = await enrollAdmin(d.admin, "token", { peel: VICTIM });
    const { p, abort } = await enrollAs(VICTIM, { replace: true, token: tok.token! });
    const listed = await waitFor("the pending replacement", async () => {
      const out = await runMain(["enroll", "list", "--nats-url", d.nats.url, "--auth-dir", d.nats.authDir]);
      return out.out.includes(VICTIM) ? out.out : undefined;
    });
    abort();
    await p.catch(() => {});
    report(`enroll as ${VICTIM} with replace and a token`, "pending (operator approval needed)");
    const line = listed.split("\n").find((l) => l.startsWith(VICTIM))!;
    expect(line).toMatch(/pending/);
    expect(line).toMatch(/replaces creds-issued key U/);
    await enrollAdmin(d.admin, "reject", { id: VICTIM });
  });

  /** A raw enrollment exchange: a challenge for `ident`, then `mutate` decides what is sent. */
  async function rawEnroll(
    peelId: string,
    mutate: (req: Record<string, string>) => Record<string, string> = (r) => r,
    user = createUser(),
    curve = createCurve(),
  ): Promise<{ status: number; body: Record<string, string>; req: Record<string, string> }> {
    const ca = await readFile(d.nats.caFile, "utf8");
    const post = (path: string, body: unknown) =>
      new Promise<{ status: number; body: Record<string, string> }>((resolve, reject) => {
        const r = httpsRequest(
          new URL(path, enrollUrl()),
          { method: "POST", ca, minVersion: "TLSv1.3", headers: { "content-type": "application/json" } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () =>
              resolve({
                status: res.statusCode ?? 0,
                body: JSON.parse(Buffer.concat(chunks).toString("utf8")),
              }),
            );
          },
        );
        r.on("error", reject);
        r.end(JSON.stringify(body));
      });
    const ident = {
      peel_id: peelId,
      public_key: user.getPublicKey(),
      curve_key: curve.getPublicKey(),
    };
    const ch = await post("/v1/enroll/challenge", ident);
    const nonce = ch.body.nonce!;
    const req = mutate({
      ...ident,
      nonce,
      signature: signString(user, enrollSignedString({ ...ident, nonce })),
    });
    return { ...(await post("/v1/enroll", req)), req };
  }

  it("forged signatures, reused nonces, foreign tokens and rejected keys are refused", async () => {
    const forged = await rawEnroll("abuse-01", (r) => ({
      ...r,
      signature: signString(createUser(), enrollSignedString(r as never)),
    }));
    report("enroll with a signature by another key", `refused (${forged.status} ${forged.body.error})`);
    expect(forged.status).toBe(401);

    const user = createUser();
    const curve = createCurve();
    const first = await rawEnroll("abuse-02", (r) => r, user, curve);
    expect(first.status).toBe(202);
    const again = await new Promise<number>((resolve) => {
      void readFile(d.nats.caFile, "utf8").then((ca) => {
        const r = httpsRequest(
          new URL("/v1/enroll", enrollUrl()),
          { method: "POST", ca, minVersion: "TLSv1.3", headers: { "content-type": "application/json" } },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        r.end(JSON.stringify(first.req));
      });
    });
    report(
      "enroll again with a used nonce",
      again === 401 ? "refused (401 nonce already used)" : `ACCEPTED (${again})`,
    );
    expect(again).toBe(401);

    const tok = await enrollAdmin(d.admin, "token", { peel: "abuse-03" });
    const foreign = await rawEnroll("abuse-04", (r) => ({ ...r, token: tok.token! }));
    report(
      "enroll with a token issued for another peel",
      `refused (${foreign.status} ${foreign.body.error})`,
    );
    expect(foreign.status).toBe(403);

    await enrollAdmin(d.admin, "reject", { id: "abuse-02", reason: "attack suite" });
    const rejected = await rawEnroll("abuse-02", (r) => r, user, curve);
    report("enroll again with a rejected key", `refused (${rejected.status} ${rejected.body.error})`);
    expect(rejected.status).toBe(403);

    const tooLong = await rawEnroll("abuse-05", (r) => ({ ...r, peel_id: "a.b" }));
    report(
      "enroll with an id that is not a subject token (a.b)",
      `refused (${tooLong.status} ${tooLong.body.error})`,
    );
    expect(tooLong.status).toBe(400);
  });

  it("an id that has only published facts (no creds file) conflicts too", async () => {
    // mallory's creds file stays, so use its facts alone: remove the records of its creds.
    const facts = await openKv(d.master, "facts");
    await facts.put("ghost-01", encode({ id: "ghost-01" }));
    const { p } = await enrollAs("ghost-01");
    const err = await p.then(
      () => undefined,
      (e: unknown) => e as Error & { status?: number },
    );
    report("enroll as ghost-01 (known by its facts)", err ? `refused (${err.message})` : "ACCEPTED");
    expect(err?.status).toBe(409);
    expect(err?.message).toMatch(/a peel that has published facts/);
  });
});

describe("an enrolled peel opens its secrets", () => {
  it("token enrollment hands out the master curve key, and state.apply with a secret works", async () => {
    const tok = await enrollAdmin(d.admin, "token", { peel: ENROLLED });
    const cache = await mkdtemp(join(tmpdir(), "zester-enrolled-"));
    const res = await enrollPeel({
      url: `https://127.0.0.1:${d.zesterMaster.enrollPort}`,
      peelId: ENROLLED,
      cacheDir: cache,
      caFile: d.nats.caFile,
      token: tok.token!,
    });
    expect(res.masterCurvePub).toBe(d.masterCurvePub);
    const creds = join(cache, "peel.creds");
    await writeCreds(creds, res.creds);
    const peel = new Peel({
      id: ENROLLED,
      servers: d.nats.url,
      credsFile: creds,
      caFile: d.nats.caFile,
      authDir: join(cache, "no-auth-dir"),
      cacheDir: cache,
      customFactsDir: join(cache, "facts"),
      trustedMasters: new Set(res.trustedMasters),
      masterCurvePub: res.masterCurvePub!,
      factsIntervalMs: 3_600_000,
      heartbeatMs: 2_000,
      logger: { info: () => {}, warn: () => {}, error: () => {} },
    });
    try {
      await peel.start();
      await peel.waitConnected(10_000);
      const secrets = await openKv(d.master, "secrets");
      await waitFor("carol's sealed secrets", async () => {
        await publishSettings();
        return (await secrets.get(ENROLLED))?.operation === "PUT";
      });
      const ret = await dispatch(ENROLLED, "state.apply", ["app"]);
      expect(ret.success, JSON.stringify(ret)).toBe(true);
      expect(await readFile(join(d.work, "out", `${ENROLLED}.conf`), "utf8")).toBe(`pw=${ENROLLED_SECRET}\n`);
      report("state.apply with a secret on an enrolled peel", "works");
    } finally {
      await peel.stop();
      await rm(cache, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("relaying the attacker's data into the events stream", () => {
  it("an operator event relayed onto zester.event._admin.send.* is not taken as the operator's", async () => {
    const forged = {
      v: 1,
      id: newKsuid(),
      tag: "myco/approve-everything",
      data: { by: "mallory" },
      ts: new Date().toISOString(),
      origin: "_admin",
      depth: 0,
    };
    await (await openKv(d.attacker, "facts")).put(ATTACKER, encode(forged));
    d.attacker.publish(`$JS.API.DIRECT.GET.KV_facts.$KV.facts.${ATTACKER}`, "", {
      reply: "zester.event._admin.send.myco.approve-everything",
    });
    await d.attacker.flush();
    await new Promise((r) => setTimeout(r, 500));
    const seen: string[] = [];
    const rejected: string[] = [];
    const ac = new AbortController();
    const watching = watchEvents(d.master, {
      since: { kind: "all" },
      signal: ac.signal,
      onEvent: (e) => {
        seen.push(matchKeyOf(e.event));
        return undefined;
      },
      onRejected: (_s, err) => void rejected.push(err.message),
    });
    await new Promise((r) => setTimeout(r, 1500));
    ac.abort();
    await watching.catch(() => {});
    const taken = seen.includes("_admin/myco/approve-everything");
    report(
      "operator event relayed into the events stream (direct-get reply-to)",
      taken ? "ACCEPTED as _admin" : `refused (${rejected[0] ?? "not stored"})`,
    );
    expect(taken).toBe(false);
  });
});
