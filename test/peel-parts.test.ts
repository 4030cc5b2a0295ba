import { createHash } from "node:crypto";
import { mkdtemp, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encode } from "../src/bus/codec.js";
import type { StateManifest } from "../src/jobs/wire.js";
import { stableFactsKey } from "../src/peel/facts-diff.js";
import { getByColonPath, isReadOnlyFunction } from "../src/peel/functions.js";
import { JidStore } from "../src/peel/jid-store.js";
import { JobQueue } from "../src/peel/queue.js";
import { assertSafeRelPath, StateTreeCache } from "../src/peel/state-cache.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-peel-parts-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("JidStore", () => {
  it("persists jids, refuses repeats, prunes old entries and rejects a corrupt file", async () => {
    const path = join(dir, "jids.json");
    const store = new JidStore(path, 60_000);
    const a = store.add("A");
    expect(a.fresh).toBe(true);
    await a.persisted;
    expect(store.add("A").fresh).toBe(false);
    await store.add("OLD", Date.now() - 120_000).persisted;
    expect(JSON.parse(await readFile(path, "utf8")).jids).toHaveProperty("OLD");

    const reloaded = new JidStore(path, 60_000);
    await reloaded.load();
    expect(reloaded.has("A")).toBe(true);
    expect(reloaded.has("OLD")).toBe(false);

    await writeFile(path, "{not json", "utf8");
    await expect(new JidStore(path).load()).rejects.toThrow(/corrupt/);
  });
});

describe("JobQueue", () => {
  it("runs mutating jobs one at a time in order, refuses beyond the limit, cancels", async () => {
    const q = new JobQueue(1);
    const log: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const dropped: string[] = [];
    expect(
      q.submit(
        "a",
        async () => {
          log.push("a start");
          await gate;
          log.push("a end");
        },
        (r) => dropped.push(`a ${r}`),
      ),
    ).toEqual({ position: 0 });
    const bDone = new Promise<void>((resolve) => {
      expect(
        q.submit(
          "b",
          async () => {
            log.push("b");
            resolve();
          },
          (r) => dropped.push(`b ${r}`),
        ),
      ).toEqual({ position: 1 });
    });
    expect(
      q.submit(
        "c",
        async () => {},
        () => {},
      ),
    ).toEqual({ busy: 2 });
    expect(q.busy).toBe(2);
    release();
    await bDone;
    expect(log).toEqual(["a start", "a end", "b"]);
    // Let b's bookkeeping finish so d starts at once.
    await new Promise((r) => setTimeout(r, 0));

    let aborted = false;
    const d = q.submit(
      "d",
      (signal) =>
        new Promise<void>((resolve) => {
          signal.addEventListener("abort", () => {
            aborted = true;
            resolve();
          });
        }),
      () => {},
    );
    expect(d).toEqual({ position: 0 });
    const e = q.submit(
      "e",
      async () => {},
      (r) => dropped.push(`e ${r}`),
    );
    expect(e).toEqual({ position: 1 });
    expect(q.cancel("e")).toBe(true);
    expect(q.cancel("d")).toBe(true);
    expect(q.cancel("nope")).toBe(false);
    await q.close();
    expect(aborted).toBe(true);
    expect(dropped).toEqual(["e canceled"]);
  });
});

describe("peel helpers", () => {
  it("classifies read-only functions", async () => {
    expect(await isReadOnlyFunction("test.ping")).toBe(true);
    expect(await isReadOnlyFunction("grains.items")).toBe(true);
    expect(await isReadOnlyFunction("state.show_sls")).toBe(true);
    expect(await isReadOnlyFunction("cmd.run")).toBe(false);
    expect(await isReadOnlyFunction("state.apply")).toBe(false);
    expect(await isReadOnlyFunction("file.managed")).toBe(false);
  });

  it("reads colon paths and ignores volatile facts when comparing", () => {
    const facts = {
      os: "Debian",
      memory: { total: 8, available: 3 },
      disk: { mounts: [{ mountpoint: "/", used: 1 }] },
    };
    expect(getByColonPath(facts, "memory:total")).toBe(8);
    expect(getByColonPath(facts, "disk:mounts:0:mountpoint")).toBe("/");
    expect(getByColonPath(facts, "memory:nope:x")).toBeUndefined();
    const drifted = {
      ...facts,
      memory: { total: 8, available: 1 },
      disk: { mounts: [{ mountpoint: "/", used: 9 }] },
    };
    expect(stableFactsKey(drifted)).toBe(stableFactsKey(facts));
    expect(stableFactsKey({ ...facts, os: "Ubuntu" })).not.toBe(stableFactsKey(facts));
  });

  it("refuses manifest paths that leave the tree", () => {
    for (const bad of ["../x", "/etc/passwd", "a/../../b", "a//b", "./a", ""]) {
      expect(() => assertSafeRelPath(bad), bad).toThrow(/unsafe path/);
    }
    expect(assertSafeRelPath("web/init.zy")).toBe("web/init.zy");
  });
});

describe("StateTreeCache without NATS", () => {
  it("rejects a manifest with an escaping path and leaves current alone", async () => {
    const root = join(dir, "states");
    const cache = new StateTreeCache(root);
    const store = new Map<string, Uint8Array>();
    const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
    const put = (rev: number, files: Record<string, string>) => {
      const m: StateManifest = { rev, files: {}, published_at: "now", master: "t" };
      for (const [p, t] of Object.entries(files)) {
        const b = new TextEncoder().encode(t);
        store.set(`blob.${sha(b)}`, b);
        m.files[p] = { sha256: sha(b), size: b.length, mode: 0o644 };
      }
      const raw = encode(m);
      store.set("manifest", raw);
      return { rev, manifest_sha256: sha(raw) };
    };
    const source = async (k: string) => store.get(k);
    expect(await cache.sync(source, put(1, { "a.zy": "a" }))).toMatchObject({ rev: 1, changed: true });
    expect(await cache.sync(source, put(1, { "a.zy": "a" }))).toMatchObject({ changed: false });
    await expect(cache.sync(source, put(2, { "../evil": "x" }))).rejects.toThrow(/unsafe path/);
    expect(await readlink(join(root, "current"))).toBe("rev-1");
    expect(await readFile(join(root, "current", "a.zy"), "utf8")).toBe("a");
    expect(await cache.currentRev()).toBe(1);
  });
});
