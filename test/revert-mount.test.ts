/**
 * state.revert for mount.mounted/unmounted on the real system (a tmpfs in a temp dir, an fstab
 * file of the test's own): applied, reverted, the mount table and the fstab bytes as before; a
 * mount changed since the run is refused until force=true.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { liveMounts } from "../src/modules/mount.js";
import { run } from "../src/util/exec.js";
import { requireBuilt } from "./support/built.js";
import { type CliResult, runCli } from "./support/cli.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester.js");
const ORIGINAL = "# static file system information\nUUID=abcd\t/\text4\terrors=remount-ro\t0\t1\n";
let tmp: string;
let mnt: string;
let fstab: string;

function zester(...args: string[]): Promise<CliResult> {
  return runCli(
    BIN,
    ["local", "--no-cache", "--revert-dir", join(tmp, "revert"), "--format", "json", ...args],
    {
      env: { NO_COLOR: "1" },
    },
  );
}

type Res = { name: string; result: boolean; comment: string; changed: boolean; diff?: string };
function parse(r: CliResult): { results: Res[]; revert?: { run: string } } {
  try {
    return (JSON.parse(r.stdout) as never[])[0]!;
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

async function apply(...args: string[]): Promise<string> {
  const r = await zester(...args);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return parse(r).revert!.run;
}

const live = async () => (await liveMounts()).filter((m) => m.mountpoint === mnt).at(-1);
async function umountAll(): Promise<void> {
  while (await live()) if ((await run(["umount", mnt])).retcode !== 0) return;
}

// Whether this sandbox lets us mount at all (a container without CAP_SYS_ADMIN does not).
async function canMount(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "not root";
  const d = await mkdtemp(join(tmpdir(), "zester-revert-mount-probe-"));
  const r = await run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d]);
  if (r.retcode === 0) await run(["umount", d]);
  await rm(d, { recursive: true, force: true });
  return r.retcode === 0 ? undefined : `mount -t tmpfs failed: ${r.stderr.trim()}`;
}
const why = await canMount();
if (why) console.warn(`revert-mount: skipping: ${why}`);

beforeAll(async () => {
  requireBuilt(BIN);
  tmp = await mkdtemp(join(tmpdir(), "zester-revert-mount-"));
  mnt = join(tmp, "mnt");
  fstab = join(tmp, "fstab");
  await mkdir(mnt);
});

afterAll(async () => {
  if (tmp) {
    await umountAll();
    await rm(tmp, { recursive: true, force: true });
  }
});

describe.skipIf(why !== undefined)("state.revert, mount family (a real tmpfs)", () => {
  it("unmounts what mount.mounted mounted and restores the fstab; refuses after a remount by hand", async () => {
    await writeFile(fstab, ORIGINAL);
    const args = ["mount.mounted", mnt, "device=tmpfs", "fstype=tmpfs", "opts=size=1m", `config=${fstab}`];
    const id = await apply(...args);
    expect((await live())?.fstype).toBe("tmpfs");
    expect(await readFile(fstab, "utf8")).toContain(`tmpfs\t${mnt}\ttmpfs\tsize=1m`);
    const dry = await zester("--test", "state.revert", id);
    expect(dry.code, dry.stdout).toBe(0);
    expect(parse(dry).results[0]!.comment).toContain(`Would revert: ${mnt} unmounted`);
    expect(await live()).toBeDefined();
    const r = await zester("state.revert", id);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(parse(r).results[0]!.comment).toContain(`${mnt} unmounted`);
    expect(await live()).toBeUndefined();
    expect(await readFile(fstab, "utf8")).toBe(ORIGINAL);

    const id2 = await apply(...args);
    expect((await run(["mount", "-o", "remount,size=2m", mnt])).retcode).toBe(0);
    const refused = await zester("state.revert", id2);
    expect(refused.code).toBe(2);
    expect(parse(refused).results[0]!.comment).toMatch(
      new RegExp(`^refused: mount ${mnt} changed since the run \\(opts`),
    );
    expect(await live()).toBeDefined();
    expect(await readFile(fstab, "utf8")).not.toBe(ORIGINAL);
    expect((await zester("state.revert", id2, "force=true")).code).toBe(0);
    expect(await live()).toBeUndefined();
    expect(await readFile(fstab, "utf8")).toBe(ORIGINAL);
  });

  it("mounts again what mount.unmounted unmounted, with its options, and puts the fstab entry back", async () => {
    const entry = `tmpfs\t${mnt}\ttmpfs\tsize=1m,noexec\t0\t0\n`;
    await writeFile(fstab, ORIGINAL + entry);
    expect((await run(["mount", "-t", "tmpfs", "-o", "size=1m,noexec", "tmpfs", mnt])).retcode).toBe(0);
    const before = await live();
    const id = await apply("mount.unmounted", mnt, "persist=true", `config=${fstab}`);
    expect(await live()).toBeUndefined();
    expect(await readFile(fstab, "utf8")).toBe(ORIGINAL);
    const r = await zester("state.revert", id);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await live()).toEqual(before);
    expect(await readFile(fstab, "utf8")).toBe(ORIGINAL + entry);

    const id2 = await apply("mount.unmounted", mnt);
    expect((await run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt])).retcode).toBe(0);
    const refused = await zester("state.revert", id2);
    expect(refused.code).toBe(2);
    expect(parse(refused).results[0]!.comment).toMatch(
      new RegExp(`^refused: mount ${mnt} changed since the run`),
    );
    await umountAll();
  });
});
