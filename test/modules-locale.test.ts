import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { afterAll, describe, expect, it } from "vitest";
import { family, normalizeLocale } from "../src/modules/locale.js";
import { run } from "../src/util/exec.js";
import { isENOENT } from "../src/util/files.js";
import { moduleContext, runState } from "./support/module-context.js";

const present = family.states.present!;
const ARCHIVE = "/usr/lib/locale/locale-archive";
// A locale this machine is unlikely to have; the test generates it, then removes it again.
const TARGET = "fr_FR.UTF-8";

const orNone = <T>(p: Promise<T>) =>
  p.catch((e) => {
    if (isENOENT(e)) return undefined;
    throw e;
  });

const localeList = async () => (await run(["locale", "-a"]).catch(() => undefined))?.stdout.split("\n") ?? [];
const isRoot = process.getuid?.() === 0;
const hasLocaleGen = (await run(["sh", "-c", "command -v locale-gen && command -v localedef"])).retcode === 0;
const genBefore = await orNone(readFile("/etc/locale.gen"));
const archiveExisted = (await orNone(stat(ARCHIVE))) !== undefined;
const alreadyThere = (await localeList()).includes(normalizeLocale(TARGET));
const canGenerate = isRoot && hasLocaleGen && genBefore !== undefined && !alreadyThere;
if (!canGenerate) {
  console.warn(
    `skipping locale generation test: ${
      !isRoot
        ? "not root"
        : !hasLocaleGen
          ? "locale-gen/localedef are not installed"
          : genBefore === undefined
            ? "/etc/locale.gen is missing"
            : `${TARGET} is already generated here (the test would not be able to restore the machine)`
    }`,
  );
}

afterAll(async () => {
  if (!canGenerate) return;
  // Put back /etc/locale.gen byte for byte and drop the locale we generated.
  await writeFile("/etc/locale.gen", genBefore!);
  if ((await localeList()).includes(normalizeLocale(TARGET))) {
    await run(["localedef", "--delete-from-archive", normalizeLocale(TARGET)]);
  }
  if (!archiveExisted) await rm(ARCHIVE, { force: true });
});

const ctx = (test = false) => moduleContext({ test });

describe("locale.present", () => {
  it("normalizes glibc locale names", () => {
    expect(normalizeLocale("en_US.UTF-8")).toBe("en_US.utf8");
    expect(normalizeLocale("de_DE.ISO-8859-15@euro")).toBe("de_DE.iso885915@euro");
    expect(normalizeLocale("C")).toBe("C");
  });

  it("an available locale is no change, whatever its spelling", async () => {
    const r = await runState(present, { name: "C.UTF-8" }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changed).toBe(false);
    expect(r.comment).toMatch(/already available/);
    expect(await family.exec!.avail!.run({ name: "C.utf8" }, ctx())).toBe(true);
    // Salt's Debian form, as locale.gen and SUPPORTED write it: the locale and its charset.
    const entry = await runState(present, { name: "C.UTF-8 UTF-8" }, ctx());
    expect(entry).toMatchObject({ result: true, changed: false });
    expect(entry.comment).toMatch(/Locale C\.UTF-8 is already available/);
  });

  it("rejects bad or unsupported names clearly", async () => {
    const bad = await runState(present, { name: "en US" }, ctx());
    expect(bad.result).toBe(false);
    expect(bad.comment).toMatch(/not a locale name/);
    if (hasLocaleGen) {
      const unknown = await runState(present, { name: "xx_ZZ.UTF-8" }, ctx());
      expect(unknown.result).toBe(false);
      expect(unknown.comment).toMatch(/not supported on this machine/);
    } else {
      const missing = await runState(present, { name: "xx_ZZ.UTF-8" }, ctx());
      expect(missing.result).toBe(false);
      expect(missing.comment).toMatch(/locale-gen is not installed/);
    }
  });

  it.skipIf(!canGenerate)(
    "generates a locale: test mode first, then apply, then no change, then drift repaired",
    async () => {
      const dry = await runState(present, { name: TARGET }, ctx(true));
      expect(dry.result, dry.comment).toBe(true);
      expect(dry.pending).toBe(true);
      expect(dry.changes).toEqual({ locale: TARGET, generated: true, locale_gen: "/etc/locale.gen" });
      expect(dry.diff).toMatch(/^\+fr_FR\.UTF-8 UTF-8$/m);
      expect(await readFile("/etc/locale.gen")).toEqual(genBefore);

      const r = await runState(present, { name: TARGET }, ctx());
      expect(r.result, r.comment).toBe(true);
      expect(r.changed).toBe(true);
      expect(await localeList()).toContain("fr_FR.utf8");
      const gen = await readFile("/etc/locale.gen", "utf8");
      expect(gen).toBe(genBefore!.toString("utf8").replace(/^# fr_FR\.UTF-8 UTF-8$/m, "fr_FR.UTF-8 UTF-8"));

      expect((await runState(present, { name: TARGET }, ctx())).changed).toBe(false);

      // Drift: the locale is gone from the archive but still enabled; only locale-gen has to run.
      await run(["localedef", "--delete-from-archive", "fr_FR.utf8"]);
      const fixed = await runState(present, { name: TARGET }, ctx());
      expect(fixed.result, fixed.comment).toBe(true);
      expect(fixed.changes).toEqual({ locale: TARGET, generated: true });
      expect(await localeList()).toContain("fr_FR.utf8");
    },
    180_000,
  );
});

const SYSTEM_FILE = "/etc/default/locale";
const systemBefore = await orNone(readFile(SYSTEM_FILE));

describe("locale.system", () => {
  const system = family.states.system!;
  const FILE = SYSTEM_FILE;
  const before = systemBefore;
  afterAll(async () => {
    // Put the machine's system locale back byte for byte (or remove the file we created).
    if (before === undefined) await rm(FILE, { force: true });
    else await writeFile(FILE, before);
  });

  it.skipIf(!isRoot)(
    "sets LANG in /etc/default/locale, keeping the other lines; then no change",
    async () => {
      await writeFile(FILE, "#  File generated by update-locale\nLC_TIME=C.UTF-8\n");
      const dry = await runState(system, { name: "C.UTF-8" }, ctx(true));
      expect(dry).toMatchObject({
        result: true,
        pending: true,
        comment: "System locale C.UTF-8 needs to be set",
      });
      expect(await readFile(FILE, "utf8")).not.toContain("LANG=");

      const r = await runState(system, { name: "C.UTF-8" }, ctx());
      expect(r.result, r.comment).toBe(true);
      expect(r.changes).toEqual({ locale: "C.UTF-8" });
      expect(await readFile(FILE, "utf8")).toBe(
        "#  File generated by update-locale\nLC_TIME=C.UTF-8\nLANG=C.UTF-8\n",
      );
      expect(await family.exec!.get_locale!.run({}, ctx())).toBe("C.UTF-8");

      await writeFile(FILE, 'LANG="C.UTF-8"\n');
      const same = await runState(system, { name: "C.UTF-8" }, ctx());
      expect(same).toMatchObject({ changed: false, comment: "System locale C.UTF-8 already set" });

      const swap = await runState(system, { name: "en_US.UTF-8" }, ctx());
      expect(swap.result).toBe(true);
      expect(await readFile(FILE, "utf8")).toBe("LANG=en_US.UTF-8\n");
    },
  );

  it("refuses a name that is no locale, changing nothing", async () => {
    const r = await runState(system, { name: "en US; rm" }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/not a locale name/);
  });
});
