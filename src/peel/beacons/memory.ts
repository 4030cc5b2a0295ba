/**
 * `memory` (Salt's `memusage`): memory use over `percent`. An event every interval while over.
 * Data: `{memusage, threshold}` in percent of total memory (used = total - available).
 */
import { freemem, totalmem } from "node:os";
import { type BeaconModule, percent } from "./types.js";

export const beacon: BeaconModule = {
  doc: "Memory use over a threshold: `percent: 90%`; data {memusage, threshold}.",
  keys: ["percent"],
  create(options) {
    const threshold = percent(options.percent);
    if (threshold === undefined)
      throw new Error(`percent ${JSON.stringify(options.percent)} is not a percentage (90%)`);
    return {
      async poll() {
        const total = totalmem();
        const used = Math.round(((total - freemem()) / total) * 1000) / 10;
        return used >= threshold ? [{ memusage: used, threshold }] : [];
      },
    };
  },
};
