#!/usr/bin/env node
import { main } from "../src/cli/main.js";

process.exitCode = await main(["peel-daemon", ...process.argv.slice(2)]);
