import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { family } from "../src/modules/cron.js";
import { run } from "../src/util/exec.js";
import { moduleContext, runState } from "./support/module-context.js";

const st = (n: string) => family.states[n]!;

const hasCrontab = (await run(["sh", "-c", "command -v crontab && command -v useradd"])).retcode === 0;
const isRoot = process.getuid?.() === 0;
if (!hasCrontab || !isRoot) {
  console.warn(`skipping cron module tests: ${isRoot ? "crontab or useradd is not installed" : "not root"}`);
}

let user = "";
beforeEach(async () => {
  if (!hasCrontab || !isRoot) return;
  user = `zt-${randomBytes(4).toString("hex")}`;
  const r = await run(["useradd", "-M", "-N", user]);
  expect(r.retcode, r.stderr).toBe(0);
});
afterEach(async () => {
  if (!user) return;
  await run(["crontab", "-r", "-u", user]);
  await run(["userdel", "-f", user]);
  user = "";
});

const ctx = (test = false) => moduleContext({ test });
const crontab = async () => (await run(["crontab", "-l", "-u", user])).stdout;
async function install(text: string) {
  const r = await run(["crontab", "-u", user, "-"], { input: text });
  expect(r.retcode, r.stderr).toBe(0);
}

// Odd spacing and comments that must survive every edit byte for byte.
const OTHER =
  "# my own notes\n\n*/5  *\t* * *   /usr/bin/keep-me --flag   \nSHELL=/bin/sh\n@daily   other-job\n";

describe.skipIf(!hasCrontab || !isRoot)("cron.present / cron.absent", () => {
  it("adds a job to an empty crontab, then no change; test mode changes nothing", async () => {
    const p = { name: "/usr/bin/true zester", user, minute: 5, hour: "2" };
    const dry = await runState(st("present"), p, ctx(true));
    expect(dry.result, dry.comment).toBe(true);
    expect(dry.pending).toBe(true);
    expect(dry.diff).toMatch(/\+5 2 \* \* \* \/usr\/bin\/true zester/);
    expect(await crontab()).toBe("");

    const first = await runState(st("present"), p, ctx());
    expect(first.result, first.comment).toBe(true);
    expect(first.changes).toEqual({ user, added: "5 2 * * * /usr/bin/true zester" });
    expect(await crontab()).toBe("5 2 * * * /usr/bin/true zester\n");

    const second = await runState(st("present"), p, ctx());
    expect(second.changed).toBe(false);
    expect(second.comment).toMatch(/already in the crontab/);
  });

  it("keeps every other line byte for byte; updates a job in place by identifier", async () => {
    await install(OTHER);
    const p = {
      name: "backup.sh",
      user,
      identifier: "nightly",
      comment: "Nightly backup",
      hour: 3,
      minute: 0,
    };
    expect((await runState(st("present"), p, ctx())).changed).toBe(true);
    const marker = "# Nightly backup ZESTER_CRON_IDENTIFIER:nightly";
    expect(await crontab()).toBe(`${OTHER}${marker}\n0 3 * * * backup.sh\n`);

    // New command and schedule under the same identifier: rewritten where it stands.
    await install(`${OTHER}${marker}\n0 3 * * * backup.sh\n# trailing comment\n`);
    const moved = await runState(st("present"), { ...p, name: "backup2.sh", hour: 4 }, ctx());
    expect(moved.result, moved.comment).toBe(true);
    expect(moved.changes).toEqual({ user, old: "0 3 * * * backup.sh", new: "0 4 * * * backup2.sh" });
    expect(await crontab()).toBe(`${OTHER}${marker}\n0 4 * * * backup2.sh\n# trailing comment\n`);

    const gone = await runState(st("absent"), { name: "ignored", identifier: "nightly", user }, ctx());
    expect(gone.result, gone.comment).toBe(true);
    expect(await crontab()).toBe(`${OTHER}# trailing comment\n`);
    expect((await runState(st("absent"), { name: "backup2.sh", user }, ctx())).changed).toBe(false);
  });

  it("repairs a job whose schedule drifted; special schedules; absent by command", async () => {
    await install(OTHER);
    const p = { name: "/opt/run.sh", user, special: "@reboot" };
    await runState(st("present"), p, ctx());
    expect(await crontab()).toBe(`${OTHER}@reboot /opt/run.sh\n`);
    await install(`${OTHER}@hourly /opt/run.sh\n`);
    const fixed = await runState(st("present"), p, ctx());
    expect(fixed.changes).toMatchObject({ old: "@hourly /opt/run.sh", new: "@reboot /opt/run.sh" });
    expect(await crontab()).toBe(`${OTHER}@reboot /opt/run.sh\n`);

    const dry = await runState(st("absent"), { name: "/opt/run.sh", user }, ctx(true));
    expect(dry.pending).toBe(true);
    expect(await crontab()).toBe(`${OTHER}@reboot /opt/run.sh\n`);
    const r = await runState(st("absent"), { name: "/opt/run.sh", user }, ctx());
    expect(r.changes).toEqual({ user, removed: ["@reboot /opt/run.sh"] });
    expect(await crontab()).toBe(OTHER);
  });

  it("commented keeps the job switched off as #DISABLED# (Salt's form), found again by its command", async () => {
    await install(OTHER);
    const p = { name: "/usr/bin/true off", user, hour: "3", commented: true };
    const off = await runState(st("present"), p, ctx());
    expect(off.result, off.comment).toBe(true);
    expect(await crontab()).toBe(`${OTHER}#DISABLED#* 3 * * * /usr/bin/true off\n`);
    expect((await runState(st("present"), p, ctx())).changed).toBe(false);
    // Switching it back on rewrites the same line in place.
    const on = await runState(st("present"), { ...p, commented: false }, ctx());
    expect(on.changes).toMatchObject({
      old: "#DISABLED#* 3 * * * /usr/bin/true off",
      new: "* 3 * * * /usr/bin/true off",
    });
    expect(await crontab()).toBe(`${OTHER}* 3 * * * /usr/bin/true off\n`);
    await runState(st("present"), p, ctx());
    const gone = await runState(st("absent"), { name: "/usr/bin/true off", user }, ctx());
    expect(gone.result, gone.comment).toBe(true);
    expect(await crontab()).toBe(OTHER);
  });

  it("rejects bad input clearly", async () => {
    const cases = [
      [{ name: "x", user, special: "@sometimes" }, /special must be one of/],
      [{ name: "x", user, minute: "1 2" }, /minute: "1 2" is not a valid cron time field/],
      [{ name: "a\nb", user }, /must be a single line/],
      [{ name: "x", user: "zt-no-such-user" }, /user "zt-no-such-user" does not exist/],
    ] as const;
    for (const [params, msg] of cases) {
      const r = await runState(st("present"), params, ctx());
      expect(r.result).toBe(false);
      expect(r.comment).toMatch(msg);
    }
    expect(await crontab()).toBe("");
  });
});

describe.skipIf(!hasCrontab || !isRoot)("cron.env_present / cron.env_absent", () => {
  it("adds a variable above the first job, updates it, removes it; other lines untouched", async () => {
    await install("# head\n0 1 * * * job\n");
    const r = await runState(st("env_present"), { name: "MAILTO", value: "ops@example.com", user }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(await crontab()).toBe("# head\nMAILTO=ops@example.com\n0 1 * * * job\n");
    expect(
      (await runState(st("env_present"), { name: "MAILTO", value: "ops@example.com", user }, ctx())).changed,
    ).toBe(false);
    const upd = await runState(st("env_present"), { name: "MAILTO", value: "", user }, ctx());
    expect(upd.result, upd.comment).toBe(true);
    expect(upd.changes).toEqual({ user, MAILTO: "", old: "MAILTO=ops@example.com" });
    expect(await crontab()).toBe('# head\nMAILTO=""\n0 1 * * * job\n');

    const dry = await runState(st("env_absent"), { name: "MAILTO", user }, ctx(true));
    expect(dry.pending).toBe(true);
    await runState(st("env_absent"), { name: "MAILTO", user }, ctx());
    expect(await crontab()).toBe("# head\n0 1 * * * job\n");
    expect((await runState(st("env_absent"), { name: "MAILTO", user }, ctx())).changed).toBe(false);

    const bad = await runState(st("env_present"), { name: "1BAD", value: "x", user }, ctx());
    expect(bad.result).toBe(false);
    expect(bad.comment).toMatch(/not a valid environment variable name/);
  });
});
