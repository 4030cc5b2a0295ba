/**
 * The attack suite, the subjects and buckets of events, the reactor, beacons and the basket (and
 * the master-only buckets beside them): a peel (`mallory`) publishes under other origins, writes
 * other peels' keys and the masters' buckets, reads what is not its own, spoofs origins inside its
 * own subjects, and relays onto the reactor's services. Each attempt prints one line; each test
 * fails if the attack works.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openKv } from "../../src/bus/bootstrap.js";
import { encode } from "../../src/bus/codec.js";
import { JS_API, subjects } from "../../src/bus/names.js";
import { matchKey, watchEvents } from "../../src/events/index.js";
import { newKsuid } from "../../src/jobs/ksuid.js";
import { REACTOR_CONSUMER } from "../../src/reactor/reactor.js";
import { REACTOR_PUBLISH_SUBJECT } from "../../src/reactor/service.js";
import { limitKeys } from "../../src/reactor/shared-limits.js";
import { waitFor } from "../support/wait.js";
import {
  ATTACKER,
  attempt,
  type Deployment,
  failureOf,
  jsPublish,
  relayOwnFacts,
  report,
  startDeployment,
  trackViolations,
  VICTIM,
} from "./setup.js";

let d: Deployment;
let violations: string[];

beforeAll(async () => {
  d = await startDeployment();
  violations = trackViolations(d.attacker);
}, 60_000);
afterAll(async () => {
  await d?.stop();
});

const eventPayload = (origin: string, tag: string) =>
  encode({ v: 1, id: newKsuid(), tag, data: {}, ts: new Date().toISOString(), origin, depth: 0 });

/** A request the server must refuse with a permission violation; resolves with the report text. */
async function refusedRequest(subject: string, body = "{}"): Promise<string> {
  const err = await failureOf(() => d.attacker.request(subject, body, { timeout: 2000 }));
  const text = `${err?.name} ${(err?.cause as Error | undefined)?.name ?? ""} ${err?.message}`;
  return /Permission/i.test(text)
    ? "refused (permission violation)"
    : `ACCEPTED (${err?.message ?? "answered"})`;
}

describe("events: other origins, spoofed origins, reading and wiping the stream", () => {
  const cases: [string, string][] = [
    ["another peel's events", `zester.event.${VICTIM}.myco.deploy.finished`],
    ["another peel's beacon events", `zester.event.${VICTIM}.beacon.load`],
    ["master events", "zester.event._master.job.2ZZZZZZZZZZZZZZZZZZZZZZZZZZ.done"],
    ["operator events", "zester.event._admin.send.myco.approve"],
  ];
  for (const [what, subject] of cases) {
    it(`a peel cannot publish ${what} (${subject})`, async () => {
      const origin = subject.split(".")[2]!;
      const outcome = await attempt(d.attacker, violations, "publish", subject, eventPayload(origin, "x/y"));
      report(`publish ${what} on ${subject}`, outcome);
      expect(outcome).toMatch(/^refused/);
    });
  }

  it("an event on its own subject that claims another origin, or another peel's beacon tag, is dropped as a spoof", async () => {
    const before = d.zesterMaster.reactor!.stats().drops.spoof;
    await jsPublish(
      d.attacker,
      `zester.event.${ATTACKER}.myco.deploy.finished`,
      eventPayload(VICTIM, "myco/deploy/finished"),
    );
    await jsPublish(
      d.attacker,
      `zester.event.${ATTACKER}.beacon.load`,
      eventPayload(ATTACKER, `beacon/${VICTIM}/load`),
    );
    await jsPublish(d.attacker, `zester.event.${ATTACKER}.approve`, eventPayload("_admin", "approve"));
    const seen: string[] = [];
    const rejected: string[] = [];
    const ac = new AbortController();
    const watching = watchEvents(d.master, {
      since: { kind: "all" },
      signal: ac.signal,
      onEvent: (e) => void seen.push(matchKey(e.event)),
      onRejected: (_s, err) => void rejected.push(err.message),
    });
    await waitFor("three rejections", () => rejected.length >= 3);
    ac.abort();
    await watching.catch(() => {});
    for (const r of rejected)
      report("event with a spoofed origin or beacon tag on mallory's own subject", `dropped (${r})`);
    for (const spoofed of [
      `${VICTIM}/myco/deploy/finished`,
      `${ATTACKER}/beacon/${VICTIM}/load`,
      "_admin/approve",
    ])
      expect(seen).not.toContain(spoofed);
    await waitFor(
      "the reactor to count the spoofs",
      () => d.zesterMaster.reactor!.stats().drops.spoof >= before + 3,
    );
  });

  it("a peel cannot subscribe to events, read the events stream, or delete the reactor's consumer", async () => {
    for (const subject of ["zester.event.>", `zester.event.${VICTIM}.>`, "zester.event._admin.>"]) {
      const outcome = await attempt(d.attacker, violations, "subscription", subject);
      report(`subscribe to ${subject}`, outcome);
      expect(outcome).toMatch(/^refused/);
    }
    for (const [what, subject] of [
      ["create a consumer on the events stream", `${JS_API}.CONSUMER.CREATE.events`],
      [
        "create a filtered consumer on the events stream",
        `${JS_API}.CONSUMER.CREATE.events.mine.zester.event.>`,
      ],
      ["direct get from the events stream", `${JS_API}.DIRECT.GET.events`],
      ["delete the reactor's durable consumer", `${JS_API}.CONSUMER.DELETE.events.${REACTOR_CONSUMER}`],
      ["read the reactor consumer's state", `${JS_API}.CONSUMER.INFO.events.${REACTOR_CONSUMER}`],
      ["take the reactor consumer's next event", `${JS_API}.CONSUMER.MSG.NEXT.events.${REACTOR_CONSUMER}`],
    ] as const) {
      const outcome = await refusedRequest(subject);
      report(`${what} (${subject})`, outcome);
      expect(outcome).toMatch(/^refused/);
    }
  });

  it("a peel cannot wipe the events stream with a rollup on its own subject", async () => {
    for (const rollup of ["all", "sub"]) {
      const err = await failureOf(() =>
        jsPublish(d.attacker, `zester.event.${ATTACKER}.x`, eventPayload(ATTACKER, "x"), {
          "Nats-Rollup": rollup,
        }),
      );
      report(
        `Nats-Rollup: ${rollup} on zester.event.${ATTACKER}.x`,
        err ? `refused (${err.message})` : "ACCEPTED",
      );
      expect(err?.message).toMatch(/rollup not permitted/i);
    }
  });
});

describe("the reactor: its subject, its bucket, its services", () => {
  it("a peel cannot ask the reactor for a dry run, nor read or write reactor-files", async () => {
    let outcome = await attempt(
      d.attacker,
      violations,
      "publish",
      subjects.reactorTest,
      encode({ match_key: "_admin/x" }),
    );
    report(`publish on ${subjects.reactorTest}`, outcome);
    expect(outcome).toMatch(/^refused/);
    for (const key of ["top.zy", "revision", "deploy.zy"]) {
      outcome = await attempt(
        d.attacker,
        violations,
        "publish",
        `$KV.reactor-files.${key}`,
        "- '*/x': [evil]\n",
      );
      report(`write reactor-files key ${key}`, outcome);
      expect(outcome).toMatch(/^refused/);
    }
    outcome = await refusedRequest(`${JS_API}.DIRECT.GET.KV_reactor-files.$KV.reactor-files.top.zy`, "");
    report("read reactor-files top.zy (direct get)", outcome);
    expect(outcome).toMatch(/^refused/);
  });

  it("a peel cannot write (nor read) reactor-limits, so it cannot reset a throttle, rate or breaker", async () => {
    for (const key of [
      limitKeys.throttle("_admin/x/*", "_admin"),
      limitKeys.rate(ATTACKER),
      limitKeys.breaker("*"),
    ]) {
      const outcome = await attempt(
        d.attacker,
        violations,
        "publish",
        `$KV.reactor-limits.${key}`,
        JSON.stringify({ tokens: 1e9, at: Date.now() }),
      );
      report(`write reactor-limits key ${key}`, outcome);
      expect(outcome).toMatch(/^refused/);
    }
    const outcome = await refusedRequest(
      `${JS_API}.DIRECT.GET.KV_reactor-limits.$KV.reactor-limits.${limitKeys.rate(ATTACKER)}`,
      "",
    );
    report("read reactor-limits (direct get)", outcome);
    expect(outcome).toMatch(/^refused/);
  });

  it("a reactor test or publish request relayed onto the reactor's subjects is ignored", async () => {
    await (await openKv(d.attacker, "facts")).put(ATTACKER, encode({ match_key: "_admin/myco/x", data: {} }));
    for (const [subject, name] of [
      [subjects.reactorTest, "rtest1"],
      [REACTOR_PUBLISH_SUBJECT, "rpub1"],
    ] as const) {
      const before = d.masterLog.length;
      await relayOwnFacts(d.attacker, ATTACKER, subject, name);
      // A queue group (zester.reactor.test) gets no consumer deliveries without a deliver group:
      // only the direct-get answer reaches it.
      const lines = await waitFor(
        "the master to ignore the relayed request",
        () => {
          const l = d.masterLog.slice(before).filter((x) => x.startsWith(`${subject}: ignored`));
          return l.length >= 1 ? l : undefined;
        },
        { ms: 5_000, context: () => d.masterLog.slice(before).join("\n") },
      );
      for (const l of lines) report(`relay onto ${subject}`, `ignored (${l.slice(subject.length + 2)})`);
    }
    await (await openKv(d.attacker, "facts")).put(ATTACKER, encode({ id: ATTACKER }));
  });
});

describe("basket, heartbeats and the masters' buckets", () => {
  const writes: [string, string][] = [
    ["another peel's basket key", `$KV.basket.${VICTIM}.test.ping`],
    ["another peel's basket subject", `zester.basket.${VICTIM}.test.ping`],
    ["another peel's heartbeat", `$KV.peel-heartbeat.${VICTIM}`],
    ["another peel's facts", `$KV.facts.${VICTIM}`],
    ["another peel's job return", `$KV.job-returns.2ZZZZZZZZZZZZZZZZZZZZZZZZZZ.${VICTIM}`],
    ["the reactor publisher lease", "$KV.leases.reactor-publisher"],
    ["the state publisher lease", "$KV.leases.state-publisher"],
    ["a master heartbeat", "$KV.master-heartbeat.m1"],
    ["its own enrollment record (self-approval)", `$KV.enrollments.${ATTACKER}`],
    ["a job record", "$KV.jobs.2ZZZZZZZZZZZZZZZZZZZZZZZZZZ"],
    ["its own sealed secrets", `$KV.secrets.${ATTACKER}`],
    ["the state tree", "$KV.state-files.top.zy"],
    ["the settings tree", "$KV.settings-files.top.zy"],
  ];
  for (const [what, subject] of writes) {
    it(`a peel cannot write ${what} (${subject})`, async () => {
      const outcome = await attempt(d.attacker, violations, "publish", subject, encode({ by: ATTACKER }));
      report(`write ${what} on ${subject}`, outcome);
      expect(outcome).toMatch(/^refused/);
    });
  }

  it("a peel cannot read another peel's sealed secrets, the jobs, the enrollments or the leases", async () => {
    for (const [what, subject] of [
      ["another peel's sealed secrets", `${JS_API}.DIRECT.GET.KV_secrets.$KV.secrets.${VICTIM}`],
      ["the secrets bucket by sequence", `${JS_API}.DIRECT.GET.KV_secrets`],
      ["a job record", `${JS_API}.DIRECT.GET.KV_jobs.$KV.jobs.2ZZZZZZZZZZZZZZZZZZZZZZZZZZ`],
      ["the enrollments", `${JS_API}.DIRECT.GET.KV_enrollments.$KV.enrollments.${VICTIM}`],
      ["the leases", `${JS_API}.DIRECT.GET.KV_leases.$KV.leases.reactor-publisher`],
      ["watch the jobs bucket", `${JS_API}.CONSUMER.CREATE.KV_jobs.w1.$KV.jobs.>`],
    ] as const) {
      const outcome = await refusedRequest(subject, subject.endsWith("KV_secrets") ? '{"seq":1}' : "");
      report(`read ${what} (${subject})`, outcome);
      expect(outcome).toMatch(/^refused/);
    }
  });
});
