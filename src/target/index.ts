export type { DataOp, DataSource, DataSplit, PeelView, TargetNode } from "./ast.js";
export { compilePredicate, compileTarget, type IdOnlyTarget, type Matcher, peelIdsOnly } from "./matcher.js";
export {
  type ParseOptions,
  parseTarget,
  parseTopTarget,
  TARGET_PREFIXES,
  TargetSyntaxError,
} from "./parse.js";
export { TargetIndex } from "./target-index.js";
