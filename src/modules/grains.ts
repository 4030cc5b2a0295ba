import { factsFamily } from "./facts.js";

/** Salt spelling of facts.*. */
export const family = factsFamily("grains");
