import { createHash } from "node:crypto";
import { readFile, stat, symlink, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  detectFormat,
  family,
  parseSourceHash,
  parseTarList,
  unsafeEntries,
} from "../src/modules/archive.js";
import { run } from "../src/util/exec.js";
import { moduleContext, runState, tempDir } from "./support/module-context.js";

const state = family.states.extracted!;
let dir = "";
let cleanup: () => Promise<void> = async () => {};
let server: Server;
let base = "";
let requests = 0;

async function sh(cmd: string[], cwd = dir) {
  const r = await run(cmd, { cwd });
  if (r.retcode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

beforeAll(async () => {
  server = createServer(async (req, res) => {
    requests++;
    try {
      const body = await readFile(join(dir, decodeURIComponent((req.url ?? "/").slice(1))));
      res.writeHead(200, { "content-type": "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir("zester-archive-"));
  await sh(["mkdir", "-p", "src/app-1.0/bin"]);
  await writeFile(join(dir, "src/app-1.0/README"), "hello\n");
  await writeFile(join(dir, "src/app-1.0/bin/run"), "#!/bin/sh\necho run\n", { mode: 0o755 });
  await symlink("README", join(dir, "src/app-1.0/LINK"));
  await sh(["tar", "-czf", "../app.tar.gz", "app-1.0"], join(dir, "src"));
  await sh(["tar", "-cJf", "../app.tar.xz", "app-1.0"], join(dir, "src"));
  await sh(["zip", "-qry", "../app.zip", "app-1.0"], join(dir, "src"));
  requests = 0;
});
afterEach(() => cleanup());

const ctx = (test = false) => moduleContext({ test, id: "app" });
const sha256 = async (p: string) =>
  createHash("sha256")
    .update(await readFile(p))
    .digest("hex");

describe("archive.extracted", () => {
  for (const file of ["app.tar.gz", "app.tar.xz", "app.zip"]) {
    it(`extracts ${file}: test mode, apply, idempotent, drift repaired`, async () => {
      const target = join(dir, "out");
      const p = {
        name: target,
        source: join(dir, file),
        source_hash: `sha256=${await sha256(join(dir, file))}`,
      };
      const dry = await runState(state, p, ctx(true));
      expect(dry.result, dry.comment).toBe(true);
      expect(dry.pending).toBe(true);
      await expect(stat(target)).rejects.toThrow(/ENOENT/);

      const first = await runState(state, p, ctx());
      expect(first.result, first.comment).toBe(true);
      expect(first.changes.count).toBe(5);
      expect(await readFile(join(target, "app-1.0/README"), "utf8")).toBe("hello\n");
      expect((await stat(join(target, "app-1.0/bin/run"))).mode & 0o111).not.toBe(0);
      expect(await readFile(join(target, "app-1.0/LINK"), "utf8")).toBe("hello\n");

      const again = await runState(state, p, ctx());
      expect(again.changed).toBe(false);
      expect(again.comment).toMatch(/already extracted/);

      await run(["rm", join(target, "app-1.0/README")]);
      const repaired = await runState(state, p, ctx());
      expect(repaired.changes).toMatchObject({ count: 1, extracted: ["app-1.0/README"] });
      expect(await readFile(join(target, "app-1.0/README"), "utf8")).toBe("hello\n");
    });
  }

  it("downloads over http, verifies a bare hex hash, and fails on a mismatch before extracting", async () => {
    const target = join(dir, "web");
    const hex = await sha256(join(dir, "app.tar.gz"));
    const ok = await runState(state, { name: target, source: `${base}/app.tar.gz`, source_hash: hex }, ctx());
    expect(ok.result, ok.comment).toBe(true);
    expect(requests).toBe(1);
    expect(await readFile(join(target, "app-1.0/README"), "utf8")).toBe("hello\n");

    const bad = join(dir, "bad");
    const r = await runState(
      state,
      { name: bad, source: `${base}/app.tar.gz`, source_hash: `sha256=${"0".repeat(64)}` },
      ctx(),
    );
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/source_hash mismatch/);
    await expect(stat(bad)).rejects.toThrow(/ENOENT/);

    const missing = await runState(state, { name: bad, source: `${base}/nope.tar.gz` }, ctx());
    expect(missing.result).toBe(false);
    expect(missing.comment).toMatch(/HTTP 404/);
  });

  it("if_missing skips; user/group are applied", async () => {
    const target = join(dir, "own");
    const skip = await runState(
      state,
      { name: target, source: join(dir, "app.zip"), if_missing: dir },
      ctx(),
    );
    expect(skip.changed).toBe(false);
    expect(skip.comment).toMatch(/exists/);
    const r = await runState(
      state,
      { name: target, source: join(dir, "app.zip"), user: "nobody", group: "nogroup" },
      ctx(),
    );
    expect(r.result, r.comment).toBe(true);
    const st = await stat(join(target, "app-1.0/README"));
    expect(st.uid).toBe(Number((await sh(["id", "-u", "nobody"])).trim()));
  });

  it("refuses archives that escape the target, before writing anything", async () => {
    const outside = join(dir, "escape.txt");
    await writeFile(join(dir, "src/x"), "x\n");
    // ../ entry (tar keeps it with -P), absolute entry, symlink pointing out.
    await sh(["tar", "-Pcf", "../dotdot.tar", "../x"], join(dir, "src/app-1.0"));
    await sh(["tar", "-Pcf", "abs.tar", join(dir, "src/x")]);
    await sh(["mkdir", "-p", "evil/top"]);
    await symlink("/etc", join(dir, "evil/top/etc"));
    await symlink("../../..", join(dir, "evil/top/up"));
    await sh(["tar", "-cf", "../link.tar", "top"], join(dir, "evil"));
    await sh(["zip", "-qry", "../link.zip", "top"], join(dir, "evil"));
    for (const [file, why] of [
      ["src/dotdot.tar", /outside the target/],
      ["abs.tar", /outside the target/],
      ["link.tar", /symlink to \/etc points outside/],
      ["link.zip", /symlink to \.\.\/\.\.\/\.\. points outside|symlink to \/etc/],
    ] as const) {
      const target = join(dir, `t-${file.replace(/\W/g, "")}`);
      const r = await runState(
        state,
        { name: target, source: join(dir, file), enforce_toplevel: false },
        ctx(),
      );
      expect(r.result, `${file}: ${r.comment}`).toBe(false);
      expect(r.comment).toMatch(/Refusing to extract/);
      expect(r.comment).toMatch(why);
      await expect(stat(target)).rejects.toThrow(/ENOENT/);
    }
    await expect(stat(outside)).rejects.toThrow(/ENOENT/);

    // A directory already in the target that is a symlink out of it is not written through.
    const target = join(dir, "pre");
    await sh(["mkdir", "-p", target, join(dir, "elsewhere")]);
    await symlink(join(dir, "elsewhere"), join(target, "app-1.0"));
    const through = await runState(state, { name: target, source: join(dir, "app.tar.gz") }, ctx());
    expect(through.result).toBe(false);
    expect(through.comment).toMatch(/symlink leading outside/);
    expect(await sh(["ls", "-A", join(dir, "elsewhere")])).toBe("");
  });

  it("enforce_toplevel refuses archives without a single top directory unless turned off", async () => {
    await sh(["tar", "-czf", "../flat.tar.gz", "README", "bin"], join(dir, "src/app-1.0"));
    const target = join(dir, "flat");
    const r = await runState(state, { name: target, source: join(dir, "src/flat.tar.gz") }, ctx());
    expect(r.result).toBe(false);
    expect(r.comment).toMatch(/single top-level directory/);
    const ok = await runState(
      state,
      { name: target, source: join(dir, "src/flat.tar.gz"), enforce_toplevel: false },
      ctx(),
    );
    expect(ok.result, ok.comment).toBe(true);
    expect(await readFile(join(target, "README"), "utf8")).toBe("hello\n");
  });
});

describe("archive helpers", () => {
  it("parses tar listings with links and escapes, detects formats and hashes", () => {
    const list = parseTarList(
      "drwxr-xr-x root/root 0 2024-01-01 00:00 top/\nlrwxrwxrwx root/root 0 2024-01-01 00:00 top/l -> ../x\nhrw-r--r-- root/root 0 2024-01-01 00:00 top/h link to top/a\n-rw-r--r-- root/root 2 2024-01-01 00:00 top/a\\ b\\nc\n",
    );
    expect(list[1]).toEqual({ name: "top/l", type: "symlink", link: "../x" });
    expect(list[2]).toEqual({ name: "top/h", type: "hardlink", link: "top/a" });
    expect(list[3]!.name).toBe("top/a b\nc");
    expect(unsafeEntries(list)).toEqual([]);
    expect(unsafeEntries([{ name: "top/l", type: "symlink", link: "../../x" }])[0]).toMatch(/outside/);
    const through = unsafeEntries([
      { name: "top/d", type: "symlink", link: "sub" },
      { name: "top/d/f", type: "file" },
    ]);
    expect(through).toEqual(["top/d/f: written through the archive's symlink top/d"]);
    expect(detectFormat(Buffer.from([0x50, 0x4b, 3, 4]))).toBe("zip");
    expect(detectFormat(Buffer.from([0x1f, 0x8b, 8]))).toBe("tar");
    expect(detectFormat(Buffer.from("plain text"))).toBeUndefined();
    expect(parseSourceHash("sha512:AB".padEnd(10, "c"))).toMatchObject({ algo: "sha512" });
    expect(parseSourceHash("d41d8cd98f00b204e9800998ecf8427e").algo).toBe("md5");
    expect(() => parseSourceHash("nothex")).toThrow(/source_hash/);
  });
});
