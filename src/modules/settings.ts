import { settingsFamily } from "./facts.js";

/** settings.items|get|keys. */
export const family = settingsFamily("settings");
