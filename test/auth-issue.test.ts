import { Algorithms, decode, encodeUser, fmtCreds } from "@nats-io/jwt";
import {
  createAccount,
  createCurve,
  createOperator,
  createUser,
  fromPublic,
  fromSeed,
  type KeyPair,
  Prefix,
} from "@nats-io/nkeys";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { loadAccountSigner } from "../src/auth/auth-dir.js";
import { createEd25519KeyPair, fastKeyPair } from "../src/auth/ed25519.js";
import {
  type AccountSigner,
  createTrustHierarchy,
  decodeCredsJwt,
  issueRoleCreds,
  issueUserJwt,
  keyPairFromSeed,
  toUserClaims,
} from "../src/auth/hierarchy.js";
import { peelPermissions } from "../src/auth/permissions.js";
import { connect } from "../src/bus/connect.js";
import { peelInboxPrefix } from "../src/bus/names.js";
import { type StartedNats, startNats } from "./support/nats.js";

const td = new TextDecoder();
const te = new TextEncoder();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** Key names (recursively) of a JSON value: the layout of a claims object, without values. */
function layout(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(layout);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, layout(x)]));
  }
  return typeof v;
}

function jwtParts(jwt: string): { header: unknown; claims: Record<string, unknown> } {
  const [h, c] = jwt.split(".");
  return {
    header: JSON.parse(Buffer.from(h!, "base64url").toString()),
    claims: JSON.parse(Buffer.from(c!, "base64url").toString()),
  };
}

describe("fastKeyPair: node:crypto behind the nkeys KeyPair interface", () => {
  const pairs: [string, () => KeyPair][] = [
    ["nkeys user", createUser],
    ["nkeys account", createAccount],
    ["nkeys operator", createOperator],
    ["node:crypto user", () => createEd25519KeyPair(Prefix.User)],
    ["node:crypto account", () => createEd25519KeyPair(Prefix.Account)],
    ["node:crypto operator", () => createEd25519KeyPair(Prefix.Operator)],
  ];

  it.each(pairs)("%s: keys and signatures are byte-identical to nkeys'", (_name, make) => {
    for (let i = 0; i < 5; i++) {
      const kp = make();
      // A separate nkeys pair from the same seed: the adapter must not be compared with itself.
      const ref = fromSeed(kp.getSeed());
      const fast = fastKeyPair(kp);
      expect(fast.getPublicKey()).toBe(ref.getPublicKey());
      expect(fast.getPublicKey()).toBe(ref.getPublicKey()); // cached value stays right
      expect(td.decode(fast.getPrivateKey())).toBe(td.decode(ref.getPrivateKey()));
      expect(td.decode(fast.getSeed())).toBe(td.decode(ref.getSeed()));
      for (const text of ["", "zester", `${i}`.repeat(3000)]) {
        const data = te.encode(text);
        const sig = fast.sign(data);
        expect(hex(sig)).toBe(hex(ref.sign(data)));
        expect(ref.verify(data, sig)).toBe(true);
        expect(fast.verify(data, ref.sign(data))).toBe(true);
      }
    }
  });

  it("new keys are valid nkey seeds of the asked role, and distinct", () => {
    const seen = new Set<string>();
    for (const [role, seedStart, pubStart] of [
      [Prefix.User, "SU", "U"],
      [Prefix.Account, "SA", "A"],
      [Prefix.Operator, "SO", "O"],
    ] as const) {
      for (let i = 0; i < 50; i++) {
        const seed = td.decode(createEd25519KeyPair(role).getSeed());
        expect(seed).toMatch(new RegExp(`^${seedStart}[A-Z2-7]{56}$`));
        const pub = fromSeed(te.encode(seed)).getPublicKey();
        expect(pub.startsWith(pubStart)).toBe(true);
        expect(fromPublic(pub).getPublicKey()).toBe(pub); // checksum valid
        seen.add(seed);
      }
    }
    expect(seen.size).toBe(150);
  });

  it("leaves public-only and curve keys alone, wraps once, and stops working once cleared", () => {
    const pubOnly = fromPublic(createUser().getPublicKey());
    expect(fastKeyPair(pubOnly)).toBe(pubOnly);
    const curve = createCurve();
    expect(fastKeyPair(curve)).toBe(curve);

    const fast = fastKeyPair(createUser());
    expect(fastKeyPair(fast)).toBe(fast);
    fast.getPublicKey();
    fast.clear();
    expect(() => fast.getPublicKey()).toThrow(/cleared/);
    expect(() => fast.getPrivateKey()).toThrow(/cleared/);
    expect(() => fast.sign(te.encode("x"))).toThrow(/cleared/);
  });
});

describe("user JWTs signed through node:crypto", () => {
  let signer: AccountSigner;
  beforeAll(async () => {
    const th = await createTrustHierarchy();
    signer = { accountPublicKey: th.zester.publicKey, signingSeed: th.zester.signingSeed };
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("are the very tokens the pure-JS nkeys path makes, and verify with @nats-io/jwt", async () => {
    // iat (and so jti) come from the clock; pin it so both paths hash and sign the same claims.
    vi.useFakeTimers({ toFake: ["Date"], now: new Date("2030-01-02T03:04:05Z") });
    const user = createUser();
    const perms = peelPermissions("web-01");
    const fast = await issueUserJwt(signer, "peel-web-01", user, perms);
    const slow = await encodeUser(
      "peel-web-01",
      fromSeed(user.getSeed()),
      signer.accountPublicKey,
      toUserClaims(perms),
      { signer: keyPairFromSeed(signer.signingSeed), algorithm: Algorithms.v2 },
    );
    expect(fast).toBe(slow);

    const claims = decode(fast); // throws unless the signature verifies (tweetnacl)
    expect(claims.sub).toBe(user.getPublicKey());
    expect(claims.iss).toBe(keyPairFromSeed(signer.signingSeed).getPublicKey());
    expect((claims.nats as { issuer_account?: string }).issuer_account).toBe(signer.accountPublicKey);

    // A JWT for a bare public key (enrollment) matches as well.
    const byKey = await issueUserJwt(signer, "peel-web-01", user.getPublicKey(), perms);
    expect(byKey).toBe(slow);
  });

  it("a tampered token fails verification (decode really checks the signature)", async () => {
    const jwt = await issueUserJwt(signer, "x", createUser(), undefined);
    const [h, c, s] = jwt.split(".");
    const body = JSON.parse(Buffer.from(c!, "base64url").toString());
    body.name = "y";
    const forged = `${h}.${Buffer.from(JSON.stringify(body)).toString("base64url")}.${s}`;
    expect(() => decode(forged)).toThrow(/sig verification failed/);
  });

  it("creds files keep their layout and carry a seed matching the JWT subject", async () => {
    const creds = await issueRoleCreds(signer, { peel: "web-02" });
    const jwt = /-----BEGIN NATS USER JWT-----\n([^\n]+)\n/.exec(creds)?.[1];
    const seed = /-----BEGIN USER NKEY SEED-----\n([^\n]+)\n/.exec(creds)?.[1];
    expect(jwt).toBeDefined();
    expect(seed).toMatch(/^SU[A-Z2-7]{56}$/);
    const ukp = fromSeed(te.encode(seed!));
    expect(creds).toBe(td.decode(fmtCreds(jwt!, ukp)));
    const claims = decodeCredsJwt(creds);
    expect(claims.sub).toBe(ukp.getPublicKey());
    expect(claims.name).toBe("peel-web-02");

    // Same claims layout as a token built entirely by nkeys/@nats-io/jwt.
    const ref = await encodeUser(
      "peel-web-02",
      createUser(),
      signer.accountPublicKey,
      toUserClaims(peelPermissions("web-02")),
      { signer: keyPairFromSeed(signer.signingSeed), algorithm: Algorithms.v2 },
    );
    const ours = jwtParts(jwt!);
    const theirs = jwtParts(ref);
    expect(ours.header).toEqual(theirs.header);
    expect(layout(ours.claims)).toEqual(layout(theirs.claims));
    expect(ours.claims.nats).toEqual(theirs.claims.nats);
  });

  it("the trust chain's account and operator JWTs verify and chain up", async () => {
    const th = await createTrustHierarchy();
    const op = decode(th.operator.jwt);
    expect(op.sub).toBe(th.operator.publicKey);
    expect(op.iss).toBe(th.operator.publicKey);
    expect(fromSeed(te.encode(th.operator.seed)).getPublicKey()).toBe(th.operator.publicKey);
    const opSigning = fromSeed(te.encode(th.operator.signingSeed)).getPublicKey();
    expect((op.nats as { signing_keys?: string[] }).signing_keys).toEqual([opSigning]);
    for (const acct of [th.system, th.zester]) {
      const a = decode(acct.jwt);
      expect(a.sub).toBe(acct.publicKey);
      expect(a.iss).toBe(opSigning);
      expect(fromSeed(te.encode(acct.seed)).getPublicKey()).toBe(acct.publicKey);
      expect((a.nats as { signing_keys?: string[] }).signing_keys).toEqual([
        fromSeed(te.encode(acct.signingSeed)).getPublicKey(),
      ]);
    }
  });
});

describe("a real nats-server accepts fast-path creds", () => {
  let nats: StartedNats;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it("a peel connects with issued creds and with a JWT issued for its own public key", async () => {
    const nc = await nats.connectAs("web-03");
    await nc.flush();
    await nc.close();

    // The enrollment path: the peel keeps its seed; the master signs a JWT for the public key.
    const signer = await loadAccountSigner(nats.authDir);
    const peel = createUser();
    const jwt = await issueUserJwt(signer, "peel-web-04", peel.getPublicKey(), peelPermissions("web-04"));
    const nc2 = await connect({
      servers: nats.url,
      caFile: nats.caFile,
      creds: td.decode(fmtCreds(jwt, peel)),
      inboxPrefix: peelInboxPrefix("web-04"),
    });
    await nc2.flush();
    await nc2.close();

    // And the server really checks: the same JWT with another key's seed is refused.
    await expect(
      connect({
        servers: nats.url,
        caFile: nats.caFile,
        creds: td.decode(fmtCreds(jwt, createUser())),
        inboxPrefix: peelInboxPrefix("web-04"),
        reconnect: false,
      }),
    ).rejects.toThrow(/authorization/i);
  });
});
