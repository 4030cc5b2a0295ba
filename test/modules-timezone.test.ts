import { lstat, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import { family } from "../src/modules/timezone.js";
import { isENOENT } from "../src/util/files.js";
import { moduleContext, runState } from "./support/module-context.js";

const system = family.states.system!;

async function snapshot() {
  const link = await readlink("/etc/localtime").catch((e) => {
    if (isENOENT(e)) return undefined;
    throw e;
  });
  const tz = await readFile("/etc/timezone", "utf8").catch((e) => {
    if (isENOENT(e)) return undefined;
    throw e;
  });
  return { link, tz };
}

const isRoot = process.getuid?.() === 0;
const before = await snapshot();
const canRun =
  isRoot &&
  before.link !== undefined &&
  (await lstat("/usr/share/zoneinfo/Europe/Paris").catch(() => undefined));
if (!canRun) {
  console.warn("skipping timezone tests: need root, an /etc/localtime symlink and tzdata (Europe/Paris)");
}

/** Puts /etc/localtime and /etc/timezone back exactly as they were. */
async function restore() {
  if (!canRun) return;
  const now = await snapshot();
  if (now.link !== before.link) {
    await rm("/etc/localtime", { force: true });
    await symlink(before.link!, "/etc/localtime");
  }
  if (now.tz !== before.tz) {
    if (before.tz === undefined) await rm("/etc/timezone", { force: true });
    else await writeFile("/etc/timezone", before.tz);
  }
}
afterEach(restore);

const ctx = (test = false) => moduleContext({ test });
const other = before.link?.endsWith("/Europe/Paris") ? "Asia/Tokyo" : "Europe/Paris";

describe.skipIf(!canRun)("timezone.system", () => {
  it("sets the zone, second run no change, test mode changes nothing, drift repaired", async () => {
    const dry = await runState(system, { name: other }, ctx(true));
    expect(dry.result, dry.comment).toBe(true);
    expect(dry.pending).toBe(true);
    expect(await snapshot()).toEqual(before);

    const r = await runState(system, { name: other }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changes).toMatchObject({ timezone: { new: other } });
    expect(await readlink("/etc/localtime")).toBe(`/usr/share/zoneinfo/${other}`);
    if (before.tz !== undefined) expect(await readFile("/etc/timezone", "utf8")).toBe(`${other}\n`);
    expect(await family.exec!.get_zone!.run({}, ctx())).toBe(other);

    const again = await runState(system, { name: other }, ctx());
    expect(again.changed).toBe(false);
    expect(again.comment).toMatch(/already/);

    if (before.tz !== undefined) {
      await writeFile("/etc/timezone", "Mars/Olympus\n");
      const fixed = await runState(system, { name: other }, ctx());
      expect(fixed.changes).toEqual({
        timezone: { old: other, new: other },
        timezone_file: "/etc/timezone",
      });
      expect(await readFile("/etc/timezone", "utf8")).toBe(`${other}\n`);
    }
  });

  it("rejects unknown or malformed zones without touching anything", async () => {
    const cases = [
      [{ name: "Mars/Olympus" }, /Unknown time zone "Mars\/Olympus"/],
      [{ name: "../../etc/passwd" }, /not a time zone name/],
      [{ name: "zone.tab" }, /not a time zone name/],
    ] as const;
    for (const [params, msg] of cases) {
      const r = await runState(system, params, ctx());
      expect(r.result).toBe(false);
      expect(r.comment).toMatch(msg);
    }
    expect(await snapshot()).toEqual(before);
  });
});
