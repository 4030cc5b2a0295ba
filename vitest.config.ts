import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Revert records go to a temp dir per test file, never the machine's default.
    setupFiles: ["test/support/revert-dir.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // Integration tests start real nats-server processes; two cores are the norm here.
    maxWorkers: 2,
  },
});
