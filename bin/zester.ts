#!/usr/bin/env node
import { main } from "../src/cli/main.js";

// `zester ... | head`: a reader that went away ends the command quietly, as it would a C tool.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
  process.exit(process.exitCode ?? 0);
});

process.exitCode = await main(process.argv.slice(2));
// The command is done: a connection or timer that some library failed to release must not keep
// the process alive (the timer is unref'd, so a clean exit never waits for it).
setTimeout(() => process.exit(), 2000).unref();
