export * from "./event.js";
export * from "./master-events.js";
export * from "./publish.js";
export * from "./watch.js";
