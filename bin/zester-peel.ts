#!/usr/bin/env node
import { setFlagsFromString } from "node:v8";
import { main } from "../src/cli/main.js";

// A peel is idle most of the time: a 1 MiB young generation (default 16) keeps its resident
// memory low; the cost is more frequent, cheap scavenges while it works.
setFlagsFromString("--max-semi-space-size=1");

process.exitCode = await main(["peel-daemon", ...process.argv.slice(2)]);
// The command is done: a connection or timer that some library failed to release must not keep
// the process alive (the timer is unref'd, so a clean exit never waits for it).
setTimeout(() => process.exit(), 2000).unref();
