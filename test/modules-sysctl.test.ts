import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { family, procPath } from "../src/modules/sysctl.js";
import { moduleContext, runState, tempDir } from "./support/module-context.js";

const present = family.states.present!;
const KEY = "vm.swappiness";
const PROC = "/proc/sys/vm/swappiness";

// Writing the current value back is harmless and tells whether this sandbox lets us change sysctls.
const original = (await readFile(PROC, "utf8").catch(() => "")).trim();
const writable =
  original !== "" &&
  (await writeFile(PROC, original).then(
    () => true,
    () => false,
  ));
if (!writable) console.warn(`skipping live sysctl tests: ${PROC} is not writable here`);

let dir = "";
let config = "";
let cleanup: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir("zester-sysctl-"));
  config = join(dir, "99-test.conf");
});
afterEach(async () => {
  if (writable) await writeFile(PROC, original);
  await cleanup();
});

const ctx = (test = false) => moduleContext({ test });
const other = () => String(Number(original) === 60 ? 61 : 60);

describe("sysctl.present", () => {
  it("persists an already-live value without touching the kernel; second run no change", async () => {
    const head = "# local settings\nkernel.panic=10   \n";
    await writeFile(config, head);
    const r = await runState(present, { name: KEY, value: original, config }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(r.changes).toEqual({ name: KEY, config });
    expect(await readFile(config, "utf8")).toBe(`${head}${KEY} = ${original}\n`);
    const again = await runState(present, { name: KEY, value: Number(original), config }, ctx());
    expect(again.changed).toBe(false);
    expect(again.comment).toMatch(/already/);
  });

  it("rewrites only the parameter's own line, whatever its spelling", async () => {
    await writeFile(config, `a.b = 1\n vm/swappiness=999\nc.d = 2`);
    const r = await runState(present, { name: KEY, value: original, config }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect(await readFile(config, "utf8")).toBe(`a.b = 1\n${KEY} = ${original}\nc.d = 2`);
  });

  it.skipIf(!writable)("sets the live value, test mode changes nothing, drift is repaired", async () => {
    const value = other();
    const dry = await runState(present, { name: KEY, value, config }, ctx(true));
    expect(dry.pending).toBe(true);
    expect(dry.changes).toEqual({ name: KEY, value: { old: original, new: value }, config });
    expect((await readFile(PROC, "utf8")).trim()).toBe(original);
    await expect(readFile(config)).rejects.toThrow(/ENOENT/);

    const r = await runState(present, { name: KEY, value, config }, ctx());
    expect(r.result, r.comment).toBe(true);
    expect((await readFile(PROC, "utf8")).trim()).toBe(value);
    expect(await readFile(config, "utf8")).toBe(`${KEY} = ${value}\n`);
    expect((await runState(present, { name: KEY, value, config }, ctx())).changed).toBe(false);

    await writeFile(PROC, original);
    const fixed = await runState(present, { name: KEY, value, config }, ctx());
    expect(fixed.changes).toEqual({ name: KEY, value: { old: original, new: value } });
    expect((await readFile(PROC, "utf8")).trim()).toBe(value);
    expect(await family.exec!.get!.run({ name: KEY }, ctx())).toBe(value);
  });

  it.skipIf(!writable)("a value the kernel rejects fails the state", async () => {
    const r = await runState(present, { name: KEY, value: "not-a-number", config }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/EINVAL|did not accept/);
    await expect(readFile(config)).rejects.toThrow(/ENOENT/);
  });

  it("rejects bad input clearly", async () => {
    const cases = [
      [
        { name: "vm.no_such_knob_zester", value: 1, config },
        /Unknown sysctl parameter vm\.no_such_knob_zester/,
      ],
      [{ name: "../etc/passwd", value: 1, config }, /not a valid sysctl name/],
      [{ name: KEY, value: "1\n2", config }, /single line/],
      [{ name: KEY, value: 1, config: "rel.conf" }, /config must be an absolute path/],
    ] as const;
    for (const [params, msg] of cases) {
      const r = await runState(present, params, ctx());
      expect(r.result).toBe(false);
      expect(r.comment).toMatch(msg);
    }
    expect(procPath("net/ipv4/conf/eth0.10/forwarding")).toBe("/proc/sys/net/ipv4/conf/eth0.10/forwarding");
  });
});
