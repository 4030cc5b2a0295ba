import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SettingsError } from "../src/settings/errors.js";
import { deepMerge } from "../src/settings/merge.js";
import { resolveSettings, resolveSettingsDetailed, settingsTopRefs } from "../src/settings/resolve.js";
import { readSettingsTree } from "../src/settings/source.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tree(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "zester-settings-"));
  dirs.push(dir);
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), text);
  }
  return dir;
}

const web = { id: "web-01", facts: { id: "web-01", role: "webserver", os: "Debian", cpu_count: 4 } };
const db = { id: "db-01", facts: { id: "db-01", role: "database", os: "Debian", cpu_count: 2 } };

async function settingsError(p: Promise<unknown>): Promise<SettingsError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SettingsError);
  return err as SettingsError;
}

describe("deepMerge", () => {
  it("merges maps recursively, replaces lists and scalars, keeps inputs intact", () => {
    const a = { app: { port: 80, hosts: ["a", "b"], tls: { on: false, ciphers: "x" } }, keep: 1 };
    const b = { app: { hosts: ["c"], tls: { on: true } }, extra: { x: 1 } };
    expect(deepMerge(a, b)).toEqual({
      app: { port: 80, hosts: ["c"], tls: { on: true, ciphers: "x" } },
      keep: 1,
      extra: { x: 1 },
    });
    expect(a.app.hosts).toEqual(["a", "b"]);
    expect(deepMerge({ a: { b: 1 } }, { a: "flat" })).toEqual({ a: "flat" });
    expect(deepMerge({ a: "flat" }, { a: { b: 1 } })).toEqual({ a: { b: 1 } });
  });

  it("treats __proto__ as a plain key", () => {
    const over = JSON.parse('{"__proto__": {"polluted": true}}') as Record<string, unknown>;
    const out = deepMerge({}, over);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.hasOwn(out, "__proto__")).toBe(true);
  });
});

describe("resolveSettings", () => {
  it("merges matching files in top.zy order; later wins; lists replace", async () => {
    const dir = await tree({
      "top.zy": "base:\n  '*':\n    - common.base\n  'role:webserver':\n    - webservers.nginx\n",
      "common/base.zy": "ntp: {servers: [a, b]}\napp:\n  port: 80\n  log: info\n",
      "webservers/nginx.zy": "ntp: {servers: [c]}\napp:\n  port: 8080\nnginx:\n  workers: 2\n",
    });
    const res = await resolveSettingsDetailed({ files: dir, facts: web.facts, peelId: web.id });
    expect(res.settings).toEqual({
      ntp: { servers: ["c"] },
      app: { port: 8080, log: "info" },
      nginx: { workers: 2 },
    });
    expect(res.refs.map((r) => [r.ref, r.file, r.target])).toEqual([
      ["common.base", "common/base.zy", "*"],
      ["webservers.nginx", "webservers/nginx.zy", "role:webserver"],
    ]);
    // The database peel does not match role:webserver.
    expect(await resolveSettings({ files: dir, facts: db.facts, peelId: db.id })).toEqual({
      ntp: { servers: ["a", "b"] },
      app: { port: 80, log: "info" },
    });
  });

  it("supports compound, glob, list and G@ targets, and init.zy files", async () => {
    const files = {
      "top.zy": [
        "base:",
        "  'web-*':",
        "    - by.glob",
        "  'G@os:Debian and not role:database':",
        "    - by.compound",
        "  'L@db-01,db-02':",
        "    - by.list",
        "  'E@^nomatch$':",
        "    - by.none",
        "",
      ].join("\n"),
      "by/glob.zy": "glob: true\n",
      "by/compound/init.zy": "compound: true\n",
      "by/list.zy": "list: true\n",
      "by/none.zy": "none: true\n",
    };
    expect(await resolveSettings({ files, facts: web.facts, peelId: web.id })).toEqual({
      glob: true,
      compound: true,
    });
    expect(await resolveSettings({ files, facts: db.facts, peelId: db.id })).toEqual({ list: true });
    const refs = await settingsTopRefs({ files, facts: web.facts, peelId: web.id });
    expect(refs.map((r) => r.file)).toEqual(["by/glob.zy", "by/compound/init.zy"]);
  });

  it("a ref listed under two matching targets is merged once, at its first place", async () => {
    const files = {
      "top.zy": "base:\n  '*':\n    - a\n    - b\n  'web-*':\n    - a\n",
      "a.zy": "v: a\n",
      "b.zy": "v: b\n",
    };
    const res = await resolveSettingsDetailed({ files, facts: web.facts, peelId: web.id });
    expect(res.refs.map((r) => r.ref)).toEqual(["a", "b"]);
    expect(res.settings).toEqual({ v: "b" });
  });

  it("renders Jinja with facts and the settings merged so far (settings and pillar)", async () => {
    const dir = await tree({
      "top.zy": "base:\n  '*':\n    - common\n    - app\n",
      "common.zy": "db:\n  host: db.{{ facts.os | lower }}.internal\n  port: 5432\n",
      "app.zy": [
        "{% set workers = facts.cpu_count * 2 %}",
        "app:",
        "  workers: {{ workers }}",
        "  dsn: postgres://{{ settings.db.host }}:{{ pillar['db']['port'] }}/app",
        "  grain_os: {{ grains.os }}",
        "  peel: {{ id }}",
        "{% if facts.role == 'webserver' %}",
        "  web: true",
        "{% endif %}",
        "",
      ].join("\n"),
    });
    expect(await resolveSettings({ files: dir, facts: web.facts, peelId: web.id })).toEqual({
      db: { host: "db.debian.internal", port: 5432 },
      app: {
        workers: 8,
        dsn: "postgres://db.debian.internal:5432/app",
        grain_os: "Debian",
        peel: "web-01",
        web: true,
      },
    });
  });

  it("top.zy itself may be a template over facts", async () => {
    const files = {
      "top.zy":
        "base:\n  '*':\n{% if facts.role == 'webserver' %}\n    - web\n{% else %}\n    - other\n{% endif %}\n",
      "web.zy": "kind: web\n",
      "other.zy": "kind: other\n",
    };
    expect(await resolveSettings({ files, facts: web.facts, peelId: web.id })).toEqual({ kind: "web" });
    expect(await resolveSettings({ files, facts: db.facts, peelId: db.id })).toEqual({ kind: "other" });
  });

  it("a reader function is a valid source; no top.zy means no settings", async () => {
    const seen: string[] = [];
    const files = async (rel: string) => {
      seen.push(rel);
      return rel === "top.zy" ? "base:\n  '*':\n    - x\n" : rel === "x/init.zy" ? "x: 1\n" : undefined;
    };
    expect(await resolveSettings({ files, facts: web.facts, peelId: web.id })).toEqual({ x: 1 });
    // Both extensions are probed at each level (a name present as both is an error).
    expect(seen).toEqual(["top.sls", "top.zy", "x.sls", "x.zy", "x/init.sls", "x/init.zy"]);
    expect(await resolveSettings({ files: {}, facts: web.facts, peelId: web.id })).toEqual({});
  });

  it("reports a missing ref at its position in top.zy", async () => {
    const files = {
      "top.zy": "base:\n  '*':\n    - common.base\n    - nope.there\n",
      "common/base.zy": "a: 1\n",
    };
    const err = await settingsError(resolveSettings({ files, facts: web.facts, peelId: web.id }));
    expect(err.diagnostics).toHaveLength(1);
    expect(err.diagnostics[0]).toMatchObject({ kind: "include", file: "top.zy", line: 4, col: 7 });
    expect(err.message).toContain("top.zy:4:7");
    expect(err.message).toContain(
      "looked for nope/there.sls, nope/there.zy, nope/there/init.sls or nope/there/init.zy",
    );
  });

  it("reports template, YAML and structure errors with file:line:column, all at once", async () => {
    const files = {
      "top.zy": "base:\n  '*':\n    - tmpl\n    - yaml\n    - list\n    - good\n",
      "tmpl.zy": "a: 1\nb: {{ facts.os | nosuchfilter }}\n",
      "yaml.zy": "a: 1\nb: 2\nc: 3\nd: e: f\n",
      "list.zy": "- just\n- a list\n",
      "good.zy": "ok: true\n",
    };
    const err = await settingsError(resolveSettings({ files, facts: web.facts, peelId: web.id }));
    const by = Object.fromEntries(err.diagnostics.map((d) => [d.file, d]));
    expect(by["tmpl.zy"]).toMatchObject({ kind: "template", line: 2 });
    expect(by["tmpl.zy"]!.message).toContain("nosuchfilter");
    expect(by["yaml.zy"]).toMatchObject({ kind: "yaml", line: 4 });
    expect(by["list.zy"]).toMatchObject({ kind: "structure", line: 1, col: 1 });
    expect(by["good.zy"]).toBeUndefined();
    expect(err.message).toMatch(/tmpl\.zy:2:\d+: template error/);
    expect(err.message).toMatch(/yaml\.zy:4:\d+: yaml error/);
  });

  it("reports a bad target expression at its column in top.zy", async () => {
    const files = { "top.zy": "base:\n  'web-* and (':\n    - a\n", "a.zy": "a: 1\n" };
    const err = await settingsError(resolveSettings({ files, facts: web.facts, peelId: web.id }));
    expect(err.diagnostics[0]).toMatchObject({ file: "top.zy", line: 2 });
    expect(err.diagnostics[0]!.col).toBeGreaterThan(3);
  });

  it("rejects duplicate keys, unknown environments and non-list targets", async () => {
    const files = {
      "top.zy": "base:\n  '*': common\ndev:\n  '*':\n    - x\n",
      "dup.zy": "a: 1\na: 2\n",
    };
    const err = await settingsError(resolveSettings({ files, facts: web.facts, peelId: web.id }));
    expect(err.diagnostics.map((d) => [d.line, d.col])).toEqual([
      [2, 8],
      [3, 1],
    ]);
    const dup = await settingsError(
      resolveSettings({
        files: { "top.zy": "base:\n  '*': [dup]\n", "dup.zy": "a: 1\na: 2\n" },
        facts: {},
        peelId: "p",
      }),
    );
    expect(dup.diagnostics[0]).toMatchObject({ kind: "yaml", file: "dup.zy", line: 2, col: 1 });
  });

  it("an alias bomb is a YAML error, not a hang", async () => {
    const bomb = [
      "a: &a [x, x, x, x, x, x, x, x, x, x]",
      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]",
      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]",
      "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]",
      "",
    ].join("\n");
    const files = { "top.zy": "base:\n  '*': [bomb]\n", "bomb.zy": bomb };
    const err = await settingsError(resolveSettings({ files, facts: {}, peelId: "p" }));
    expect(err.diagnostics[0]).toMatchObject({ kind: "yaml", file: "bomb.zy" });
  });

  it("refuses refs that would leave the settings root", async () => {
    const files = { "top.zy": "base:\n  '*':\n    - ../etc\n" };
    const err = await settingsError(resolveSettings({ files, facts: {}, peelId: "p" }));
    expect(err.message).toContain("invalid settings name");
  });
});

describe("readSettingsTree", () => {
  it("reads every file by relative path, skips hidden ones, follows file links only", async () => {
    const dir = await tree({
      "top.zy": "base: {}\n",
      "a/b.zy": "x: 1\n",
      ".git/config": "no",
      "a/.swp": "no",
    });
    const outside = await tree({ "shared.zy": "s: 1\n" });
    await symlink(join(outside, "shared.zy"), join(dir, "a", "linked.zy"));
    expect(await readSettingsTree(dir)).toEqual({
      "a/b.zy": "x: 1\n",
      "a/linked.zy": "s: 1\n",
      "top.zy": "base: {}\n",
    });
    await symlink(outside, join(dir, "loop"));
    await expect(readSettingsTree(dir)).rejects.toThrow(/symlink to a directory/);
  });

  it("reports a dangling symlink as such, never as a missing settings dir (ENOENT)", async () => {
    const dir = await tree({ "top.zy": "base: {}\n" });
    await symlink(join(dir, "gone.zy"), join(dir, "dangling.zy"));
    const err = await readSettingsTree(dir).catch((e: NodeJS.ErrnoException) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as NodeJS.ErrnoException).code).toBeUndefined();
    expect((err as Error).message).toMatch(/dangling\.zy is a symlink to a missing file/);
  });
});
