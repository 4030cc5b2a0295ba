/**
 * Salt-shaped trees: `.sls` and `.zy` files load by the same rules (a tree may mix them), top.sls,
 * init.sls and relative includes, the per-file context names with Salt's values, and grains that
 * only an imported map.jinja reads.
 */

import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveSettings } from "../src/settings/index.js";
import { CompileError } from "../src/state/diagnostics.js";
import { applyTarget, compileTarget } from "../src/state/engine.js";
import { requireBuilt } from "./support/built.js";
import { runCli } from "./support/cli.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-salt-tree-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function files(tree: Record<string, string>): Promise<void> {
  for (const [p, text] of Object.entries(tree)) {
    await mkdir(dirname(join(dir, p)), { recursive: true });
    await writeFile(join(dir, p), text);
  }
}

const DEBIAN = {
  id: "web1",
  os: "linux",
  distro: "debian",
  os_family: "Debian",
  osfullname: "Debian GNU/Linux",
  osrelease: "12",
  oscodename: "bookworm",
  cpuarch: "x86_64",
};

function compile(refs: string[], facts: () => Promise<Record<string, unknown>> = async () => DEBIAN) {
  return compileTarget(refs.length === 0 ? { kind: "highstate" } : { kind: "sls", refs }, {
    statesDir: dir,
    settings: {},
    facts,
  });
}

async function compileError(refs: string[]): Promise<CompileError> {
  const err = await compile(refs).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CompileError);
  return err as CompileError;
}

const comments = (p: { states: { id: string; params: Record<string, unknown> }[] }) =>
  Object.fromEntries(p.states.map((s) => [s.id, s.params.comment]));

describe(".sls and .zy trees", () => {
  it("top.sls, init.sls, a mixed .zy file and relative includes", async () => {
    await files({
      "top.sls": "base:\n  '*':\n    - web\n",
      "web/init.sls": "include:\n  - .conf\n  - common\nweb_pkg:\n  test.nop: []\n",
      "web/conf.zy": "include:\n  - ..common.users\nweb_conf:\n  test.nop: []\n",
      "common/init.sls": "common_state:\n  test.nop: []\n",
      "common/users.sls": "users_state:\n  test.nop: []\n",
    });
    const p = await compile([]);
    // Salt's declaration order: includes first, depth first, then the including file's own.
    expect(p.states.map((s) => `${s.id}@${s.sls}`)).toEqual([
      "users_state@common.users",
      "web_conf@web.conf",
      "common_state@common",
      "web_pkg@web",
    ]);
  });

  it("a name present as both x.sls and x.zy is an error naming both files", async () => {
    await files({ "app.sls": "a:\n  test.nop: []\n", "app.zy": "b:\n  test.nop: []\n" });
    const err = await compileError(["app"]);
    expect(err.diagnostics[0]!.message).toBe('sls "app" is both app.sls and app.zy: keep one of them');
  });

  it("both top.sls and top.zy is an error too", async () => {
    await files({ "top.sls": "base: {}\n", "top.zy": "base: {}\n" });
    const err = await compileError([]);
    expect(err.message).toContain('"top" is both top.sls and top.zy');
  });

  it("a missing sls lists every file looked for", async () => {
    await files({ "top.sls": "base:\n  '*':\n    - nope.there\n" });
    const err = await compileError([]);
    expect(err.message).toContain(
      "looked for nope/there.sls, nope/there.zy, nope/there/init.sls or nope/there/init.zy",
    );
  });

  it("x.sls wins over x/init.sls as in Salt (levels, not extensions, decide)", async () => {
    await files({ "x.sls": "flat:\n  test.nop: []\n", "x/init.zy": "pkg:\n  test.nop: []\n" });
    expect((await compile(["x"])).states.map((s) => s.id)).toEqual(["flat"]);
  });
});

describe("context names", () => {
  const probe = (id: string) =>
    [
      `${id}:`,
      "  test.configurable_test_state:",
      "    - changes: false",
      "    - comment: \"{{ [sls, slspath, slsdotpath, slscolonpath, sls_path, tplfile, tpldir, tpldot, tplroot, saltenv, opts['id'], opts['file_client'], opts['__cli']] | join('|') }}\"",
      "",
    ].join("\n");

  it("have Salt's values for init files, nested files and top-level files", async () => {
    await files({
      "p/init.sls": probe("pinit"),
      "p/q/r.sls": probe("pqr"),
      "solo.zy": probe("solo"),
    });
    const c = comments(await compile(["p", "p.q.r", "solo"]));
    expect(c.pinit).toBe("p|p|p|p|p|p/init.sls|p|p|p|base|web1|local|salt-minion");
    expect(c.pqr).toBe("p.q.r|p/q|p.q|p:q|p_q|p/q/r.sls|p/q|p.q|p|base|web1|local|salt-minion");
    expect(c.solo).toBe("solo|||||solo.zy|.||.|base|web1|local|salt-minion");
  });

  it("tplpath is the file's absolute path", async () => {
    await files({ "p/init.sls": "x:\n  test.configurable_test_state:\n    - comment: '{{ tplpath }}'\n" });
    expect(comments(await compile(["p"])).x).toBe(join(dir, "p/init.sls"));
  });
});

describe("Salt's state forms", () => {
  it("extend: may name only the module, as Salt allows", async () => {
    await files({
      "svc.sls": [
        "include:",
        "  - base",
        "extend:",
        "  app_service:",
        "    test:",
        "      - require:",
        "        - test: app_config",
        "",
      ].join("\n"),
      "base.sls": "app_config:\n  test.nop: []\napp_service:\n  test.nop: []\n",
    });
    const p = await compile(["svc"]);
    const svc = p.states.find((s) => s.id === "app_service")!;
    expect(svc.requisites.map((r) => r.ref)).toEqual(["test: app_config"]);
  });
});

describe("file templates and file.managed's Salt parameters", () => {
  it("file templates see source, name, user, mode; contents_pillar; salt['file.dirname']", async () => {
    const out = join(dir, "out");
    await files({
      "files/app.conf.jinja": "{{ source }} {{ name }} {{ mode }} {{ user or 'nobody' }} {{ saltenv }}\n",
      "app.sls": [
        "app_conf:",
        "  file.managed:",
        `    - name: ${out}/app.conf`,
        "    - makedirs: True",
        "    - mode: '0640'",
        "    - source:",
        "      - salt://files/missing.jinja",
        "      - salt://files/app.conf.jinja",
        "    - template: jinja",
        "from_pillar:",
        "  file.managed:",
        `    - name: ${out}/motd`,
        "    - makedirs: True",
        "    - contents_pillar: motd:text",
        "parent:",
        "  test.configurable_test_state:",
        "    - changes: False",
        `    - comment: "{{ salt['file.dirname']('${out}/motd') }}|{{ salt['file.basename']('/a/b.txt') }}"`,
        "",
      ].join("\n"),
    });
    const report = await applyTarget(
      { kind: "sls", refs: ["app"] },
      { statesDir: dir, settings: { motd: { text: ["hello", "world"] } }, facts: async () => DEBIAN },
    );
    expect(report.results.filter((r) => !r.result)).toEqual([]);
    expect(await readFile(join(out, "app.conf"), "utf8")).toBe(
      `salt://files/app.conf.jinja ${out}/app.conf 0640 nobody base\n`,
    );
    expect(await readFile(join(out, "motd"), "utf8")).toBe("hello\nworld\n");
    expect(report.results.find((r) => r.id === "parent")?.comment).toBe(`${out}|b.txt`);
  });
});

describe("Salt's global state arguments and helpers formulas use", () => {
  it("parallel and reload_modules are accepted; cmd.has_exec and cmd.which answer from PATH", async () => {
    await files({
      "g.sls": [
        "probe:",
        "  test.configurable_test_state:",
        "    - changes: False",
        "    - parallel: True",
        "    - reload_modules: True",
        "    - comment: \"{{ 'yes' if salt['cmd.has_exec']('sh') else 'no' }}|{{ 'yes' if salt['cmd.has_exec']('no-such-program-zq') else 'no' }}|{{ salt['cmd.which']('sh') }}\"",
        "",
      ].join("\n"),
    });
    const report = await applyTarget(
      { kind: "sls", refs: ["g"] },
      { statesDir: dir, settings: {}, facts: async () => DEBIAN },
    );
    const which = execFileSync("sh", ["-c", "command -v sh"], { encoding: "utf8" }).trim();
    expect(report.results[0]?.comment).toBe(`yes|no|${which}`);
  });

  it("zester local --settings-dir renders a Salt pillar tree (Jinja, grains) as settings", async () => {
    const bin = resolve(import.meta.dirname, "../dist/bin/zester.js");
    requireBuilt(bin);
    await files({
      "states/s.sls":
        "s:\n  test.configurable_test_state:\n    - changes: False\n    - comment: '{{ pillar.app.family }}'\n",
      "pillar/top.sls": "base:\n  '*':\n    - app\n",
      "pillar/app.sls": "app:\n  family: {{ grains.os_family }}-{{ grains.os }}\n",
    });
    const r = await runCli(bin, [
      "local",
      "--states-dir",
      join(dir, "states"),
      "--settings-dir",
      join(dir, "pillar"),
      "--no-cache",
      "--format",
      "json",
      "state.apply",
      "s",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)[0].results[0].comment).toBe("Debian-Debian");
  });
});

describe("grains in templates", () => {
  it("grains are Salt's view of the facts; facts keep their own names", async () => {
    await files({
      "g.sls":
        "g:\n  test.configurable_test_state:\n    - comment: '{{ grains.os }} {{ grains.osfinger }} {{ facts.os }} {{ grains.osarch }}'\n",
    });
    expect(comments(await compile(["g"])).g).toBe("Debian Debian-12 linux amd64");
  });

  it("grains used only inside an imported map.jinja are collected", async () => {
    let collected = 0;
    await files({
      "formula/map.jinja": "{% set family = grains.os_family %}{% set finger = grains.osfinger %}\n",
      "formula/init.sls": [
        '{% from "formula/map.jinja" import family, finger with context %}',
        "pkg:",
        "  test.configurable_test_state:",
        "    - comment: '{{ family }}/{{ finger }}'",
        "",
      ].join("\n"),
    });
    const p = await compile(["formula"], async () => {
      collected++;
      return DEBIAN;
    });
    expect(collected).toBe(1);
    expect(comments(p).pkg).toBe("Debian/Debian-12");
  });
});

describe("settings (pillar) trees", () => {
  it("top.sls and .sls files, with grains and context names", async () => {
    const settings = await resolveSettings({
      files: {
        "top.sls": "base:\n  'G@os:Debian':\n    - common\n",
        "common/init.sls": "family: {{ grains.os_family }}\nwhere: {{ tpldir }}/{{ sls }}\n",
      },
      facts: DEBIAN,
      peelId: "web1",
    });
    expect(settings).toEqual({ family: "Debian", where: "common/common" });
  });

  it("both top.sls and top.zy in a settings tree is an error", async () => {
    const err = await resolveSettings({
      files: { "top.sls": "base: {}\n", "top.zy": "base: {}\n" },
      facts: DEBIAN,
      peelId: "web1",
    }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toContain('"top" is both top.sls and top.zy');
  });
});
