/**
 * The systemd units in packaging/systemd/ pass `systemd-analyze verify` without a single warning
 * (an unknown or misspelt key is only a warning to systemd, and silently ignored at boot).
 */
import { execFile } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");
const UNITS = ["zester-peel", "zester-master"];
const run = promisify(execFile);

let work: string;
let analyze: string | undefined;

/** Verifies a unit file; systemd wants its ExecStart binary to exist, so it points at a stub. */
async function verify(name: string, text: string): Promise<string> {
  const path = join(work, `${name}.service`);
  await writeFile(path, text.replace(/^ExecStart=\S+/m, `ExecStart=${join(work, "stub")}`));
  try {
    const r = await run(analyze!, ["verify", "--man=no", path]);
    return r.stderr;
  } catch (err) {
    return `exit ${(err as { code?: number }).code}: ${(err as { stderr?: string }).stderr ?? ""}`;
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "zester-units-"));
  await writeFile(join(work, "stub"), "#!/bin/sh\nexit 0\n");
  await chmod(join(work, "stub"), 0o755);
  analyze = await run("sh", ["-c", "command -v systemd-analyze"]).then(
    (r) => r.stdout.trim() || undefined,
    () => undefined,
  );
  if (!analyze) console.warn("skipping unit verification: systemd-analyze is not installed");
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("systemd units", () => {
  it("the checker itself reports a bad key here (so silence below means something)", async (ctx) => {
    if (!analyze) return ctx.skip();
    expect(await verify("bad", "[Service]\nExecStart=/bin/true\nBogusKey=1\n")).toMatch(
      /Unknown key 'BogusKey'/,
    );
  });

  for (const unit of UNITS) {
    it(`${unit}.service verifies without warnings and runs the installed ${unit}`, async (ctx) => {
      const text = await readFile(join(ROOT, "packaging", "systemd", `${unit}.service`), "utf8");
      expect(text).toMatch(new RegExp(`^ExecStart=/usr/local/bin/${unit} \\$`, "m"));
      expect(text).toMatch(new RegExp(`^EnvironmentFile=-/etc/default/${unit}$`, "m"));
      if (!analyze) return ctx.skip();
      expect(await verify(unit, text)).toBe("");
    });
  }
});
