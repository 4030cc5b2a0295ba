/**
 * A second formula-shaped tree of our own (test/fixtures/formula-hosts), for the patterns the
 * public formulas needed beyond the template engine: a pillar tree whose example file is itself
 * Jinja (grains, status.time, strftime), host.only from a pillar map (hostsfile), module.wait's
 * legacy form watching a file (apache), Salt options Zester has no use for (warnings, not
 * failures), a file under a directory an earlier state creates (test mode must not fail on it),
 * cp.list_master_dirs choosing per-user files (users), ipv4()/json_query in map.jinja.
 * Run through the built CLI: test mode, for real, and again.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireBuilt } from "./support/built.js";
import { runCli } from "./support/cli.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester.js");
const STATES = join(ROOT, "test/fixtures/formula-hosts");

interface Result {
  name: string;
  result: boolean;
  changed: boolean;
  pending?: boolean;
  comment: string;
  warnings?: string[];
  diff?: string;
}

let tmp: string;
let root: string;
let hosts: string;
let pillarDir: string;
const HOSTS = "127.0.0.1\tlocalhost\n10.9.0.1 old-gw # gateway\n10.9.0.1 stale\n";

beforeAll(async () => {
  requireBuilt(BIN);
  tmp = await mkdtemp(join(tmpdir(), "zester-formula-hosts-"));
  root = join(tmp, "srv");
  hosts = join(tmp, "hosts");
  await writeFile(hosts, HOSTS);
  pillarDir = join(tmp, "pillar");
  await mkdir(pillarDir);
  await writeFile(join(pillarDir, "top.sls"), "base:\n  '*':\n    - example\n");
  // A pillar.example in the shape of the published ones: Jinja over grains and Salt functions.
  await writeFile(
    join(pillarDir, "example.sls"),
    [
      "hostsmgr:",
      `  root: ${root}`,
      `  hosts_file: ${hosts}`,
      "  {%- if grains.os_family == 'Debian' and salt['status.time']('%Y') | int > 2000 %}",
      "  built: {{ 1700000000 | strftime('%Y-%m-%d') }}",
      "  {%- endif %}",
      "  only:",
      "    10.9.0.1: [gw.example.net, gw]",
      "    10.9.0.2: db",
      "  users: [ann, bo]",
      "",
    ].join("\n"),
  );
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

async function apply(test: boolean): Promise<{ code: number; results: Map<string, Result> }> {
  const r = await runCli(BIN, [
    "local",
    "--states-dir",
    STATES,
    "--settings-dir",
    pillarDir,
    "--no-cache",
    "--format",
    "json",
    "state.apply",
    ...(test ? ["--test"] : []),
  ]);
  let out: { results: Result[] }[];
  try {
    out = JSON.parse(r.stdout);
  } catch {
    throw new Error(`exit ${r.code}: ${r.stderr}${r.stdout}`);
  }
  return { code: r.code, results: new Map(out[0]!.results.map((s) => [s.name, s])) };
}

describe("formula-shaped tree with Salt's module functions and options", () => {
  it("test mode: everything pending, nothing failed or written, the ignored option named", async () => {
    const { code, results } = await apply(true);
    expect([...results.values()].filter((s) => !s.result).map((s) => `${s.name}: ${s.comment}`)).toEqual([]);
    expect(code).toBe(0);
    expect(results.get("host.only:hostsmgr-only-10.9.0.1")).toMatchObject({ pending: true });
    // The parent directory does not exist yet: an earlier state creates it.
    const conf = results.get("file.managed:hostsmgr-conf")!;
    expect(conf).toMatchObject({ result: true, pending: true });
    expect(conf.warnings).toEqual([
      expect.stringMatching(
        /^hostsmgr\/hosts\.sls:\d+:7: file\.managed: unknown parameter "skip_verify", ignored$/,
      ),
    ]);
    expect(conf.diff).toContain("+loopback 127.0.0.1");
    expect(conf.diff).toContain("+hosts 10.9.0.1 10.9.0.2");
    expect(conf.diff).toContain("+built 2023-11-14");
    // Only the users with a files/user/<name> directory get a file.recurse.
    expect(results.has("file.recurse:hostsmgr-user-ann")).toBe(true);
    expect(results.has("file.recurse:hostsmgr-user-bo")).toBe(false);
    expect(await readFile(hosts, "utf8")).toBe(HOSTS);
  });

  it("applies for real (the watch fires once), then finds nothing to change", async () => {
    const first = await apply(false);
    expect(first.code).toBe(0);
    expect(await readFile(hosts, "utf8")).toBe(
      "127.0.0.1\tlocalhost\n10.9.0.1\t\tgw.example.net gw\n10.9.0.2\t\tdb\n",
    );
    expect(await readFile(join(root, "conf.d", "hosts.conf"), "utf8")).toBe(
      "loopback 127.0.0.1\nhosts 10.9.0.1 10.9.0.2\nbuilt 2023-11-14\n",
    );
    expect(await readFile(join(root, "reloads"), "utf8")).toBe("reloaded\n");
    expect(await readFile(join(root, "users", "ann", "profile"), "utf8")).toBe('PS1="ann> "\n');
    const again = await apply(false);
    expect(again.code).toBe(0);
    expect([...again.results.values()].filter((s) => s.changed).map((s) => s.name)).toEqual([]);
    expect(await readFile(join(root, "reloads"), "utf8")).toBe("reloaded\n");
  });
});
