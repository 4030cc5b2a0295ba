import { settingsFamily } from "./facts.js";

/** Salt spelling of settings.*. */
export const family = settingsFamily("pillar");
