/**
 * `load`: load averages outside their ranges, `averages: {1m: [0, 2], 5m: [0, 1.5], 15m: [0, 1]}`
 * (Salt's form). An event every interval while one is out of range; with `onchangeonly`, only
 * when the set of averages out of range changes. Data: `{1m, 5m, 15m, out_of_range: [..]}`.
 */
import { loadavg } from "node:os";
import { suggestion } from "../../util/suggest.js";
import { type BeaconModule, boolOption, isMapping } from "./types.js";

const PERIODS = ["1m", "5m", "15m"] as const;

export const beacon: BeaconModule = {
  doc: "Load averages outside [min, max]: `averages: {1m: [0, 2]}`; data {1m, 5m, 15m, out_of_range}.",
  keys: ["averages", "onchangeonly"],
  create(options) {
    const raw = options.averages;
    if (!isMapping(raw) || Object.keys(raw).length === 0)
      throw new Error("averages must map 1m, 5m or 15m to [min, max]");
    const ranges = Object.entries(raw).map(([p, r]) => {
      const i = (PERIODS as readonly string[]).indexOf(p);
      if (i < 0)
        throw new Error(`averages: unknown period "${p}"${suggestion(p, PERIODS)}; use 1m, 5m or 15m`);
      const [min, max] = Array.isArray(r) && r.length === 2 ? r : [];
      if (typeof min !== "number" || typeof max !== "number" || min > max)
        throw new Error(`averages.${p} must be [min, max] with min <= max`);
      return { period: p, index: i, min, max };
    });
    const onchangeonly = boolOption(options.onchangeonly, "onchangeonly", false);
    let last = "";
    return {
      async poll() {
        const avg = loadavg();
        const out = ranges.filter((r) => avg[r.index]! < r.min || avg[r.index]! > r.max).map((r) => r.period);
        const key = out.join(",");
        const changed = key !== last;
        last = key;
        if (out.length === 0 || (onchangeonly && !changed)) return [];
        return [{ "1m": avg[0], "5m": avg[1], "15m": avg[2], out_of_range: out }];
      },
    };
  },
};
