/** The settings (pillar) library: what the master and the peel call. */
export {
  decryptValue,
  ENC_PATTERN,
  ENC_PREFIX,
  ENC_VALUE,
  encryptValue,
  openPeelSecrets,
  sealForPeel,
} from "./crypto.js";
export { NoSnapshotError, SecretError, SettingsError } from "./errors.js";
export {
  assertCurvePublicKey,
  ensurePeelCurveKey,
  isCurvePublicKey,
  loadMasterCurve,
  loadMasterCurvePub,
  MASTER_CURVE_FILES,
  PEEL_CURVE_FILE,
  peelCurveKeyPath,
  writeMasterCurveKey,
} from "./keys.js";
export { deepMerge } from "./merge.js";
export {
  type PeelForSealing,
  type PeelResolveOptions,
  type PeelSettings,
  type PreparedSettings,
  prepareSettingsTree,
  resolvePeelSettings,
  sealSettingsForPeel,
} from "./pipeline.js";
export {
  MASK,
  maskSecrets,
  PLACEHOLDER_PATTERN,
  placeholder,
  placeholderIds,
  placeholderPaths,
  secretMasker,
  substituteSecrets,
} from "./placeholders.js";
export {
  peelSecretIds,
  type ResolvedSettings,
  type ResolveSettingsOptions,
  resolveSettings,
  resolveSettingsDetailed,
  type SettingsRef,
  settingsTopRefs,
} from "./resolve.js";
export {
  type ExtractedSecret,
  openExtractedSecrets,
  type SanitizedTree,
  sanitizeSettingsTree,
  secretIdsInFiles,
} from "./sanitize.js";
export {
  loadSnapshot,
  type SettingsSnapshot,
  SNAPSHOT_FILE,
  saveSnapshot,
  snapshotPath,
} from "./snapshot.js";
export {
  DEFAULT_SETTINGS_DIR,
  dirReader,
  readSettingsTree,
  type SettingsFileReader,
  type SettingsFiles,
  TOP_FILES,
  toReader,
} from "./source.js";
export { ENCRYPTED_TAG, encryptedTag } from "./yaml-tag.js";
