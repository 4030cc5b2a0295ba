import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { compileTarget } from "../src/state/engine.js";

/**
 * A formula-shaped tree written for this test, in the shape of the public Salt formulas:
 * map.jinja with defaults.yaml and osfamilymap.yaml through import_yaml and grains.filter_by,
 * pillar merged over the defaults, a libtofs-style source list macro, and macros emitting state
 * blocks. It is compiled the way `state.apply` compiles a tree.
 */
const TREE: Record<string, string> = {
  "web/defaults.yaml": [
    "web:",
    "  pkg: nginx",
    "  service: nginx",
    "  config: /etc/nginx/nginx.conf",
    "  user: www-data",
    "  workers: {{ grains.num_cpus * 2 }}",
    "  sites: {}",
    "",
  ].join("\n"),
  "web/osfamilymap.yaml": [
    "Debian:",
    "  user: www-data",
    "RedHat:",
    "  user: nginx",
    "  pkg: nginx-core",
    "",
  ].join("\n"),
  "web/map.jinja": [
    "{#- defaults, then the os family, then pillar lookup, then the pillar itself #}",
    '{%- import_yaml tpldir ~ "/defaults.yaml" as default_settings %}',
    '{%- import_yaml tpldir ~ "/osfamilymap.yaml" as osfamilymap %}',
    "{%- set osfam = salt['grains.filter_by'](osfamilymap, grain='os_family', merge=salt['pillar.get']('web:lookup', {})) %}",
    "{%- set defaults = salt['grains.filter_by'](default_settings, default='web', merge=osfam) %}",
    "{%- set web = salt['pillar.get']('web', default=defaults, merge=True) %}",
    "{%- do web.pop('lookup', none) %}",
    "",
  ].join("\n"),
  "web/libtofs.jinja": [
    "{%- macro files_switch(source_files, default_files_switch=['id', 'os_family']) %}",
    "{%-   set fsl = salt['config.get']('web:tofs:files_switch', default_files_switch) %}",
    "{%-   set sources = [] %}",
    "{%-   for fs in fsl %}",
    "{%-     for sf in source_files %}",
    "{%-       do sources.append('salt://web/files/' ~ salt['config.get'](fs) ~ '/' ~ sf) %}",
    "{%-     endfor %}",
    "{%-   endfor %}",
    "{%-   for sf in source_files %}",
    "{%-     do sources.append('salt://web/files/default/' ~ sf) %}",
    "{%-   endfor %}",
    "{{- sources | join(',') }}",
    "{%- endmacro %}",
    "",
  ].join("\n"),
  "web/macros.jinja": [
    "{%- macro site(name, conf) %}",
    "web-site-{{ name }}:",
    "  test.show_notification:",
    "    - text: \"{{ name }} root={{ conf.root }} ssl={{ conf.get('ssl', False) }} port={{ conf.port | default(80) }}\"",
    "{%- endmacro %}",
    "",
  ].join("\n"),
  "web/init.zy": [
    '{%- from tpldir ~ "/map.jinja" import web with context %}',
    '{%- from tpldir ~ "/libtofs.jinja" import files_switch with context %}',
    '{%- import tpldir ~ "/macros.jinja" as m %}',
    "web-pkg:",
    "  test.show_notification:",
    '    - text: "pkg={{ web.pkg }} user={{ web.user }} workers={{ web.workers }}"',
    "web-config:",
    "  test.show_notification:",
    "    - text: \"{{ files_switch(['nginx.conf']) }}\"",
    "{%- for name, conf in web.sites | dictsort %}",
    "{{ m.site(name, conf) }}",
    "{%- endfor %}",
    "{%- if web.get('extra_users') %}",
    "web-users:",
    "  test.show_notification:",
    "    - text: \"{{ web.extra_users | join(' ') }}\"",
    "{%- endif %}",
    "",
  ].join("\n"),
};

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "zester-formula-"));
  for (const [p, text] of Object.entries(TREE)) {
    await mkdir(dirname(join(dir, p)), { recursive: true });
    await writeFile(join(dir, p), text);
  }
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function texts(
  settings: Record<string, unknown>,
  facts: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const p = await compileTarget(
    { kind: "sls", refs: ["web"] },
    { statesDir: dir, settings, facts: async () => facts },
  );
  return Object.fromEntries(p.states.map((s) => [s.id, s.params.text]));
}

describe("a formula-shaped tree", () => {
  const debian = { id: "web-01", os: "Debian", os_family: "Debian", num_cpus: 2 };

  it("renders defaults and the os family map with no pillar", async () => {
    expect(await texts({}, debian)).toEqual({
      "web-pkg": "pkg=nginx user=www-data workers=4",
      "web-config":
        "salt://web/files/web-01/nginx.conf,salt://web/files/Debian/nginx.conf,salt://web/files/default/nginx.conf",
    });
  });

  it("merges pillar (lookup and top level) over the defaults; macros emit one state per site", async () => {
    const settings = {
      web: {
        lookup: { pkg: "nginx-full" },
        user: "nginx-runner",
        sites: { blog: { root: "/srv/blog", ssl: true }, api: { root: "/srv/api", port: 8080 } },
        extra_users: ["ann", "bo"],
        tofs: { files_switch: ["os"] },
      },
    };
    expect(await texts(settings, { ...debian, os_family: "RedHat", os: "CentOS" })).toEqual({
      "web-pkg": "pkg=nginx-full user=nginx-runner workers=4",
      "web-config": "salt://web/files/CentOS/nginx.conf,salt://web/files/default/nginx.conf",
      "web-site-api": "api root=/srv/api ssl=False port=8080",
      "web-site-blog": "blog root=/srv/blog ssl=True port=80",
      "web-users": "ann bo",
    });
  });
});
