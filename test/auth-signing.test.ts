import { createUser } from "@nats-io/nkeys";
import { describe, expect, it } from "vitest";
import { ed25519Sign, ed25519Verify } from "../src/auth/ed25519.js";
import type { UnsignedCommand } from "../src/auth/signing.js";
import { canonicalJson, keyPairFromCreds, signCommand, verifyCommand } from "../src/auth/signing.js";

const master = createUser();
const other = createUser();
const trusted = new Set([master.getPublicKey()]);

function cmd(over: Partial<UnsignedCommand> = {}): UnsignedCommand {
  return {
    jid: "2oHfKnCPMQnLEYQeBQsNtUiJp3r",
    fun: "state.apply",
    args: ["nginx"],
    kwargs: { pillar: { a: 1 } },
    test: false,
    peel: "web-01",
    ts: Date.now(),
    timeout_s: 60,
    ...over,
  };
}

describe("command signing", () => {
  it("canonical JSON sorts keys at every level and drops undefined", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: undefined } })).toBe(
      '{"a":{"d":[1,{"y":2,"z":1}]},"b":1}',
    );
  });

  it("accepts a command signed by a trusted master for this peel", () => {
    const signed = signCommand(master, cmd());
    expect(signed.master).toBe(master.getPublicKey());
    expect(verifyCommand(signed, { trusted, peel: "web-01" })).toEqual({ ok: true });
  });

  it("refuses unsigned, altered, untrusted, misaddressed and stale commands", () => {
    const signed = signCommand(master, cmd());
    expect(verifyCommand({ ...signed, sig: "" }, { trusted, peel: "web-01" })).toMatchObject({
      reason: /unsigned/,
    });
    expect(verifyCommand({ ...signed, fun: "cmd.run" }, { trusted, peel: "web-01" })).toMatchObject({
      reason: /bad signature/,
    });
    expect(verifyCommand({ ...signed, args: ["rm -rf /"] }, { trusted, peel: "web-01" })).toMatchObject({
      reason: /bad signature/,
    });
    expect(
      verifyCommand({ ...signed, kwargs: { pillar: { a: 2 } } }, { trusted, peel: "web-01" }),
    ).toMatchObject({ ok: false });
    expect(verifyCommand(signCommand(other, cmd()), { trusted, peel: "web-01" })).toMatchObject({
      reason: /untrusted/,
    });
    // Re-pointing a trusted signature at another peel breaks it; a command for web-02 is refused by web-01.
    expect(verifyCommand({ ...signed, peel: "web-02" }, { trusted, peel: "web-02" })).toMatchObject({
      reason: /bad signature/,
    });
    expect(
      verifyCommand(signCommand(master, cmd({ peel: "web-02" })), { trusted, peel: "web-01" }),
    ).toMatchObject({ reason: /addressed to web-02/ });
    const old = signCommand(master, cmd({ ts: Date.now() - 10 * 60_000 }));
    expect(verifyCommand(old, { trusted, peel: "web-01" })).toMatchObject({ reason: /stale/ });
  });

  it("loads the signing key from a creds file", () => {
    const seed = new TextDecoder().decode(master.getSeed());
    const creds = `-----BEGIN NATS USER JWT-----\neyJ0eXAi.x.y\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`;
    expect(keyPairFromCreds(creds).getPublicKey()).toBe(master.getPublicKey());
    expect(() => keyPairFromCreds("nothing here")).toThrow(/no user nkey seed/);
  });
});

describe("node:crypto Ed25519 for nkeys", () => {
  it("produces the very signatures nkeys does, and each verifies the other's", () => {
    const kp = createUser();
    for (const text of ["", "zester", "x".repeat(5000)]) {
      const data = new TextEncoder().encode(text);
      const ours = ed25519Sign(kp, data);
      expect(Buffer.from(ours).toString("hex")).toBe(Buffer.from(kp.sign(data)).toString("hex"));
      expect(kp.verify(data, ours)).toBe(true);
      expect(ed25519Verify(kp.getPublicKey(), data, kp.sign(data))).toBe(true);
    }
  });

  it("rejects a wrong key, altered data, a truncated signature and a malformed public key", () => {
    const kp = createUser();
    const data = new TextEncoder().encode("payload");
    const sig = ed25519Sign(kp, data);
    expect(ed25519Verify(createUser().getPublicKey(), data, sig)).toBe(false);
    expect(ed25519Verify(kp.getPublicKey(), new TextEncoder().encode("payloaD"), sig)).toBe(false);
    expect(ed25519Verify(kp.getPublicKey(), data, sig.subarray(0, 63))).toBe(false);
    expect(ed25519Verify("UNOTAKEY", data, sig)).toBe(false);
  });
});
