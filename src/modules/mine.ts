/**
 * Salt's `mine.get` for Salt trees: `salt['mine.get']('role:web', 'network.ip_addrs', tgt_type='grain')`
 * answers Salt's shape, `{peel_id: value}`, from the same basket as `basket.get`.
 */
import { basketGet } from "./basket.js";
import type { ExecFunction, ModuleFamily } from "./types.js";

/** Salt's tgt_type names → the Zester target prefix that means the same. */
const TGT_TYPES: Readonly<Record<string, (t: string) => string>> = {
  glob: (t) => t,
  compound: (t) => t,
  pcre: (t) => `E@${t}`,
  list: (t) => `L@${t}`,
  grain: (t) => `G@${t}`,
  ipcidr: (t) => `S@${t}`,
};

const get: ExecFunction = {
  doc:
    "Salt's mine.get: `{peel_id: value}` of the peels matching `tgt` (interpreted by `tgt_type`: " +
    `${Object.keys(TGT_TYPES).join(", ")}) for basket function \`fun\`.`,
  params: {
    tgt: {
      type: ["string", "list"],
      required: true,
      aliases: ["target"],
      doc: "Target (a list for tgt_type=list).",
    },
    fun: { type: "string", required: true, aliases: ["function"], doc: "Basket function name." },
    tgt_type: {
      type: "string",
      default: "glob",
      aliases: ["expr_form"],
      enum: Object.keys(TGT_TYPES),
      doc: "How `tgt` is read.",
    },
  },
  positional: ["tgt", "fun", "tgt_type"],
  readOnly: true,
  run: async (p, ctx) => {
    const tgt = Array.isArray(p.tgt) ? p.tgt.map(String).join(",") : String(p.tgt);
    const type = typeof p.tgt_type === "string" ? p.tgt_type : "glob";
    const expr = TGT_TYPES[type]!(tgt);
    const rows = await basketGet(expr, String(p.fun), ctx);
    return Object.fromEntries(rows.map((r) => [r.peel_id, r.value]));
  },
};

export const family: ModuleFamily = {
  name: "mine",
  doc: "Salt's mine API over the basket (see `basket`).",
  states: {},
  exec: { get },
};
