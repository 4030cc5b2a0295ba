/**
 * Tests that drive the CLI run the built entry points. `npm test` builds once before vitest
 * starts; tests never rebuild themselves, since a rebuild rewrites dist/ under test files that
 * are running in parallel.
 */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** For tests that already know their entry point's path. */
export function requireBuilt(bin: string): void {
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`npm run build\` first (\`npm test\` does)`);
}
