/** What one kind of resource (a path, a package, a service, ...) must do to be revertable. */
import type { Plan, UndoRef } from "../../modules/types.js";
import type { Observed, PreImage } from "../record.js";
import type { RevertStore } from "../store.js";

export interface RestoreContext {
  store: RevertStore;
  /** force=true: restore even though the resource changed again since the run. */
  force: boolean;
  signal?: AbortSignal;
}

export interface RevertKind {
  /** The resource now: small, comparable JSON (no contents, digests instead). */
  observe(ref: UndoRef, signal?: AbortSignal): Promise<Observed>;
  /** observe() plus whatever restore needs (contents kept in the store, hashes). */
  capture(ref: UndoRef, store: RevertStore, signal?: AbortSignal): Promise<PreImage>;
  /**
   * A plan that puts the resource back as `pre` found it: a change plan (apply restores), a
   * failed plan (the reason it cannot), never a half-change. `now` is observe() now.
   */
  restore(ref: UndoRef, pre: PreImage, now: Observed, ctx: RestoreContext): Promise<Plan>;
}
