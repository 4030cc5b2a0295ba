export {
  Dispatcher,
  KILL_SUBJECT,
  type KillReply,
  type KillRequest,
  MASTER_QUEUE,
  type ResolveReply,
  type ResolveRequest,
} from "./dispatcher.js";
export { type FactsListener, FleetView } from "./fleet-view.js";
export type { JobDoneEvent } from "./job-tracker.js";
export { LEASE_RENEW_MS, Lease } from "./lease.js";
export {
  DEFAULT_STATES_DIR,
  defaultMasterId,
  Master,
  type MasterConfig,
  type MasterHeartbeat,
  STATE_PUBLISHER_LEASE,
  STATES_PUBLISH_SUBJECT,
} from "./master.js";
export {
  SETTINGS_PUBLISH_SUBJECT,
  SETTINGS_PUBLISHER_LEASE,
  SettingsPublisher,
  type SettingsPublishSummary,
  SettingsView,
} from "./settings.js";
export {
  blobKey,
  readLiveStates,
  StatePublisher,
  type StatePublishResult,
  scanTree,
} from "./state-publisher.js";
