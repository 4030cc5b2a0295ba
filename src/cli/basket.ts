/** `zester basket get '<target>' <function>` and `zester basket list <peel>`: read the basket bucket. */

import { Command } from "commander";
import { openKv } from "../bus/bootstrap.js";
import { assertSubjectTail, isValidPeelId } from "../bus/names.js";
import { basketTarget } from "../modules/basket.js";
import { basketRows } from "../peel/basket/reader.js";
import { readPeel } from "../peel/basket/store.js";
import { errText } from "../util/errors.js";
import { addConnectOptions, type ConnectFlags, connectWith } from "./connect-options.js";
import { UsageError } from "./errors.js";
import { parseFormat, printData, table } from "./job.js";
import { runProgram } from "./nats-auth.js";

const VALUE_MAX = 200;

/** Peel-written values on the operator's terminal: compact JSON, no control characters, bounded. */
export function valueCell(v: unknown): string {
  const text = (typeof v === "string" ? v : (JSON.stringify(v) ?? "null")).replace(
    /[\u0000-\u001f\u007f-\u009f]/g,
    "?",
  );
  return text.length > VALUE_MAX ? `${text.slice(0, VALUE_MAX - 1)}…` : text;
}

async function withBuckets<T>(
  flags: ConnectFlags,
  body: (kv: {
    basket: Awaited<ReturnType<typeof openKv>>;
    facts: Awaited<ReturnType<typeof openKv>>;
  }) => Promise<T>,
): Promise<T> {
  const nc = await connectWith(flags);
  try {
    const [basket, facts] = await Promise.all([openKv(nc, "basket"), openKv(nc, "facts")]);
    return await body({ basket, facts });
  } finally {
    await nc.close();
  }
}

export async function run(argv: string[]): Promise<number> {
  const program = new Command("zester basket").description("peel-to-peel data (Salt's mine)");
  addConnectOptions(
    program
      .command("get")
      .description("what the peels matching <target> published under <function>: PEEL VALUE, sorted by peel")
      .argument("<target>", "target expression (`web*`, `role:web`, `G@os:linux and not L@db1`)")
      .argument("<function>", "basket function name, e.g. network.ip_addrs")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (target: string, fn: string, opts: ConnectFlags & { format?: string }) => {
    const format = parseFormat(opts.format);
    try {
      // Checked before connecting, so a typo is a usage error (exit 1) without a round trip.
      basketTarget(target);
      assertSubjectTail("basket function name", fn);
    } catch (err) {
      throw new UsageError(errText(err));
    }
    const rows = await withBuckets(opts, (kv) => basketRows(kv, target, fn));
    if (format !== "text") return printData(rows, format);
    process.stdout.write(
      table(
        ["PEEL", "VALUE"],
        rows.map((r) => [r.peel_id, valueCell(r.value)]),
      ),
    );
  });
  addConnectOptions(
    program
      .command("list")
      .description("every basket entry of one peel: FUNCTION UPDATED VALUE")
      .argument("<peel>", "peel id")
      .option("--format <fmt>", "text, json or yaml", "text"),
  ).action(async (peel: string, opts: ConnectFlags & { format?: string }) => {
    const format = parseFormat(opts.format);
    if (!isValidPeelId(peel)) throw new UsageError(`invalid peel id ${JSON.stringify(peel)}`);
    const entries = await withBuckets(opts, (kv) => readPeel(kv.basket, peel));
    const out = entries.map((e) => ({
      function: e.function,
      value: e.value,
      updated_at: e.ts,
      interval_s: e.interval_s,
    }));
    if (format !== "text") return printData(out, format);
    process.stdout.write(
      table(
        ["FUNCTION", "UPDATED", "VALUE"],
        out.map((e) => [e.function, e.updated_at, valueCell(e.value)]),
      ),
    );
  });
  return runProgram(program, argv);
}
