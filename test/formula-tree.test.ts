/**
 * A formula-shaped tree of our own (test/fixtures/formula-webapp), in the shape of the public
 * saltstack-formulas: map.jinja stacking defaults.yaml, an os_family map through
 * grains.filter_by and import_yaml, and pillar merges; a libtofs-style list of salt:// sources;
 * a macro emitting state blocks; .sls and .zy files; top.sls targeting by grains and facts.
 * Run through the built CLI as an operator would: test mode, then for real, then again.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TemplateRenderer } from "../src/template/render.js";
import { requireBuilt } from "./support/built.js";
import { runCli } from "./support/cli.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester.js");
const STATES = join(ROOT, "test/fixtures/formula-webapp");

interface Result {
  name: string;
  result: boolean;
  changed: boolean;
  /** Test mode: the state would change something. */
  pending?: boolean;
  comment: string;
  diff?: string;
}

let tmp: string;
let etc: string;
let settingsFile: string;

beforeAll(async () => {
  requireBuilt(BIN);
  tmp = await mkdtemp(join(tmpdir(), "zester-formula-"));
  etc = join(tmp, "etc");
  settingsFile = join(tmp, "pillar.yaml");
  await writeFile(
    settingsFile,
    [
      "webapp:",
      "  lookup:",
      "    user: www-webapp",
      `  config_dir: ${etc}`,
      "  port: 9090",
      "  features:",
      "    cache: true",
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
    "--settings-file",
    settingsFile,
    "--no-cache",
    "--id",
    "web-01",
    "--format",
    "json",
    "state.apply",
    ...(test ? ["--test"] : []),
  ]);
  let out: { status: string; results: Result[] }[];
  try {
    out = JSON.parse(r.stdout);
  } catch {
    throw new Error(`exit ${r.code}: ${r.stderr}${r.stdout}`);
  }
  return { code: r.code, results: new Map(out[0]!.results.map((s) => [s.name, s])) };
}

const major = Number.parseInt(/^VERSION_ID="?(\d+)/m.exec(readFileSync("/etc/os-release", "utf8"))![1]!, 10);

/**
 * The tree needs Salt's template layer (`do`, import_yaml, grains.filter_by, pillar.get merge=),
 * which the Jinja engine (src/template, issue #12's engine half) provides. Probed, not assumed:
 * the suite runs as soon as the engine renders this, and says why when it does not.
 */
const ENGINE_GAP = await new TemplateRenderer()
  .render(
    "{% set l = [] %}{% do l.append(1) %}{{ salt['grains.filter_by']({'Debian': 'ok'}, grain='os_family') }}",
    { grains: { os_family: "Debian" } },
    "probe.sls",
  )
  .then(
    (out) => (out === "ok" ? undefined : `the template engine renders ${JSON.stringify(out)}`),
    (err: unknown) => `the template engine lacks Salt's additions (${(err as Error).message.split("\n")[0]})`,
  );
if (ENGINE_GAP) console.warn(`formula-tree: skipped: ${ENGINE_GAP}`);

describe.skipIf(ENGINE_GAP !== undefined)("formula-shaped tree", () => {
  it("renders the stacked map, libtofs sources and macro blocks, in test mode", async () => {
    const { code, results } = await apply(true);
    expect(code).toBe(0);
    expect(results.get("test.configurable_test_state:webapp-summary")?.comment).toBe(
      `webapp.config webapp webapp coreutils,findutils release=${major} port=9090 workers=2 service=webapp-debian`,
    );
    expect(results.get("test.configurable_test_state:webapp-service-marker")?.comment).toBe(
      `would run webapp-debian as www-webapp on Debian-${major}`,
    );
    expect(results.get("test.configurable_test_state:webapp-extras")?.comment).toBe(
      "webapp|webapp/extras.sls|webapp.extras",
    );
    const conf = results.get("file.managed:webapp-config-file")!;
    expect(conf).toMatchObject({ result: true, pending: true });
    expect(conf.diff).toContain("+# Debian flavour, from salt://webapp/files/Debian/webapp.conf.jinja");
    expect(conf.diff).toContain("+port = 9090");
    expect(conf.diff).toContain("+user = www-webapp");
    expect(results.get("file.managed:webapp-feature-cache")?.diff).toContain("+on");
    expect(results.get("file.managed:webapp-feature-metrics")?.diff).toContain("+on");
    // Test mode changes nothing.
    await expect(readFile(join(etc, "webapp.conf"), "utf8")).rejects.toThrow(/ENOENT/);
  });

  it("applies for real, then finds nothing to change", async () => {
    const first = await apply(false);
    expect(first.code).toBe(0);
    expect(await readFile(join(etc, "webapp.conf"), "utf8")).toBe(
      "# Debian flavour, from salt://webapp/files/Debian/webapp.conf.jinja\nport = 9090\nworkers = 2\nuser = www-webapp\n",
    );
    expect(await readFile(join(etc, "features/cache"), "utf8")).toBe("on\n");
    const again = await apply(false);
    expect(again.code).toBe(0);
    expect([...again.results.values()].filter((s) => s.changed).map((s) => s.name)).toEqual([]);
  });
});
