import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { compileTarget, type EngineOptions } from "../src/state/engine.js";

let dir: string;
let states: string;
let cache: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-cache-"));
  states = join(dir, "states");
  cache = join(dir, "cache");
  await mkdir(join(states, "app"), { recursive: true });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function opts(extra: Partial<EngineOptions> = {}): EngineOptions {
  return { statesDir: states, cacheDir: cache, facts: async () => ({ id: "h1", os: "Debian" }), ...extra };
}

async function comment(extra: Partial<EngineOptions> = {}): Promise<unknown> {
  const p = await compileTarget({ kind: "sls", refs: ["app"] }, opts(extra));
  return p.states.find((s) => s.id === "x")?.params.comment;
}

/** Rewrites the cached comment, so a later compile shows whether it used the cache. */
async function tamper(): Promise<void> {
  const [file] = await readdir(cache);
  const path = join(cache, file!);
  await writeFile(path, (await readFile(path, "utf8")).replace('"comment":"v1"', '"comment":"from-cache"'));
}

describe("compile cache", () => {
  it("reuses a compile while files and settings are unchanged, and recompiles when they change", async () => {
    await writeFile(join(states, "app/init.zy"), "x:\n  test.configurable_test_state:\n    - comment: v1\n");
    expect(await comment()).toBe("v1");
    await tamper();
    expect(await comment()).toBe("from-cache");
    // Different settings: a different key input, so a recompile.
    expect(await comment({ settings: { a: 1 } })).toBe("v1");
    await writeFile(join(states, "app/init.zy"), "x:\n  test.configurable_test_state:\n    - comment: v2\n");
    expect(await comment()).toBe("v2");
  });

  it("notices a new file that shadows one it used", async () => {
    await writeFile(join(states, "app/init.zy"), "x:\n  test.configurable_test_state:\n    - comment: v1\n");
    expect(await comment()).toBe("v1");
    await tamper();
    await writeFile(join(states, "app.zy"), "x:\n  test.configurable_test_state:\n    - comment: shadow\n");
    expect(await comment()).toBe("shadow");
  });

  it("keys templated trees on the facts they rendered with", async () => {
    await writeFile(
      join(states, "app/init.zy"),
      "x:\n  test.configurable_test_state:\n    - comment: {{ facts.os }}\n",
    );
    expect(await comment()).toBe("Debian");
    expect(await comment({ facts: async () => ({ id: "h1", os: "Alpine" }) })).toBe("Alpine");
  });

  it("never caches trees that call salt[...]", async () => {
    await writeFile(
      join(states, "app/init.zy"),
      "x:\n  test.configurable_test_state:\n    - comment: {{ salt['test.echo']('v1') }}\n",
    );
    expect(await comment()).toBe("v1");
    expect(await readdir(cache).catch(() => [])).toEqual([]);
  });
});
