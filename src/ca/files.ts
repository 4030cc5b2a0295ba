/**
 * File names of the dev/test CA in an auth dir. Kept apart from ca.ts so that readers of an
 * auth dir (every peel) do not load the X.509 library, which costs ~17 MiB of resident memory.
 */
export const CA_FILES = {
  caCert: "nats-ca.crt",
  caKey: "nats-ca.key",
  serverCert: "nats-server.crt",
  serverKey: "nats-server.key",
} as const;
