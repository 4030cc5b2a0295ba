/** The connection options every program takes, as option-table entries (flag, env, file key). */
import { DEFAULT_AUTH_DIR } from "../bus/connect.js";
import type { OptionTable } from "./options.js";

export const DEFAULT_NATS_URL = "tls://nats:4222";

/** Whose creds file is the default: the operator's (admin), the master's or a peel's. */
export type ConnectRole = "admin" | "master" | "peel";

/** The connection options of every program, as config-table entries (flag, env, file key). */
export function connectOptions(role: ConnectRole) {
  const group = "Connection";
  return {
    nats_url: {
      kind: "string",
      default: DEFAULT_NATS_URL,
      valueName: "URL",
      group,
      help: "NATS server(s), comma-separated; tls:// only",
    },
    creds: {
      kind: "string",
      valueName: "FILE",
      group,
      help: "credentials",
      defaultText: role === "peel" ? "<auth-dir>/peels/<id>.creds" : `<auth-dir>/${role}.creds`,
    },
    ca: {
      kind: "string",
      valueName: "FILE",
      group,
      help: "CA bundle of the server certificate",
      defaultText: "<auth-dir>/nats-ca.crt",
    },
    auth_dir: {
      kind: "string",
      default: DEFAULT_AUTH_DIR,
      valueName: "DIR",
      group,
      help: "auth dir from `zester nats-auth init`",
    },
  } as const satisfies OptionTable;
}
