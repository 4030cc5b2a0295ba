/**
 * Events the master makes about the system (`zester.event._master.>`, match key
 * `_master/<tag>`). Their tags are fixed here so reactor rules and the docs can name them.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { MASTER_ORIGIN, type ZesterEvent } from "./event.js";
import { emitEvent } from "./publish.js";

export const masterTags = {
  jobNew: (jid: string) => `job/${jid}/new`,
  jobReturn: (jid: string, peel: string) => `job/${jid}/ret/${peel}`,
  jobDone: (jid: string) => `job/${jid}/done`,
  peelOnline: (peel: string) => `peel/${peel}/online`,
  peelOffline: (peel: string) => `peel/${peel}/offline`,
  enrollment: (peel: string, what: "pending" | "approved" | "rejected") => `enroll/${peel}/${what}`,
  treePublished: (tree: "states" | "settings" | "reactor") => `${tree}/published`,
  reactorRejected: "reactor/rejected",
} as const;

/** Publishes a master event without waiting for the stream (never holds up the caller). */
export function emitMasterEvent(
  nc: NatsConnection,
  tag: string,
  data: object,
  opts: { id?: string; depth?: number } = {},
): ZesterEvent | undefined {
  if (nc.isClosed()) return undefined;
  return emitEvent(nc, { origin: MASTER_ORIGIN, tag, data, ...opts });
}
