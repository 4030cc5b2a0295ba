/**
 * How fast masters notice each other's death. A master beats every MASTER_BEAT_MS and counts
 * as dead once its last beat is older than MASTER_DEAD_AFTER_MS (three missed beats and a
 * margin for a busy event loop); the survivors look for its jobs every ORPHAN_SWEEP_MS. Together
 * they bound how long after the owner's death its jobs are taken over (about 13 s), which is what
 * docs/scale.md promises ("within 15 s").
 */
export const MASTER_BEAT_MS = 3_000;
export const MASTER_DEAD_AFTER_MS = 10_000;
export const ORPHAN_SWEEP_MS = 3_000;
