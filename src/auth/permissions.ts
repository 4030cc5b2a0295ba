/**
 * Subject permissions per role, embedded in user JWTs. The server enforces these; a peel's set
 * is the whole of what a compromised node can do on the bus, so it lists single subjects and
 * single KV keys wherever the protocol allows.
 *
 * KV on NATS 2.9 in terms of subjects:
 *   put    → publish `$KV.<bucket>.<key>` (a JetStream publish; the ack comes to the inbox)
 *   get    → request `$JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>` (allow_direct, last by subject)
 *            or `$JS.API.DIRECT.GET.KV_<bucket>` with a JSON body (by revision)
 *   open   → nothing (Kvm.open binds without asking the server)
 *   watch  → `$JS.API.CONSUMER.CREATE.KV_<bucket>.<name>.<filter>` (2.9 filtered-create API),
 *            `$JS.API.CONSUMER.INFO|DELETE.KV_<bucket>.<name>`, flow-control replies to
 *            `$JS.FC.KV_<bucket>.>`, messages delivered to the connection's inbox prefix
 */

import {
  type BucketName,
  JS_API,
  kvAllKeys,
  kvDirectGetSubject,
  kvKeySubject,
  kvStream,
  peelInboxPrefix,
  subjects,
} from "../bus/names.js";

export interface SubjectPermission {
  allow: string[];
  deny?: string[];
}

export interface RolePermissions {
  pub: SubjectPermission;
  sub: SubjectPermission;
  /** Allows publishing to the reply subject of a received request (max replies, ttl in ns; 0 = server default). */
  resp?: { max: number; ttl: number };
}

export type Role = "master" | "admin";

/** The subjects a client needs to read a bucket: direct get of any key, and watch/keys. */
function kvReadAll(bucket: BucketName): string[] {
  const stream = kvStream(bucket);
  return [
    `${JS_API}.DIRECT.GET.${stream}`,
    `${JS_API}.DIRECT.GET.${stream}.${kvAllKeys(bucket)}`,
    `${JS_API}.CONSUMER.CREATE.${stream}.*.${kvAllKeys(bucket)}`,
    `${JS_API}.CONSUMER.INFO.${stream}.*`,
    `${JS_API}.CONSUMER.DELETE.${stream}.*`,
    `$JS.FC.${stream}.>`,
  ];
}

/** Buckets every peel may read in full: shared file trees, and fleet data used in templates. */
export const PEEL_READABLE_BUCKETS: readonly BucketName[] = [
  "state-files",
  "settings-files",
  "facts",
  "basket",
];

export function peelPermissions(peelId: string): RolePermissions {
  const id = peelId;
  return {
    pub: {
      allow: [
        subjects.jobAnyAck(id),
        subjects.jobAnyReturn(id),
        subjects.eventsOf(id),
        subjects.fact(id),
        subjects.basketOf(id),
        kvKeySubject("facts", id),
        kvKeySubject("peel-heartbeat", id),
        `${kvKeySubject("basket", id)}.>`,
        `$KV.job-returns.*.${id}`,
        kvDirectGetSubject("secrets", id),
        ...PEEL_READABLE_BUCKETS.flatMap(kvReadAll),
      ],
    },
    sub: {
      allow: [subjects.cmd(id), subjects.jobAnyCancel(id), `${peelInboxPrefix(id)}.>`],
    },
    resp: { max: 1, ttl: 0 },
  };
}

export function masterPermissions(): RolePermissions {
  return {
    pub: { allow: [subjects.all, "$JS.>", "$KV.>", "_INBOX.>"] },
    sub: { allow: [subjects.all, "_INBOX.>"] },
    resp: { max: 1, ttl: 0 },
  };
}

/**
 * The operator CLI: asks masters to do things, sends operator events, and reads. It cannot
 * command peels, write KV or change streams directly.
 */
export function adminPermissions(): RolePermissions {
  return {
    pub: {
      allow: [
        subjects.dispatch,
        subjects.targetResolve,
        subjects.adminAll,
        subjects.adminSendEvents,
        subjects.reactorTest,
        `${JS_API}.INFO`,
        `${JS_API}.STREAM.NAMES`,
        `${JS_API}.STREAM.LIST`,
        `${JS_API}.STREAM.INFO.*`,
        `${JS_API}.STREAM.MSG.GET.*`,
        `${JS_API}.DIRECT.GET.>`,
        `${JS_API}.CONSUMER.CREATE.>`,
        `${JS_API}.CONSUMER.INFO.>`,
        `${JS_API}.CONSUMER.DELETE.>`,
        `${JS_API}.CONSUMER.MSG.NEXT.>`,
        "$JS.ACK.>",
        "$JS.FC.>",
      ],
      // Sealed secrets are for their peel only; the operator has no use for the ciphertext.
      deny: [
        `${JS_API}.DIRECT.GET.${kvStream("secrets")}`,
        `${JS_API}.DIRECT.GET.${kvStream("secrets")}.>`,
        `${JS_API}.STREAM.MSG.GET.${kvStream("secrets")}`,
        `${JS_API}.CONSUMER.CREATE.${kvStream("secrets")}`,
        `${JS_API}.CONSUMER.CREATE.${kvStream("secrets")}.>`,
      ],
    },
    sub: { allow: ["_INBOX.>", subjects.eventAll] },
  };
}

export type PermissionSubject = Role | { peel: string };

export function permissionsFor(who: PermissionSubject): RolePermissions {
  if (typeof who === "object") return peelPermissions(who.peel);
  return who === "master" ? masterPermissions() : adminPermissions();
}
