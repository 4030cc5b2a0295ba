/**
 * Every test file's `zester local` runs keep their revert records in a temp dir of their own,
 * not in the machine's default /var/lib/zester/local/revert: CI leaves nothing behind, and a
 * run kept by one test is never listed or reverted by another. Children inherit it through
 * ZESTER_REVERT_DIR; a test that passes --revert-dir still wins.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";

const dir = mkdtempSync(join(tmpdir(), "zester-test-revert-"));
process.env.ZESTER_REVERT_DIR = dir;

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
