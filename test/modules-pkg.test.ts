/**
 * Real apt runs: installs two small packages that are not installed (sl, figlet), removes one,
 * purges the other, and leaves the machine as it found it.
 */
import { spawn } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aptBackend, desiredSpecs, family } from "../src/modules/pkg.js";
import { family as repoFamily } from "../src/modules/pkgrepo.js";
import { APT_ENV, aptRemoveArgv, dpkgQueryArgv, parseDpkgQuery } from "../src/modules/providers/apt.js";
import { run } from "../src/util/exec.js";
import { moduleContext, runState, tempDir } from "./support/module-context.js";
import { holdPackageTestLock } from "./support/package-lock.js";

const state = (n: string) => family.states[n]!;
const exec = (n: string) => family.exec![n]!;
const PKGS = ["sl", "figlet"];
const facts = { os_family: "Debian", pkg_manager: "apt" };
const ctx = (test = false) => moduleContext({ test, facts, id: "pkgs" });

async function dpkg() {
  return parseDpkgQuery((await run(dpkgQueryArgv())).stdout);
}

const haveApt = (await run(["sh", "-c", "command -v apt-get"]).catch(() => ({ retcode: 1 }))).retcode === 0;
let preinstalled: string[] = [];
let usable = haveApt;
let releasePackageLock: (() => Promise<void>) | undefined;

beforeAll(async () => {
  if (!haveApt) return;
  releasePackageLock = await holdPackageTestLock();
  const db = await dpkg();
  preinstalled = PKGS.filter((p) => db.get(p)?.installed || db.get(p)?.configOnly);
  // Only packages we can remove afterwards: if one is already there, the real-install tests are skipped.
  if (preinstalled.length > 0) usable = false;
}, 600_000);

afterAll(async () => {
  try {
    if (!usable) return;
    const db = await dpkg();
    const left = PKGS.filter((p) => db.get(p)?.installed || db.get(p)?.configOnly);
    if (left.length > 0) await run(aptRemoveArgv(left, true), { env: { ...APT_ENV } });
  } finally {
    await releasePackageLock?.();
  }
});

describe("pkg params", () => {
  it("accepts names and {name: version} maps, rejects option-like names", () => {
    expect(desiredSpecs({ pkgs: ["a", { b: "1.0" }] })).toEqual([
      { name: "a" },
      { name: "b", version: "1.0" },
    ]);
    expect(desiredSpecs({ name: "c", version: "2*" })).toEqual([{ name: "c", version: "2*" }]);
    expect(() => desiredSpecs({ name: "-oAPT::x" })).toThrow(/invalid package name/);
  });
});

describe.runIf(haveApt)("pkg with apt (real)", () => {
  it("fails in the plan for a package with no candidate", async () => {
    const r = await runState(state("installed"), { name: "zz-no-such-package-zz" }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/No installation candidate for zz-no-such-package-zz/);
  });

  it("installed: test mode, one install for the list, idempotent, hold, removed (drift detected), purged", async (t) => {
    if (!usable) {
      console.log(`skip: ${preinstalled.join(", ")} already installed; not touching them`);
      t.skip();
    }
    const dry = await runState(state("installed"), { pkgs: PKGS }, ctx(true));
    expect(dry.result, dry.comment).toBe(true);
    expect(dry.pending).toBe(true);
    expect(Object.keys(dry.changes).sort()).toEqual(["figlet", "sl"]);
    expect((await dpkg()).get("sl")?.installed ?? false).toBe(false);

    const first = await runState(state("installed"), { pkgs: PKGS }, ctx());
    expect(first.result, first.comment).toBe(true);
    expect(first.changed).toBe(true);
    expect(first.changes.sl).toMatchObject({ old: "" });
    expect((first.changes.sl as { new: string }).new).toMatch(/^\d/);
    const db = await dpkg();
    expect(db.get("sl")?.installed).toBe(true);
    expect(db.get("figlet")?.installed).toBe(true);

    const again = await runState(state("installed"), { pkgs: PKGS }, ctx());
    expect(again.result).toBe(true);
    expect(again.changed).toBe(false);
    expect(again.comment).toMatch(/already installed/);
    const latest = await runState(state("latest"), { pkgs: PKGS }, ctx());
    expect(latest.changed, latest.comment).toBe(false);

    // hold/unhold go through apt-mark (no apt-get call).
    const held = await runState(state("installed"), { name: "sl", hold: true }, ctx());
    expect(held.result, held.comment).toBe(true);
    expect(held.changes.sl).toMatchObject({ hold: { old: false, new: true } });
    expect((await dpkg()).get("sl")?.held).toBe(true);
    expect((await runState(state("installed"), { name: "sl", hold: true }, ctx())).changed).toBe(false);
    const unheld = await runState(state("installed"), { name: "sl", hold: false }, ctx());
    expect(unheld.changes.sl).toMatchObject({ hold: { old: true, new: false } });
    expect((await dpkg()).get("sl")?.held).toBe(false);

    expect(await exec("version").run({ names: "sl" }, ctx())).toMatch(/^\d/);
    const all = (await exec("list_pkgs").run({}, ctx())) as Record<string, string>;
    expect(all.figlet).toBe(db.get("figlet")?.version);

    // removed keeps config files; purged clears them. Both single apt-get calls.
    const rm = await runState(state("removed"), { name: "sl" }, ctx());
    expect(rm.result, rm.comment).toBe(true);
    expect(rm.changes.sl).toMatchObject({ new: "" });
    expect((await dpkg()).get("sl")?.installed ?? false).toBe(false);
    expect((await runState(state("removed"), { name: "sl" }, ctx())).changed).toBe(false);

    // Drift: sl was removed behind the state's back; installed repairs it... (checked in test mode only
    // to keep apt calls few).
    const drift = await runState(state("installed"), { pkgs: PKGS }, ctx(true));
    expect(Object.keys(drift.changes)).toEqual(["sl"]);

    const purgeDry = await runState(state("purged"), { pkgs: PKGS }, ctx(true));
    expect(Object.keys(purgeDry.changes).sort()).toEqual(["figlet"]);
    const pg = await runState(state("purged"), { pkgs: PKGS }, ctx());
    expect(pg.result, pg.comment).toBe(true);
    const after = await dpkg();
    expect(after.get("figlet")).toBeUndefined();
    expect((await runState(state("purged"), { pkgs: PKGS }, ctx())).changed).toBe(false);
  }, 600_000);
});

/**
 * Holds apt's and dpkg's locks the way another apt/dpkg run does (fcntl locks on the lock files),
 * until release() is called.
 */
async function holdPackageLocks(): Promise<{ pid: number; release(): Promise<void> }> {
  const py = [
    "import fcntl, os, signal, sys",
    // Blocking, but bounded: an apt run outside the tests (unattended-upgrades) may hold them briefly.
    "signal.alarm(120)",
    "for p in sys.argv[1:]:",
    "    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o640)",
    "    fcntl.lockf(fd, fcntl.LOCK_EX)",
    "signal.alarm(0)",
    "print('held', flush=True)",
    "sys.stdin.read()",
  ].join("\n");
  const locks = ["/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock"];
  const child = spawn("/usr/bin/python3", ["-c", py, ...locks], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`lock holder exited (${code}): the locks are taken`)));
  });
  return {
    pid: child.pid!,
    release: async () => {
      child.stdin.end();
      await exited;
    },
  };
}

describe.runIf(haveApt && process.getuid?.() === 0)("pkg while another apt/dpkg run holds the lock", () => {
  it("waits for the lock to be released (apt-get update alone would fail at once)", async () => {
    const lock = await holdPackageLocks();
    let released = false;
    const call = exec("refresh_db")
      .run({}, ctx())
      .finally(() => {
        if (!released) lock.release();
      });
    await new Promise((r) => setTimeout(r, 1500));
    released = true;
    await lock.release();
    expect(await call).toBe(true);
  }, 120_000);

  it("says which process holds which lock when it is not released in time", async () => {
    const lock = await holdPackageLocks();
    try {
      const backend = aptBackend(undefined, 1500);
      for (const [what, call, path] of [
        ["apt-get update", () => backend.refresh(), "/var/lib/apt/lists/lock"],
        ["apt-mark hold", () => backend.hold!(["bash"], true), "/var/lib/dpkg/lock-frontend"],
        ["apt-get install", () => backend.install([{ name: "sl" }], false), "/var/lib/dpkg/lock-frontend"],
      ] as const) {
        const err = await call().then(
          () => undefined,
          (e: unknown) => e as Error,
        );
        expect(err?.message, what).toContain(`${what}: the package manager is busy: ${path} is held by`);
        expect(err?.message, what).toMatch(/not released within 2 s/);
      }
      // apt names the holder.
      const err = await backend.refresh().catch((e: Error) => e);
      expect((err as Error).message).toContain(`process ${lock.pid} (python3)`);
    } finally {
      await lock.release();
    }
    expect((await dpkg()).get("bash")?.held).toBe(false);
  }, 120_000);
});

const KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZfake\n-----END PGP PUBLIC KEY BLOCK-----";

describe("pkgrepo (files in a temp dir; apt-get update is never run)", () => {
  const managed = repoFamily.states.managed!;
  const absent = repoFamily.states.absent!;

  it("apt one-line source with a key_text keyring: test mode, write, idempotent, drift, absent", async () => {
    const { dir, cleanup } = await tempDir("zester-repo-");
    try {
      const file = join(dir, "sources.list.d/example.list");
      const keyring = join(dir, "keyrings/example.asc");
      const p = { name: "deb https://repo.example.com/debian bookworm main", file, keyring, key_text: KEY };
      const dry = await runState(managed, p, ctx(true));
      expect(dry.pending).toBe(true);
      expect(dry.diff).toContain(`+deb [signed-by=${keyring}] https://repo.example.com/debian bookworm main`);
      await expect(stat(file)).rejects.toThrow(/ENOENT/);

      const first = await runState(managed, p, ctx());
      expect(first.result, first.comment).toBe(true);
      expect(first.changes).toEqual({ [file]: "new", [keyring]: "new" });
      expect(await readFile(file, "utf8")).toBe(
        `deb [signed-by=${keyring}] https://repo.example.com/debian bookworm main\n`,
      );
      expect(await readFile(keyring, "utf8")).toBe(`${KEY}\n`);
      expect((await runState(managed, p, ctx())).changed).toBe(false);

      await import("node:fs/promises").then((fs) => fs.writeFile(file, "deb http://drift bookworm main\n"));
      const fixed = await runState(managed, p, ctx());
      expect(fixed.changes).toEqual({ [file]: "updated" });

      const gone = await runState(absent, { name: p.name, file, keyring }, ctx());
      expect(gone.changes).toEqual({ [file]: "removed", [keyring]: "removed" });
      await expect(stat(file)).rejects.toThrow(/ENOENT/);
      expect((await runState(absent, { name: p.name, file, keyring }, ctx())).changed).toBe(false);
    } finally {
      await cleanup();
    }
  });

  it("apt deb822 .sources and yum .repo files", async () => {
    const { dir, cleanup } = await tempDir("zester-repo-");
    try {
      const file = join(dir, "example.sources");
      const r = await runState(
        managed,
        {
          name: "example",
          file,
          uris: "https://repo.example.com/debian",
          suites: ["bookworm"],
          components: ["main", "contrib"],
          keyring: "/etc/apt/keyrings/example.gpg",
        },
        ctx(),
      );
      expect(r.result, r.comment).toBe(true);
      expect(await readFile(file, "utf8")).toBe(
        "Types: deb\nURIs: https://repo.example.com/debian\nSuites: bookworm\nComponents: main contrib\nSigned-By: /etc/apt/keyrings/example.gpg\n",
      );
      const repo = join(dir, "epel.repo");
      const y = await runState(
        managed,
        {
          name: "epel",
          file: repo,
          baseurl: "https://x/epel/9",
          gpgkey: "file:///etc/pki/rpm-gpg/EPEL",
          humanname: "EPEL 9",
        },
        moduleContext({ facts: { pkg_manager: "dnf" } }),
      );
      expect(y.result, y.comment).toBe(true);
      expect(await readFile(repo, "utf8")).toBe(
        "[epel]\nname=EPEL 9\nbaseurl=https://x/epel/9\nenabled=1\ngpgcheck=1\ngpgkey=file:///etc/pki/rpm-gpg/EPEL\n",
      );
      const bad = await runState(
        managed,
        { name: "epel", file: repo },
        moduleContext({ facts: { pkg_manager: "dnf" } }),
      );
      expect(bad.result).toBe(false);
      expect(bad.comment).toMatch(/baseurl or mirrorlist/);
    } finally {
      await cleanup();
    }
  });
});
