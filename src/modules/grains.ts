import { grainsFamily } from "./facts.js";

/** Salt's grains: the facts under Salt's core grain names and values. */
export const family = grainsFamily("grains");
