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

/**
 * Which basket entries a peel may read. `account`: every entry of its NATS account (accounts
 * never see each other's buckets), what templates reading the fleet need. `own`: only its own
 * keys, for peels that must not learn anything about the rest of the fleet.
 */
export type BasketScope = "account" | "own";
export const BASKET_SCOPES: readonly BasketScope[] = ["account", "own"];

/** Reading one peel's own basket keys: direct gets and watches filtered to `<peel>.>`. */
function basketReadOwn(id: string): string[] {
  const stream = kvStream("basket");
  const own = `${kvKeySubject("basket", id)}.>`;
  return [
    `${JS_API}.DIRECT.GET.${stream}.${own}`,
    `${JS_API}.CONSUMER.CREATE.${stream}.*.${own}`,
    `${JS_API}.CONSUMER.INFO.${stream}.*`,
    `${JS_API}.CONSUMER.DELETE.${stream}.*`,
    `$JS.FC.${stream}.>`,
  ];
}

export function peelPermissions(peelId: string, opts: { basketScope?: BasketScope } = {}): RolePermissions {
  const id = peelId;
  const readable =
    opts.basketScope === "own" ? PEEL_READABLE_BUCKETS.filter((b) => b !== "basket") : PEEL_READABLE_BUCKETS;
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
        // Commands a master kept while this peel was offline (--queue): its own key only.
        kvDirectGetSubject("peel-queue", id),
        ...readable.flatMap(kvReadAll),
        ...(opts.basketScope === "own" ? basketReadOwn(id) : []),
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

export type PermissionSubject = Role | { peel: string; basketScope?: BasketScope };

export function permissionsFor(who: PermissionSubject): RolePermissions {
  if (typeof who === "object")
    return peelPermissions(who.peel, who.basketScope ? { basketScope: who.basketScope } : {});
  return who === "master" ? masterPermissions() : adminPermissions();
}
