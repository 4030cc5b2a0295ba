import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Program } from "../src/state/compile.js";
import { CompileError, type Diagnostic } from "../src/state/diagnostics.js";
import { compileTarget } from "../src/state/engine.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-compile-"));
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

function compile(
  refs: string[],
  extra: { settings?: Record<string, unknown>; facts?: Record<string, unknown> } = {},
) {
  return compileTarget(refs.length === 0 ? { kind: "highstate" } : { kind: "sls", refs }, {
    statesDir: dir,
    settings: extra.settings ?? {},
    facts: async () => extra.facts ?? { id: "web1", os: "Debian", roles: ["web", "db"] },
  });
}

async function errors(refs: string[]): Promise<Diagnostic[]> {
  const err = await compile(refs).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CompileError);
  return (err as CompileError).diagnostics;
}

function names(p: Program): string[] {
  return p.states.map((s) => s.name);
}

describe("compile errors", () => {
  it("reports every error of a tree at once, each with file:line:column, id and excerpt", async () => {
    await files({
      "bad.zy": [
        "pkg_thing:", //                          1
        "  tset.nop: []", //                      2 unknown module
        "svc:", //                                3
        "  test.noop: []", //                     4 unknown function
        "conf:", //                               5
        "  test.configurable_test_state:", //     6
        "    - requre: []", //                    7 mistyped requisite
        "    - result: [1]", //                   8 ill-typed
        "    - require:", //                      9
        "      - test: nothere", //               10 missing target
        "dep:", //                                11
        "  test.nop:", //                         12
        "    - require:", //                      13
        "        test: conf", //                  14 map instead of list
        "a:", //                                  15
        "  test.nop:", //                         16
        "    - require: [b]", //                  17
        "b:", //                                  18
        "  test.nop:", //                         19
        "    - require: [a]", //                  20
        "",
      ].join("\n"),
    });
    const ds = await errors(["bad"]);
    const at = (line: number) => ds.filter((d) => d.line === line);
    expect(at(2)[0]).toMatchObject({ kind: "unknown-module", file: "bad.zy", col: 3, id: "pkg_thing" });
    expect(at(4)[0]).toMatchObject({ kind: "unknown-function", col: 3, id: "svc" });
    expect(at(4)[0]!.message).toContain('did you mean "test.nop"');
    expect(at(7)[0]).toMatchObject({ kind: "param", col: 7, id: "conf" });
    expect(at(7)[0]!.message).toContain('unknown parameter "requre" (did you mean "require"?)');
    expect(at(8)[0]).toMatchObject({ kind: "param", col: 7 });
    expect(at(8)[0]!.message).toContain("must be boolean");
    expect(at(10)[0]).toMatchObject({ kind: "requisite", id: "conf" });
    expect(at(10)[0]!.message).toContain('"test: nothere"');
    expect(at(13)[0]).toMatchObject({ kind: "requisite", id: "dep", col: 7 });
    expect(at(13)[0]!.message).toContain("not a map");
    const cycle = ds.find((d) => d.kind === "cycle")!;
    expect(cycle).toMatchObject({ file: "bad.zy", line: 16 });
    expect(cycle.message).toContain("test.nop:a -> test.nop:b -> test.nop:a");
    expect(ds).toHaveLength(7);
    for (const d of ds) expect(d.excerpt).toContain(`${d.line} | `);
    const msg = new CompileError(ds).message;
    expect(msg).toContain("bad.zy:2:3: unknown-module error [pkg_thing]");
  });

  it("reports template errors with their position", async () => {
    await files({
      "t.zy": "a:\n  test.nop:\n    - name: {{ facts.os | nosuchfilter }}\n",
      "u.zy": "x: {% if %}\n",
    });
    const ds = await errors(["t", "u"]);
    const t = ds.find((d) => d.file === "t.zy")!;
    expect(t.kind).toBe("template");
    expect(t.line).toBe(3);
    expect(t.message).toContain("nosuchfilter");
    const u = ds.find((d) => d.file === "u.zy")!;
    expect(u).toMatchObject({ kind: "template", line: 1 });
  });

  it("reports YAML errors with their position", async () => {
    await files({ "y.zy": "a:\n  test.nop:\n    - name: [unclosed\nb: c\n" });
    const ds = await errors(["y"]);
    expect(ds[0]).toMatchObject({ kind: "yaml", file: "y.zy" });
    expect(ds[0]!.line).toBeGreaterThanOrEqual(3);
  });

  it("reports a missing sls where it was included", async () => {
    await files({ "top1.zy": "include:\n  - nothere\n" });
    const ds = await errors(["top1"]);
    expect(ds[0]).toMatchObject({ kind: "include", file: "top1.zy", line: 2, col: 5 });
  });

  it("reports duplicate state names", async () => {
    await files({ "a.zy": "include: [b]\nx:\n  test.nop: []\n", "b.zy": "x:\n  test.nop: []\n" });
    const ds = await errors(["a"]);
    expect(ds[0]!.kind).toBe("duplicate");
  });
});

describe("compile", () => {
  it("an unknown parameter is a warning on the state (Salt ignores it), a mistyped requisite an error", async () => {
    await files({
      "extra.sls": [
        "conf:", //                             1
        "  test.configurable_test_state:", //   2
        "    - chnages: true", //               3 typo of a real parameter
        "    - output_loglevel: quiet", //      4 a Salt option Zester has no use for
        "",
      ].join("\n"),
    });
    const p = await compile(["extra"]);
    expect(p.states[0]!.warnings).toEqual([
      'extra.sls:3:7: test.configurable_test_state: unknown parameter "chnages" (did you mean "changes"?), ignored',
      'extra.sls:4:7: test.configurable_test_state: unknown parameter "output_loglevel", ignored',
    ]);
    expect(p.states[0]!.params).not.toHaveProperty("chnages");
  });

  it("includes dotted refs, init.zy, relative refs, diamonds and cycles", async () => {
    await files({
      "app/init.zy": "include:\n  - .db\n  - common\napp:\n  test.nop:\n    - require: [db, common]\n",
      "app/db.zy": "include: [common, app]\ndb:\n  test.nop: []\n",
      "common.zy": "common:\n  test.nop: []\n",
    });
    const p = await compile(["app"]);
    expect(names(p).sort()).toEqual(["test.nop:app", "test.nop:common", "test.nop:db"]);
    expect(p.states.find((s) => s.id === "db")!.sls).toBe("app.db");
  });

  it("accepts the short and Salt long forms", async () => {
    await files({
      "forms.zy":
        "a:\n  test.nop: []\nb:\n  test.nop\nc:\n  test:\n    - configurable_test_state\n    - comment: hi\n",
    });
    const p = await compile(["forms"]);
    expect(names(p)).toEqual(["test.nop:a", "test.nop:b", "test.configurable_test_state:c"]);
    expect(p.states[2]!.params.comment).toBe("hi");
    expect(p.states[0]!.params.name).toBe("a");
  });

  it("extend appends requisites and replaces parameters", async () => {
    await files({
      "base.zy":
        "x:\n  test.configurable_test_state:\n    - comment: one\n    - require: [y]\ny:\n  test.nop: []\nz:\n  test.nop: []\n",
      "ext.zy":
        "include: [base]\nextend:\n  x:\n    test.configurable_test_state:\n      - comment: two\n      - require: [z]\n",
    });
    const p = await compile(["ext"]);
    const x = p.states.find((s) => s.id === "x")!;
    expect(x.params.comment).toBe("two");
    expect(x.requisites.flatMap((r) => r.targets.map((t) => p.states[t]!.id))).toEqual(["y", "z"]);
  });

  it("names expands one declaration and requisites on its id reach every expansion", async () => {
    await files({
      "n.zy":
        "pkgs:\n  test.configurable_test_state:\n    - names:\n      - one\n      - two:\n        - comment: second\n    - comment: first\nafter:\n  test.nop:\n    - require: [pkgs]\n",
    });
    const p = await compile(["n"]);
    expect(names(p)).toEqual([
      "test.configurable_test_state:one",
      "test.configurable_test_state:two",
      "test.nop:after",
    ]);
    expect(p.states[0]!.params).toMatchObject({ name: "one", comment: "first" });
    expect(p.states[1]!.params).toMatchObject({ name: "two", comment: "second" });
    expect(p.states[2]!.requisites[0]!.targets).toEqual([0, 1]);
  });

  it("one name from two declarations' names is two states, as Salt keeps them apart by declaration ID", async () => {
    await files({
      "a.zy": "a-deps:\n  test.nop:\n    - names: [curl, git]\n",
      "b.zy":
        "include: [a]\nb-deps:\n  test.nop:\n    - names: [curl]\nafter:\n  test.nop:\n    - require: [curl]\n",
    });
    const p = await compile(["b"]);
    expect(names(p)).toEqual(["test.nop:curl", "test.nop:git", "test.nop:b-deps:curl", "test.nop:after"]);
    expect(p.states[2]!.id).toBe("curl");
    expect(p.states[3]!.requisites[0]!.targets).toEqual([0, 2]);
    // The same name twice in one declaration stays an error.
    await files({ "c.zy": "c-deps:\n  test.nop:\n    - names: [x, x]\n" });
    expect((await errors(["c"])).map((d) => d.message)).toEqual([
      expect.stringMatching(/^state test.nop:x is declared twice \(first at c.zy:2:3\)/),
    ]);
  });

  it("use copies parameters the state does not set", async () => {
    await files({
      "u.zy":
        "a:\n  test.configurable_test_state:\n    - comment: shared\n    - result: false\n    - require: [c]\nb:\n  test.configurable_test_state:\n    - use: [a]\n    - result: true\nc:\n  test.nop: []\n",
    });
    const p = await compile(["u"]);
    const b = p.states.find((s) => s.id === "b")!;
    expect(b.params).toMatchObject({ name: "b", comment: "shared", result: true });
    expect(b.requisites).toEqual([]);
  });

  it("_in forms land on the target", async () => {
    await files({
      "i.zy":
        "a:\n  test.nop:\n    - require_in: [b]\n    - watch_in:\n      - test: b\nb:\n  test.nop: []\n",
    });
    const p = await compile(["i"]);
    expect(p.states[1]!.requisites.map((r) => [r.kind, r.targets])).toEqual([
      ["require", [0]],
      ["watch", [0]],
    ]);
  });

  it("renders with facts, settings, grains and pillar", async () => {
    await files({
      "r.zy":
        "{% for r in grains.roles %}role_{{ r }}:\n  test.show_notification:\n    - text: {{ pillar.get('greet:word', 'none') }} {{ facts.os }}\n{% endfor %}",
    });
    const p = await compile(["r"], { settings: { greet: { word: "hi" } } });
    expect(names(p)).toEqual(["test.show_notification:role_web", "test.show_notification:role_db"]);
    expect(p.states[0]!.params.text).toBe("hi Debian");
  });

  it("highstate from top.zy: glob on id and key:value facts", async () => {
    await files({
      "top.zy":
        "base:\n  '*':\n    - common\n  'web*':\n    - web\n  'db*':\n    - db\n  'os:Deb*':\n    - debian\n  'roles:db':\n    - dbrole\n  'os:RedHat':\n    - redhat\n",
      "common.zy": "common:\n  test.nop: []\n",
      "web.zy": "web:\n  test.nop: []\n",
      "db.zy": "db:\n  test.nop: []\n",
      "debian.zy": "debian:\n  test.nop: []\n",
      "dbrole.zy": "dbrole:\n  test.nop: []\n",
      "redhat.zy": "redhat:\n  test.nop: []\n",
    });
    const p = await compile([]);
    expect(p.states.map((s) => s.id)).toEqual(["common", "web", "debian", "dbrole"]);
  });

  it("order: parses first, last and numbers", async () => {
    await files({
      "o.zy":
        "a:\n  test.nop:\n    - order: last\nb:\n  test.nop:\n    - order: first\nc:\n  test.nop:\n    - order: 5\n",
    });
    const p = await compile(["o"]);
    expect(p.states.map((s) => s.order)).toEqual([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 5]);
  });
});
