import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { applyTarget } from "../src/state/engine.js";
import { run } from "../src/util/exec.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-testmode-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("test mode on a fresh machine", () => {
  it("reports a state whose check needs a pending requisite as pending, not failed", async () => {
    const root = join(dir, "root");
    const user = "zester-tm-nouser";
    await writeFile(
      join(dir, "site.zy"),
      `appuser:
  user.present:
    - name: ${user}
conf:
  file.managed:
    - name: ${root}/etc/app.conf
    - makedirs: true
    - user: ${user}
    - content: "x = 1\\n"
    - require:
      - user: appuser
orphan:
  file.managed:
    - name: ${root}/other/app.conf
    - makedirs: true
    - user: ${user}
    - content: "y\\n"
`,
    );
    const rep = await applyTarget(
      { kind: "sls", refs: ["site"] },
      { statesDir: dir, test: true, facts: async () => ({}) },
    );
    const by = Object.fromEntries(rep.results.map((r) => [r.id, r]));
    expect(by.appuser).toMatchObject({ result: true, pending: true });
    expect(by.conf).toMatchObject({ result: true, pending: true });
    expect(by.conf!.comment).toMatch(/^Would be checked after user.present:appuser apply; now: /);
    // Without a pending requisite, the same failure is a real one.
    expect(by.orphan!.result).toBe(false);
    expect(rep.summary.failed).toBe(1);
    // and nothing was written
    expect(await readdir(dir)).toEqual(["site.zy"]);
  });

  it("a missing parent directory is not a failure in test mode, as in Salt's", async () => {
    const root = join(dir, "root");
    await writeFile(
      join(dir, "site.zy"),
      `orphan:\n  file.managed:\n    - name: ${root}/missing/app.conf\n    - content: "y\\n"\n`,
    );
    const dry = await applyTarget({ kind: "sls", refs: ["site"] }, { statesDir: dir, test: true });
    expect(dry.results[0]).toMatchObject({ id: "orphan", result: true, pending: true });
    expect(dry.results[0]!.comment).toBe(`File ${root}/missing/app.conf would be created`);
    expect(await readdir(dir)).toEqual(["site.zy"]);
    // A real run without makedirs fails, and writes nothing.
    const real = await applyTarget({ kind: "sls", refs: ["site"] }, { statesDir: dir });
    expect(real.results[0]).toMatchObject({ result: false });
    expect(await readdir(dir)).toEqual(["site.zy"]);
  });
});

describe("facts for fact-free families", () => {
  it("collects facts when a guard calls a function, even on cmd states", async () => {
    const out = join(dir, "ran");
    await writeFile(
      join(dir, "g.zy"),
      `guarded:\n  cmd.run:\n    - name: touch ${out}\n    - onlyif:\n      - fun: facts.get\n        key: os\n`,
    );
    const rep = await applyTarget(
      { kind: "sls", refs: ["g"] },
      { statesDir: dir, facts: async () => ({ os: "linux" }) },
    );
    expect(rep.results[0]).toMatchObject({ id: "guarded", result: true, changed: true, skipped: false });
    expect(await readdir(dir)).toContain("ran");
  });
});

const hasApt = (await run(["sh", "-c", "command -v apt-get && command -v dpkg-query"])).retcode === 0;
if (!hasApt) console.warn("skipping the pkg pending case: apt-get/dpkg-query not installed");

describe("test mode: what earlier states of the run would create is pending, as Salt's None", () => {
  it("service.running of a service no package has installed yet would have been started", async () => {
    const text =
      "svc:\n  service.running:\n    - name: zester-no-such-service\n    - enable: true\n" +
      "stopped:\n  service.dead:\n    - name: zester-no-such-service-2\n";
    await writeFile(join(dir, "svc.zy"), text);
    const dry = await applyTarget({ kind: "sls", refs: ["svc"] }, { statesDir: dir, test: true });
    const by = Object.fromEntries(dry.results.map((r) => [r.id, r]));
    expect(by.svc).toMatchObject({ result: true, pending: true, changed: false });
    expect(by.svc!.comment).toBe(
      "Service zester-no-such-service not present; if created in this state run, it would have been started and enabled",
    );
    expect(by.stopped!.comment).toMatch(/would have been stopped$/);
    expect(dry.summary.failed).toBe(0);
    // A real run has no earlier state to wait for: the missing service is a failure.
    const real = await applyTarget({ kind: "sls", refs: ["svc"] }, { statesDir: dir });
    expect(real.results.find((r) => r.id === "svc")).toMatchObject({ result: false });
  });

  it.skipIf(!hasApt)(
    "pkg.installed with no install candidate is pending under apt in test mode",
    async () => {
      await writeFile(join(dir, "p.zy"), "p:\n  pkg.installed:\n    - name: zester-no-such-package-xyz\n");
      const dry = await applyTarget(
        { kind: "sls", refs: ["p"] },
        { statesDir: dir, test: true, facts: async () => ({ pkg_manager: "apt" }) },
      );
      expect(dry.results[0]).toMatchObject({ result: true, pending: true });
      expect(dry.results[0]!.comment).toMatch(/No installation candidate for zester-no-such-package-xyz/);
      const real = await applyTarget(
        { kind: "sls", refs: ["p"] },
        { statesDir: dir, facts: async () => ({ pkg_manager: "apt" }) },
      );
      expect(real.results[0]).toMatchObject({ result: false });
    },
  );
});
