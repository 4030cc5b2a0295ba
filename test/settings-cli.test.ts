import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createCurve } from "@nats-io/nkeys";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decryptValue } from "../src/settings/crypto.js";
import { loadMasterCurve, loadMasterCurvePub, MASTER_CURVE_FILES } from "../src/settings/keys.js";
import { openExtractedSecrets, sanitizeSettingsTree } from "../src/settings/sanitize.js";
import { requireBuilt } from "./support/built.js";
import { type CliResult, runCli } from "./support/cli.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester.js");

let tmp: string;

beforeAll(async () => {
  requireBuilt(BIN);
  tmp = await mkdtemp(join(tmpdir(), "zester-settings-cli-"));
}, 180_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** stdin is always closed, so a command that reads it never waits. */
function zester(args: string[], stdin = ""): Promise<CliResult> {
  return runCli(BIN, args, { cwd: tmp, stdin });
}

describe("zester settings (built CLI)", () => {
  it("keygen, then encrypt from stdin prints a block the master can open", async () => {
    const auth = join(tmp, "auth");
    const gen = await zester(["settings", "keygen", "--dir", auth]);
    expect(gen.code).toBe(0);
    expect((await stat(join(auth, MASTER_CURVE_FILES.seed))).mode & 0o777).toBe(0o600);
    const pub = await loadMasterCurvePub(auth);
    expect(gen.stdout).toContain(pub);
    expect((await zester(["settings", "keygen", "--dir", auth])).code).toBe(1);

    const secret = "pa$$ word\twith 'quotes'";
    const enc = await zester(["settings", "encrypt", "--auth-dir", auth], `${secret}\n`);
    expect(enc.stderr).toBe("");
    expect(enc.code).toBe(0);
    expect(enc.stdout).toMatch(/^!encrypted ENC\[nkey,[A-Za-z0-9+/=]+\]\n$/);
    expect(enc.stdout).not.toContain(secret);
    const master = await loadMasterCurve(auth);
    expect(decryptValue(master, enc.stdout.replace("!encrypted ", "").trim())).toBe(secret);

    // --recipient instead of the auth dir; --keep-newline keeps what stdin had.
    const byPub = await zester(["settings", "encrypt", "--recipient", pub, "--keep-newline"], "line\n");
    expect(byPub.code).toBe(0);
    expect(decryptValue(master, byPub.stdout.replace("!encrypted ", "").trim())).toBe("line\n");

    // Pasted into a settings file, it survives sanitize and opens on the master.
    const tree = sanitizeSettingsTree({ "db.zy": `db:\n  password: ${enc.stdout}` });
    expect(Object.values(openExtractedSecrets(master, tree.secrets))).toEqual([secret]);

    await writeFile(join(tmp, "top.zy"), "base:\n  '*': [db]\n");
    await writeFile(join(tmp, "db.zy"), `db:\n  password: ${enc.stdout}`);
    const check = await zester(["settings", "check", "--dir", tmp, "--auth-dir", auth]);
    expect(check.stderr).toBe("");
    expect(check.stdout).toMatch(/1 encrypted value: ok/);
  });

  it("refuses a value on the command line, an empty value and a bad recipient", async () => {
    const pub = createCurve().getPublicKey();
    const onCli = await zester(["settings", "encrypt", "--recipient", pub, "hunter2"]);
    expect(onCli.code).toBe(1);
    expect(onCli.stdout).toBe("");
    expect(onCli.stderr).toMatch(/read from stdin, never from the command line/);
    const empty = await zester(["settings", "encrypt", "--recipient", pub], "\n");
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/empty value/);
    for (const wrong of ["UABC", `${pub.slice(0, -1)}${pub.endsWith("A") ? "B" : "A"}`]) {
      const bad = await zester(["settings", "encrypt", "--recipient", wrong], "x");
      expect(bad.code).toBe(1);
      expect(bad.stdout).toBe("");
      expect(bad.stderr).toMatch(/invalid --recipient/);
    }
    const noKey = await zester(["settings", "encrypt", "--auth-dir", join(tmp, "nope")], "x");
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toMatch(/settings keygen/);
  });
});
