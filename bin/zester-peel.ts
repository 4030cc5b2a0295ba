#!/usr/bin/env node
import { setFlagsFromString } from "node:v8";
import { main } from "../src/cli/main.js";

// A peel is idle most of the time, so by default it trades peak speed for resident memory
// (measured in bench/ footprint: about 68 -> 51 MiB idle): a 1 MiB young generation (default
// 16), V8's size-over-speed heuristics and no optimising tier (Sparkplug still compiles hot code).
// The cost shows on compile-heavy work: a from-scratch compile of 220 states goes from 42 to
// 57 ms. ZESTER_PEEL_JIT=full keeps V8's defaults for machines where memory is not the concern.
const jit = process.env.ZESTER_PEEL_JIT ?? "lean";
if (jit === "lean") setFlagsFromString("--max-semi-space-size=1 --optimize-for-size --no-opt");
else if (jit !== "full") {
  process.stderr.write(`zester-peel: ZESTER_PEEL_JIT must be "lean" or "full", not ${JSON.stringify(jit)}\n`);
  process.exit(2);
}

process.exitCode = await main(["peel-daemon", ...process.argv.slice(2)]);
// The command is done: a connection or timer that some library failed to release must not keep
// the process alive (the timer is unref'd, so a clean exit never waits for it).
setTimeout(() => process.exit(), 2000).unref();
