/**
 * pip cannot reach PyPI here: the tests build two tiny wheels by hand (a wheel is a zip with a
 * dist-info directory) and install them into a fresh virtualenv with --no-index --find-links.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compareVersions, family, parseRequirement, satisfies } from "../src/modules/pip.js";
import { run } from "../src/util/exec.js";
import { moduleContext, runState, tempDir } from "./support/module-context.js";

const installed = family.states.installed!;
const removed = family.states.removed!;
let dir = "";
let cleanup: () => Promise<void> = async () => {};
let venv = "";
let wheels = "";

const WHEEL_PY = `
import sys, zipfile, os
out, name, version = sys.argv[1], sys.argv[2], sys.argv[3]
di = f"{name}-{version}.dist-info"
files = {
    f"{name}/__init__.py": f"VERSION = '{version}'\\n",
    f"{di}/METADATA": f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n",
    f"{di}/WHEEL": "Wheel-Version: 1.0\\nGenerator: zester-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
record = "".join(f"{p},,\\n" for p in files) + f"{di}/RECORD,,\\n"
with zipfile.ZipFile(os.path.join(out, f"{name}-{version}-py3-none-any.whl"), "w") as z:
    for p, text in files.items():
        z.writestr(p, text)
    z.writestr(f"{di}/RECORD", record)
`;

const python = await run(["python3", "-c", "import venv, ensurepip"]).catch(() => ({
  retcode: 1,
  stderr: "no python3",
}));
const skipReason =
  python.retcode === 0 ? undefined : `python3 with venv/ensurepip not available: ${python.stderr}`;

beforeAll(async () => {
  if (skipReason) return;
  ({ dir, cleanup } = await tempDir("zester-pip-"));
  venv = join(dir, "venv");
  wheels = join(dir, "wheels");
  await run(["mkdir", "-p", wheels]);
  for (const v of ["1.0", "2.0"]) {
    const r = await run(["python3", "-c", WHEEL_PY, wheels, "ztpkg", v]);
    if (r.retcode !== 0) throw new Error(r.stderr);
  }
  const r = await run(["python3", "-m", "venv", venv], { timeoutMs: 120_000 });
  if (r.retcode !== 0) throw new Error(`venv: ${r.stderr}`);
}, 180_000);
afterAll(() => cleanup());

const ctx = (test = false) => moduleContext({ test, id: "ztpkg" });
const version = async () =>
  (await run([join(venv, "bin/python"), "-c", "import ztpkg; print(ztpkg.VERSION)"])).stdout.trim();

describe("pip.installed (local wheels, virtualenv)", () => {
  it("installs a pinned version, is idempotent, upgrades on a new spec, removes", async (t) => {
    if (skipReason) {
      console.log(`skip: ${skipReason}`);
      t.skip();
    }
    const base = { bin_env: venv, no_index: true, find_links: wheels };
    const dry = await runState(installed, { ...base, name: "ztpkg==1.0" }, ctx(true));
    expect(dry.result, dry.comment).toBe(true);
    expect(dry.pending).toBe(true);
    expect(await version()).toBe("");

    const first = await runState(installed, { ...base, name: "ztpkg==1.0" }, ctx());
    expect(first.result, first.comment).toBe(true);
    expect(first.changes).toEqual({ ztpkg: { old: "", new: "1.0" } });
    expect(await version()).toBe("1.0");
    const again = await runState(installed, { ...base, name: "ztpkg==1.0" }, ctx());
    expect(again.changed).toBe(false);
    // A range that 1.0 satisfies is no change either.
    expect((await runState(installed, { ...base, name: "ZTPkg>=0.5,<2" }, ctx())).changed).toBe(false);

    const up = await runState(installed, { ...base, name: "ztpkg>=2" }, ctx());
    expect(up.result, up.comment).toBe(true);
    expect(up.changes).toEqual({ ztpkg: { old: "1.0", new: "2.0" } });
    expect(await version()).toBe("2.0");

    const missing = await runState(installed, { ...base, name: "ztpkg==9.9" }, ctx());
    expect(missing.result).toBe(false);
    expect(missing.comment).toMatch(/pip install failed/);

    const rm = await runState(removed, { bin_env: venv, name: "ztpkg" }, ctx());
    expect(rm.result, rm.comment).toBe(true);
    expect(await version()).toBe("");
    expect((await runState(removed, { bin_env: venv, name: "ztpkg" }, ctx())).changed).toBe(false);
  }, 180_000);
});

describe("pip requirement helpers", () => {
  it("parses specifiers and compares versions", () => {
    const r = parseRequirement("Foo_Bar[extra]>=1.2,!=1.3.*,<2");
    expect(r.key).toBe("foo-bar");
    expect(satisfies("1.4.1", r)).toBe(true);
    expect(satisfies("1.3.5", r)).toBe(false);
    expect(satisfies("2.0", r)).toBe(false);
    expect(satisfies("1.4.2", parseRequirement("x~=1.4.1"))).toBe(true);
    expect(satisfies("1.5", parseRequirement("x~=1.4.1"))).toBe(false);
    expect(compareVersions("1.0rc1", "1.0")).toBe(-1);
    expect(compareVersions("1.10", "1.9")).toBe(1);
    expect(() => parseRequirement("x>>1")).toThrow(/specifier/);
  });
});
