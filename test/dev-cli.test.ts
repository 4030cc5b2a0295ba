import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "./support/nats.js";

const bin = "dist/bin/zester.js";
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function dev(dir: string, port: number, extra: string[], ...once: string[]) {
  const r = spawnSync(
    process.execPath,
    [
      bin,
      "dev",
      "--dir",
      dir,
      "--port",
      String(port),
      "--id",
      "dev-peel",
      "--peels",
      "1",
      ...extra,
      "--once",
      ...once,
      "--format",
      "json",
    ],
    { encoding: "utf8", timeout: 60_000 },
  );
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("zester dev --once", () => {
  it("sets up a TLS fleet from nothing, runs a job through master and peel, and tears it down", async () => {
    if (!existsSync(bin)) throw new Error("build first (npm test builds)");
    const dir = await mkdtemp(join(tmpdir(), "zester-dev-"));
    dirs.push(dir);
    const port = await freePort();
    const first = dev(dir, port, [], "test.ping");
    expect(first.err).toMatch(/created operator, accounts, creds, CA and nats-server.conf/);
    expect(first.code).toBe(0);
    const runs = JSON.parse(first.out);
    expect(runs).toEqual([expect.objectContaining({ peel_id: "dev-peel", status: "success", return: true })]);
    // The folder is reused: same trust chain, no re-init, and the server from the first run is gone.
    const second = dev(dir, port, [], "cmd.run", "echo zester-dev-ok");
    expect(second.err).not.toMatch(/created operator/);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.out)[0].return).toBe("zester-dev-ok");
  });

  it("applies the example states with settings published by the master and resolved on the peel", async () => {
    const dir = await mkdtemp(join(tmpdir(), "zester-dev-"));
    dirs.push(dir);
    const root = join(dir, "out");
    const settings = join(dir, "settings");
    await cp("examples/settings", settings, { recursive: true });
    const file = join(settings, "example.zy");
    await writeFile(file, (await readFile(file, "utf8")).replace("/tmp/zester-example", root));
    const port = await freePort();
    const r = dev(dir, port, ["--states-dir", "examples/states", "--settings-dir", settings]);
    expect(r.code, r.err).toBe(0);
    const [run] = JSON.parse(r.out);
    expect(run).toMatchObject({ peel_id: "dev-peel", status: "success" });
    expect(
      run.results
        .filter((s: { changed: boolean }) => s.changed)
        .map((s: { id: string }) => s.id)
        .sort(),
    ).toEqual(["app_config", "app_reload", "example_root", "motd"]);
    expect(await readFile(join(root, "dev-peel", "app", "app.conf"), "utf8")).toContain(
      "backend api = 127.0.0.1:9001",
    );
    const again = JSON.parse(
      dev(dir, port, ["--states-dir", "examples/states", "--settings-dir", settings]).out,
    )[0];
    expect(again.summary.changed).toBe(0);
  });
});
