/**
 * One test file at a time changes the machine's package database. Vitest runs files in parallel,
 * and apt/dpkg refuse to start while another run holds their locks (a test that holds those locks
 * on purpose makes every other apt call fail at once), so files that install, remove or lock
 * packages take this machine-wide test lock first. A directory is the lock: mkdir is atomic, and
 * the holder's pid inside lets a lock left by a killed run be taken over.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

const LOCK_DIR = "/tmp/zester-test-packages.lock";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Waits (up to `timeoutMs`) for the package-test lock; the returned function releases it. */
export async function holdPackageTestLock(timeoutMs = 600_000): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await mkdir(LOCK_DIR);
      await writeFile(`${LOCK_DIR}/pid`, String(process.pid));
      return async () => {
        await rm(LOCK_DIR, { recursive: true, force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = Number((await readFile(`${LOCK_DIR}/pid`, "utf8").catch(() => "")).trim());
    // A lock without a pid file may be one being taken right now: only a dead holder's is stale.
    if (holder > 0 && !alive(holder)) await rm(LOCK_DIR, { recursive: true, force: true });
    if (Date.now() > deadline)
      throw new Error(`package-test lock ${LOCK_DIR} still held by pid ${holder || "?"}`);
    await sleep(200);
  }
}
