/**
 * The attack suite, signed commands and reply-to tricks: a peel (`mallory`) replays, re-addresses,
 * modifies and ages commands, and has the server answer onto other peels' and the masters'
 * subjects (publish acks and JetStream API replies, which carry no JetStream headers). Each
 * attempt prints one line; each test fails if the attack works.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signCommand } from "../../src/auth/signing.js";
import { openKv } from "../../src/bus/bootstrap.js";
import { decode, encode } from "../../src/bus/codec.js";
import { subjects } from "../../src/bus/names.js";
import { newKsuid } from "../../src/jobs/ksuid.js";
import { JobStore } from "../../src/jobs/store.js";
import type { Command, DispatchReply, JobRecord } from "../../src/jobs/wire.js";
import { LATE_RETURN_DELAY_MS } from "../../src/master/late-returns.js";
import { returnOf, testCommand } from "../support/commands.js";
import { waitFor } from "../support/wait.js";
import { ATTACKER, type Deployment, relayOwnFacts, report, startDeployment, VICTIM } from "./setup.js";

let d: Deployment;

beforeAll(async () => {
  d = await startDeployment();
}, 60_000);
afterAll(async () => {
  await d?.stop();
});

/** Publishes `cmd` on the victim's command subject and resolves with the victim's refusal line. */
async function victimRefusal(publish: () => void): Promise<string> {
  const before = d.victimLog.length;
  publish();
  const line = await waitFor("the victim's refusal", () =>
    d.victimLog.slice(before).find((l) => l.includes("refused")),
  );
  return line.replace(/^WARN /, "");
}

/** Deletes a relaying consumer once it has delivered (so later puts are not relayed again). */
async function dropRelay(name: string): Promise<void> {
  await (await jetstreamManager(d.master)).consumers.delete("KV_facts", name);
}

/** The victim still runs its master's commands. */
async function victimObeys(): Promise<void> {
  expect((await returnOf(d.master, testCommand(d.signer, VICTIM, "test.ping"))).success).toBe(true);
}

describe("signed commands: replayed, stale, re-addressed, modified", () => {
  it("a command the victim already ran, sent again, is refused as a replay", async () => {
    const cmd = testCommand(d.signer, VICTIM, "test.ping");
    expect((await returnOf(d.master, cmd)).success).toBe(true);
    const line = await victimRefusal(() => d.master.publish(subjects.cmd(VICTIM), encode(cmd)));
    report("replay a signed command the victim ran", `refused (${line})`);
    expect(line).toMatch(/replayed command/);
  });

  it("a command signed ten minutes ago is refused as stale", async () => {
    const cmd = signCommand(d.signer, {
      jid: newKsuid(),
      fun: "test.ping",
      args: [],
      kwargs: {},
      test: false,
      peel: VICTIM,
      ts: Date.now() - 600_000,
      timeout_s: 60,
    });
    const line = await victimRefusal(() => d.master.publish(subjects.cmd(VICTIM), encode(cmd)));
    report("a signed command 10 minutes old", `refused (${line})`);
    expect(line).toMatch(/stale command/);
  });

  it("a command signed for the attacker, put on the victim's subject, is refused as re-addressed", async () => {
    const cmd = testCommand(d.signer, ATTACKER, "cmd.run", ["id"]);
    const line = await victimRefusal(() => d.master.publish(subjects.cmd(VICTIM), encode(cmd)));
    report(`a command signed for ${ATTACKER} on zester.cmd.${VICTIM}`, `refused (${line})`);
    expect(line).toMatch(/addressed to mallory, not bob/);
  });

  it("a signed command with its function or arguments changed is refused (bad signature)", async () => {
    const good = testCommand(d.signer, VICTIM, "test.ping");
    for (const changed of [
      { ...good, fun: "cmd.run", args: ["touch /tmp/owned"] },
      { ...good, kwargs: { runas: "root" } },
      { ...good, timeout_s: 86_400 },
    ] satisfies Command[]) {
      const line = await victimRefusal(() => d.master.publish(subjects.cmd(VICTIM), encode(changed)));
      const what = Object.keys(changed).find(
        (k) => JSON.stringify(changed[k as keyof Command]) !== JSON.stringify(good[k as keyof Command]),
      );
      report(`a signed command with ${what} changed`, `refused (${line})`);
      expect(line).toMatch(/bad signature/);
    }
    await victimObeys();
  });

  it("the attacker's own signed command, stored and relayed onto the victim's subject, is ignored", async () => {
    // What mallory can really get hold of: a command its master signed for it.
    const sub = d.attacker.subscribe(subjects.cmd(ATTACKER), { max: 1 });
    await d.attacker.flush();
    d.master.publish(subjects.cmd(ATTACKER), encode(testCommand(d.signer, ATTACKER, "test.ping")));
    let captured: Uint8Array | undefined;
    for await (const m of sub) captured = m.data;
    await (await openKv(d.attacker, "facts")).put(ATTACKER, captured!);
    const before = d.victimLog.length;
    await relayOwnFacts(d.attacker, ATTACKER, subjects.cmd(VICTIM), "captured1");
    await dropRelay("captured1");
    await waitFor(
      "two refusals",
      () => d.victimLog.slice(before).filter((l) => l.includes("refused")).length >= 2,
    );
    const lines = d.victimLog.slice(before).filter((l) => l.includes("refused"));
    for (const l of lines)
      report("a captured signed command relayed onto zester.cmd.bob", `refused (${l.replace(/^WARN /, "")})`);
    expect(lines.join("\n")).toMatch(/relayed here|JetStream answer/);
    await (await openKv(d.attacker, "facts")).put(ATTACKER, encode({ id: ATTACKER }));
  });
});

/**
 * The server answers a JetStream publish (its ack) and a JetStream API request on the request's
 * reply subject, which the attacker chooses. Those answers carry no JetStream headers.
 */
function serverAnswersOnto(nc: NatsConnection, subject: string): void {
  nc.publish(`$KV.facts.${ATTACKER}`, encode({ id: ATTACKER }), { reply: subject });
  nc.publish(`$JS.API.CONSUMER.INFO.KV_facts.no-such-consumer`, "", { reply: subject });
  nc.publish(`zester.event.${ATTACKER}.myco.ping`, encode({}), { reply: subject });
}

describe("reply-to tricks: publish acks and JetStream API replies onto other subjects", () => {
  it("onto the victim's command subject: refused by the victim (unsigned), which keeps obeying", async () => {
    const before = d.victimLog.length;
    serverAnswersOnto(d.attacker, subjects.cmd(VICTIM));
    await d.attacker.flush();
    await waitFor(
      "three refusals",
      () => d.victimLog.slice(before).filter((l) => l.includes("refused")).length >= 3,
    );
    const lines = d.victimLog.slice(before).filter((l) => l.includes("refused"));
    for (const l of lines)
      report(
        "a publish ack / API reply sent onto zester.cmd.bob (reply-to)",
        `refused (${l.replace(/^WARN /, "")})`,
      );
    expect(lines.join("\n")).not.toMatch(/ran|started/);
    await victimObeys();
  });

  it("onto zester.dispatch and the enrollment admin subjects: no job, no decision", async () => {
    const seen: string[] = [];
    const sub = d.master.subscribe("zester.cmd.>", { callback: (_e, m) => void seen.push(m.subject) });
    await d.master.flush();
    for (const s of [subjects.dispatch, "zester.admin.enroll.approve", "zester.admin.job.kill"])
      serverAnswersOnto(d.attacker, s);
    await d.attacker.flush();
    await new Promise((r) => setTimeout(r, 1500));
    sub.unsubscribe();
    report(
      "publish ack / API reply onto zester.dispatch, zester.admin.enroll.approve, zester.admin.job.kill",
      seen.length ? `ACCEPTED: ${seen.join(", ")}` : "ignored (no command sent, nothing approved)",
    );
    expect(seen).toEqual([]);
  });

  it("onto another peel's ack and return subjects of a job: its outcome in the record stays true", async () => {
    // mallory and an offline peel are in the same job; mallory learns the jid from its own command.
    const GHOST = "ghost-02";
    await (await openKv(d.master, "facts")).put(GHOST, encode({ id: GHOST }));
    await (await openKv(d.attacker, "facts")).put(ATTACKER, encode({ id: ATTACKER }));
    await waitFor(
      "the fleet to know both",
      () => d.zesterMaster.fleet.resolve(`L@${ATTACKER},${GHOST}`).length === 2,
    );
    const mine = d.attacker.subscribe(subjects.cmd(ATTACKER), { max: 1 });
    await d.attacker.flush();
    const reply = decode<DispatchReply>(
      (
        await d.admin.request(
          subjects.dispatch,
          encode({ target: `L@${ATTACKER},${GHOST}`, fun: "test.ping", args: [], kwargs: {}, timeout_s: 3 }),
          { timeout: 10_000 },
        )
      ).data,
    );
    let jid = "";
    for await (const m of mine) jid = decode<Command>(m.data).jid;
    expect(jid).toBe(reply.jid);
    // An ack for the ghost: a publish ack and an API reply on zester.job.<jid>.ack.ghost-02.
    serverAnswersOnto(d.attacker, subjects.jobAck(jid, GHOST));
    await d.attacker.flush();
    const store = await JobStore.open(d.admin);
    const finished = await waitFor(
      "the job to end",
      async () => {
        const r = (await store.get(jid))?.record;
        return r && r.status !== "running" ? r : undefined;
      },
      { ms: 20_000 },
    );
    report(
      `publish ack / API reply onto zester.job.<jid>.ack.${GHOST}`,
      finished.peels[GHOST] === "unreachable"
        ? "ignored (the peel stays unreachable)"
        : `ACCEPTED (${finished.peels[GHOST]})`,
    );
    expect(finished.peels[GHOST]).toBe("unreachable");

    // A late return for the ghost: a forged return stored by mallory and relayed (consumer and
    // direct get), and a publish ack, on zester.job.<jid>.return.ghost-02.
    const now = new Date().toISOString();
    await (await openKv(d.attacker, "facts")).put(
      ATTACKER,
      encode({
        jid,
        peel: GHOST,
        fun: "test.ping",
        success: true,
        return: true,
        started_at: now,
        finished_at: now,
      }),
    );
    await relayOwnFacts(d.attacker, ATTACKER, subjects.jobReturn(jid, GHOST), "lateret1");
    await dropRelay("lateret1");
    serverAnswersOnto(d.attacker, subjects.jobReturn(jid, GHOST));
    await d.attacker.flush();
    await new Promise((r) => setTimeout(r, LATE_RETURN_DELAY_MS + 2_000));
    const after: JobRecord = (await store.get(jid))!.record;
    report(
      `forged late return relayed onto zester.job.<jid>.return.${GHOST}`,
      after.peels[GHOST] === "unreachable"
        ? "ignored (the record keeps unreachable)"
        : `ACCEPTED (${after.peels[GHOST]})`,
    );
    expect([after.status, after.peels[GHOST]]).toEqual([finished.status, "unreachable"]);
    await (await openKv(d.attacker, "facts")).put(ATTACKER, encode({ id: ATTACKER }));
  }, 60_000);
});
