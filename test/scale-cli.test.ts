/** `zester nats-auth init --cluster N` and `zester-master --replicas`: files written and bad values refused. */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { statOrUndefined } from "../src/util/files.js";
import { ROOT } from "./support/built.js";
import { runCli, runMain } from "./support/cli.js";
import { freePortRun } from "./support/nats.js";

const dirs: string[] = [];
async function freshDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "zester-scale-cli-"));
  dirs.push(d);
  return join(d, "auth");
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("zester nats-auth init --cluster", () => {
  it("writes one config per node with routes to the others over TLS", async () => {
    const dir = await freshDir();
    const r = await runMain(["nats-auth", "init", "--dir", dir, "--cluster", "3", "--port", "14222"]);
    expect(r.code, r.err).toBe(0);
    expect(await statOrUndefined(join(dir, "nats-server.conf"))).toBeUndefined();
    for (const i of [1, 2, 3]) {
      const conf = await readFile(join(dir, `nats-server-${i}.conf`), "utf8");
      expect(conf).toContain(`server_name: "zester-nats-${i}"`);
      expect(conf).toContain(`port: ${14221 + i}`);
      expect(conf).toContain(`listen: "127.0.0.1:${6221 + i}"`);
      const others = [1, 2, 3].filter((j) => j !== i).map((j) => `"nats-route://127.0.0.1:${6221 + j}"`);
      for (const o of others) expect(conf).toContain(o);
      expect(conf).toMatch(/cluster: \{[\s\S]*tls: \{[\s\S]*ca_file: /);
      expect(conf).toContain(`jetstream/zester-nats-${i}`);
      expect(r.out).toContain(`nats-server -c ${join(dir, `nats-server-${i}.conf`)}`);
    }
  });

  it("puts one node on each --cluster-host with the same ports", async () => {
    const dir = await freshDir();
    const hosts = ["nats-a.example", "nats-b.example", "nats-c.example"];
    const r = await runMain([
      "nats-auth",
      "init",
      "--dir",
      dir,
      "--cluster",
      "3",
      "--cluster-host",
      ...hosts,
    ]);
    expect(r.code, r.err).toBe(0);
    const conf = await readFile(join(dir, "nats-server-2.conf"), "utf8");
    expect(conf).toContain("port: 4222");
    expect(conf).toContain('listen: "0.0.0.0:6222"');
    expect(conf).toContain('"nats-route://nats-a.example:6222"');
    expect(conf).toContain('"nats-route://nats-c.example:6222"');
    expect(conf).not.toContain('"nats-route://nats-b.example:6222"');
  });

  it("refuses a bad node count, a host list of the wrong length, and cluster flags without --cluster", async () => {
    const cases: [string[], RegExp][] = [
      [["--cluster", "0"], /invalid --cluster "0": expected a node count from 1 to 9/],
      [["--cluster", "3", "--cluster-host", "a", "b"], /--cluster 3 needs 3 --cluster-host values, got 2/],
      [["--cluster-port", "7000"], /--cluster-host and --cluster-port need --cluster N/],
    ];
    for (const [flags, message] of cases) {
      const dir = await freshDir();
      const r = await runMain(["nats-auth", "init", "--dir", dir, ...flags]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(message);
      // Nothing half-written: the refusal comes before any key is made.
      expect(await statOrUndefined(dir)).toBeUndefined();
    }
  });
});

describe("zester dev --cluster 3", () => {
  it("runs a local 3-node cluster, a master and peels, and a job through them", async () => {
    const dir = await freshDir();
    // Three consecutive client ports, all free (another test's ephemeral port may sit right
    // after a free one); routes from 6222 as the docs say.
    const port = await freePortRun(3);
    const r = await runCli(
      join(ROOT, "dist/bin/zester.js"),
      [
        "dev",
        "--dir",
        dir,
        "--port",
        String(port),
        "--peels",
        "2",
        "--cluster",
        "3",
        "--once",
        "test.ping",
        "--format",
        "json",
      ],
      { timeout: 120_000, noExitCode: 99 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/created operator, accounts, creds, CA and nats-server-1\.\.3\.conf/);
    const runs = JSON.parse(r.stdout) as { peel_id: string; status: string }[];
    expect(runs.map((x) => [x.peel_id, x.status])).toEqual([
      ["dev-1", "success"],
      ["dev-2", "success"],
    ]);
    for (const i of [1, 2, 3])
      expect(await statOrUndefined(join(dir, `nats-server-${i}.conf`))).toBeDefined();
  }, 150_000);

  it("refuses a bad node count", async () => {
    const r = await runMain(["dev", "--cluster", "12"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/--cluster must be 1-9/);
  });
});
