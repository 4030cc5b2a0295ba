/** The operator's side of the admin services: one request per operation, answered by a master. */
import type { NatsConnection } from "@nats-io/transport-node";
import { decode, encode } from "../bus/codec.js";
import { isNoResponders } from "../bus/errors.js";
import { type AdminOp, type AdminReply, type AdminRequest, adminSubject } from "./protocol.js";

export class EnrollAdminError extends Error {
  override name = "EnrollAdminError";
}

/**
 * Sends one admin request and returns the reply; a reply with `ok: false` and no partial result
 * throws. "No responders" means no master runs the enrollment service.
 */
export async function enrollAdmin(
  nc: NatsConnection,
  op: AdminOp,
  req: AdminRequest,
  timeoutMs = 15_000,
): Promise<AdminReply> {
  const subject = adminSubject(op);
  let data: Uint8Array;
  try {
    data = (await nc.request(subject, encode(req), { timeout: timeoutMs })).data;
  } catch (err) {
    if (isNoResponders(err)) {
      throw new EnrollAdminError(
        `no master answered on ${subject} (is zester-master running with enrollment?)`,
      );
    }
    throw err;
  }
  const reply = decode<AdminReply>(data);
  if (!reply.ok && (reply.peels === undefined || reply.peels.length === 0)) {
    throw new EnrollAdminError(reply.error ?? `enroll ${op} failed`);
  }
  return reply;
}
