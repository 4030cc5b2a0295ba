/**
 * A peel's (or the CLI's) reader of the fleet's basket: the target is matched on the ids found in
 * the bucket and, when it looks at facts, on the facts those peels published.
 */
import type { KV } from "@nats-io/kv";
import { type BasketRow, basketTarget } from "../../modules/basket.js";
import { peelIdsOnly } from "../../target/index.js";
import { readFunction } from "./store.js";

async function factsOf(facts: KV, peel: string): Promise<Record<string, unknown> | undefined> {
  const e = await facts.get(peel);
  if (e?.operation !== "PUT") return undefined;
  try {
    const v = e.json<unknown>();
    return v !== null && typeof v === "object" && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Rows of `fn` for the peels `target` matches. */
export async function basketRows(
  kv: { basket: KV; facts: KV },
  target: string,
  fn: string,
): Promise<BasketRow[]> {
  const m = basketTarget(target);
  const idsOnly = peelIdsOnly(m.ast) !== undefined;
  return readFunction(kv.basket, fn, async (peels) => {
    const keep = new Set<string>();
    await Promise.all(
      peels.map(async (id) => {
        const facts = idsOnly ? {} : await factsOf(kv.facts, id);
        if (facts && m.match({ id, facts })) keep.add(id);
      }),
    );
    return keep;
  });
}
