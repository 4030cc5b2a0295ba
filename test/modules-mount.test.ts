import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { editFstab, family, liveMounts, missingOpts, parseFstabLine } from "../src/modules/mount.js";
import { run } from "../src/util/exec.js";
import { moduleContext, runState, tempDir } from "./support/module-context.js";

const mounted = family.states.mounted!;
const unmounted = family.states.unmounted!;
let dir = "";
let cleanup: () => Promise<void> = async () => {};
let mnt = "";
let fstab = "";
const ORIGINAL = "# static file system information\nUUID=abcd\t/\text4\terrors=remount-ro\t0\t1\n";

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir("zester-mount-"));
  mnt = join(dir, "mnt");
  fstab = join(dir, "fstab");
  await mkdir(mnt);
  await writeFile(fstab, ORIGINAL);
});
afterEach(async () => {
  if ((await liveMounts()).some((m) => m.mountpoint === mnt)) await run(["umount", mnt]);
  await cleanup();
});

const ctx = (test = false) => moduleContext({ test, id: "mnt" });
const isMounted = async () => (await liveMounts()).find((m) => m.mountpoint === mnt);

const canMount = await (async () => {
  if (process.getuid?.() !== 0) return "not root";
  const { dir: d, cleanup: c } = await tempDir("zester-mount-probe-");
  const r = await run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d]);
  if (r.retcode === 0) await run(["umount", d]);
  await c();
  return r.retcode === 0 ? undefined : `mount -t tmpfs failed: ${r.stderr.trim()}`;
})();

describe("mount.mounted (fstab only)", () => {
  it("adds, keeps, updates the fstab entry; other lines untouched; test mode writes nothing", async () => {
    const p = {
      name: mnt,
      device: "tmpfs",
      fstype: "tmpfs",
      opts: "size=1m,noexec",
      config: fstab,
      mount: false,
    };
    const dry = await runState(mounted, p, ctx(true));
    expect(dry.pending).toBe(true);
    expect(dry.diff).toContain(`+tmpfs\t${mnt}\ttmpfs\tsize=1m,noexec\t0\t0`);
    expect(await readFile(fstab, "utf8")).toBe(ORIGINAL);

    const first = await runState(mounted, p, ctx());
    expect(first.result, first.comment).toBe(true);
    expect(first.changes).toEqual({ persist: "new" });
    expect(await readFile(fstab, "utf8")).toBe(`${ORIGINAL}tmpfs\t${mnt}\ttmpfs\tsize=1m,noexec\t0\t0\n`);
    expect((await runState(mounted, p, ctx())).changed).toBe(false);

    const upd = await runState(mounted, { ...p, opts: ["size=2m"], pass_num: 2 }, ctx());
    expect(upd.changes).toEqual({ persist: "update" });
    expect(await readFile(fstab, "utf8")).toBe(`${ORIGINAL}tmpfs\t${mnt}\ttmpfs\tsize=2m\t0\t2\n`);

    const gone = await runState(unmounted, { name: mnt, config: fstab, persist: true }, ctx());
    expect(gone.result, gone.comment).toBe(true);
    expect(await readFile(fstab, "utf8")).toBe(ORIGINAL);
  });

  it("fails for a missing mount point unless mkmnt", async () => {
    const r = await runState(
      mounted,
      { name: join(dir, "nope"), device: "tmpfs", fstype: "tmpfs", config: fstab },
      ctx(),
    );
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/does not exist.*mkmnt/);
  });

  it("parses and edits fstab lines with escapes", () => {
    const e = parseFstabLine("//srv/my\\040share /mnt/x cifs ro 0 0")!;
    expect(e.device).toBe("//srv/my share");
    const out = editFstab("a /x ext4 defaults 0 0\n", { ...e, mountpoint: "/x" });
    expect(out.old?.device).toBe("a");
    expect(out.text).toBe("//srv/my\\040share\t/x\tcifs\tro\t0\t0\n");
    expect(missingOpts(["defaults", "noexec", "nofail", "x-systemd.automount"], ["rw", "relatime"])).toEqual([
      "noexec",
    ]);
    expect(missingOpts(["size=1m", "mode=755"], ["rw", "size=1024k", "mode=700"])).toEqual(["mode=755"]);
  });
});

describe("mount.mounted (real tmpfs)", () => {
  it("mounts, is idempotent, never remounts unless remount: true; unmounted unmounts", async (t) => {
    if (canMount) {
      console.log(`skip: ${canMount}`);
      t.skip();
    }
    const p = { name: mnt, device: "tmpfs", fstype: "tmpfs", opts: "size=1m", config: fstab };
    const dry = await runState(mounted, p, ctx(true));
    expect(dry.changes).toEqual({ persist: "new", mount: true });
    expect(await isMounted()).toBeUndefined();

    const first = await runState(mounted, p, ctx());
    expect(first.result, first.comment).toBe(true);
    expect((await isMounted())?.fstype).toBe("tmpfs");
    expect((await runState(mounted, p, ctx())).changed).toBe(false);

    // Options differ: noted, not remounted by default.
    const noRemount = await runState(mounted, { ...p, opts: "size=1m,noexec", persist: false }, ctx());
    expect(noRemount.changed).toBe(false);
    expect(noRemount.comment).toMatch(/without noexec.*not remounting/);
    expect((await isMounted())?.opts).not.toContain("noexec");
    const re = await runState(
      mounted,
      { ...p, opts: "size=1m,noexec", persist: false, remount: true },
      ctx(),
    );
    expect(re.result, re.comment).toBe(true);
    expect(re.changes).toEqual({ remount: { opts: ["noexec"] } });
    expect((await isMounted())?.opts).toContain("noexec");

    // A different device on the mount point is an error, not a silent remount.
    const other = await runState(mounted, { ...p, device: "/dev/zz-none", persist: false }, ctx());
    expect(other.result).toBe(false);
    expect(other.comment).toMatch(/mounted from tmpfs/);

    const um = await runState(unmounted, { name: mnt }, ctx());
    expect(um.changes).toEqual({ umount: true });
    expect(await isMounted()).toBeUndefined();
    expect((await runState(unmounted, { name: mnt }, ctx())).changed).toBe(false);
  });
});
