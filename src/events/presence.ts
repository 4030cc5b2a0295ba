/**
 * `_master/peel/<id>/online` and `_master/peel/<id>/offline`, from the heartbeats every master
 * follows. Every master announces, and each announcement's id is derived from the peel and the
 * heartbeat it is about, so the stream stores each transition once. Peels already online when the
 * master starts are not announced again.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { derivedKsuid } from "./derived-id.js";
import { emitMasterEvent, masterTags } from "./master-events.js";

const CHECK_MS = 5_000;

export class PresenceAnnouncer {
  private readonly last = new Map<string, { at: number; rev: number }>();
  private readonly online = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly masterId: string,
    private readonly onlineWithinMs: number,
  ) {}

  /** Starts from the peels online now (not announced) and checks for silent ones. */
  start(onlineNow: Iterable<[peel: string, at: number]>): void {
    for (const [peel, at] of onlineNow) {
      this.online.add(peel);
      this.last.set(peel, { at, rev: 0 });
    }
    this.timer = setInterval(() => this.sweep(), CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** A heartbeat write (`at` its time, `rev` its KV revision); undefined `at` for a deleted key. */
  beat(peel: string, at: number | undefined, rev: number): void {
    if (at === undefined) {
      this.offline(peel);
      return;
    }
    this.last.set(peel, { at, rev });
    if (this.online.has(peel) || Date.now() - at > this.onlineWithinMs) return;
    this.online.add(peel);
    emitMasterEvent(
      this.nc,
      masterTags.peelOnline(peel),
      { peel, heartbeat_at: new Date(at).toISOString(), master: this.masterId },
      { id: derivedKsuid(new Date(at), "online", peel, String(rev)) },
    );
  }

  private sweep(now = Date.now()): void {
    for (const peel of [...this.online]) {
      const l = this.last.get(peel);
      if (l === undefined || now - l.at > this.onlineWithinMs) this.offline(peel);
    }
  }

  private offline(peel: string): void {
    if (!this.online.delete(peel)) return;
    const l = this.last.get(peel);
    const at = l?.at ?? Date.now();
    emitMasterEvent(
      this.nc,
      masterTags.peelOffline(peel),
      { peel, last_heartbeat_at: new Date(at).toISOString(), master: this.masterId },
      { id: derivedKsuid(new Date(at), "offline", peel, String(l?.rev ?? 0)) },
    );
  }
}
