import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TemplateError, TemplateRenderer } from "../src/template/render.js";

/** Salt's additions to Jinja, with expectations from Salt's documented behaviour. */
const grains = { os: "Debian", os_family: "Debian", osarch: "amd64", roles: ["web", "db"], id: "web-01" };
const pillar = {
  nginx: { port: 8080, sites: { a: 1 } },
  users: ["ann"],
  list: [{ name: "x" }, { name: "y" }],
};

async function render(t: string, opts: ConstructorParameters<typeof TemplateRenderer>[0] = {}, vars = {}) {
  return new TemplateRenderer(opts).render(t, { grains, pillar, ...vars }, "t.sls");
}

describe("Salt's filters", () => {
  it("strftime reads dates as Salt's documentation shows; status.time formats now", async () => {
    // Salt's docs: {{ "2002/12/25"|strftime("%y") }} is 02.
    expect(
      await render('{{ "2002/12/25"|strftime("%y") }}|{{ "2002-12-25 13:05"|strftime("%H:%M %j") }}'),
    ).toBe("02|13:05 359");
    await expect(render('{{ "next tuesday"|strftime }}')).rejects.toThrow(/Unable to parse next tuesday/);
    const year = String(new Date().getFullYear());
    expect(await render("{{ salt['status.time']('%Y') }}")).toBe(year);
    expect(await render("{{ salt['status.time'] is callable }}")).toBe("True");
  });

  it("cp.list_states / list_master / list_master_dirs list the states tree as Salt's fileserver does", async () => {
    const templates = {
      "top.sls": "",
      "web/init.sls": "",
      "web/tls.zy": "",
      "users/files/user/ann/.bashrc": "",
      "users/files/user/bo/x/y.conf": "",
      "users/map.jinja": "",
    };
    expect(await render("{{ salt['cp.list_states']() }}", { templates })).toBe("['top', 'web', 'web.tls']");
    expect(await render("{{ salt['cp.list_master'](prefix='web/') }}", { templates })).toBe(
      "['web/init.sls', 'web/tls.zy']",
    );
    expect(await render("{{ salt['cp.list_master_dirs'](prefix='users/files/user/') }}", { templates })).toBe(
      "['users/files/user/ann', 'users/files/user/bo', 'users/files/user/bo/x']",
    );
    const dir = await mkdtemp(join(tmpdir(), "zester-cp-"));
    try {
      await mkdir(join(dir, "app", "files"), { recursive: true });
      await writeFile(join(dir, "app", "init.sls"), "");
      await writeFile(join(dir, "app", "files", "a.conf"), "");
      expect(
        await render("{{ salt['cp.list_master']() }}|{{ 'app' in salt['cp.list_states']() }}", {
          searchPath: dir,
        }),
      ).toBe("['app/files/a.conf', 'app/init.sls']|True");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("json_query reports a bad JMESPath expression at the template's position", async () => {
    const err = await render("\n{{ pillar | json_query('nginx.[') }}").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TemplateError);
    expect(err).toMatchObject({ source: "t.sls", line: 2, message: expect.stringMatching(/^json_query: /) });
  });

  it("serialises as Salt does (json sorted, yaml flow, tojson escaped)", async () => {
    expect(await render("{{ {'b': 1, 'a': [1, 2.0, none, true]} | json }}")).toBe(
      '{"a": [1, 2.0, null, true], "b": 1}',
    );
    expect(await render("{{ {'b': 1, 'a': 'x y'} | yaml }}")).toBe("{a: x y, b: 1}");
    expect(await render("{{ {'b': {'c': [1, 2]}, 'a': 'yes'} | yaml(False) }}")).toBe(
      "a: 'yes'\nb:\n  c:\n  - 1\n  - 2",
    );
    expect(await render("{{ \"<a href='x'>&\" | tojson }}")).toBe(
      '"\\u003ca href=\\u0027x\\u0027\\u003e\\u0026"',
    );
    expect(await render("{{ 'é' | json }}")).toBe('"\\u00e9"');
    expect(await render("{{ ['a', 'b: c', '1'] | yaml_encode }}")).toBe("[a, 'b: c', '1']");
    expect(await render('{{ \'say "hi"\' | yaml_dquote }}|{{ "it\'s" | yaml_squote }}')).toBe(
      `"say \\"hi\\""|'it''s'`,
    );
  });

  it("loads yaml, json and text (YAML 1.1 as PyYAML: yes is true, 1.0 a float)", async () => {
    expect(await render("{% set d = 'a: yes\\nb: 1.0\\nc: [1, x]' | load_yaml %}{{ d }}")).toBe(
      "{'a': True, 'b': 1.0, 'c': [1, 'x']}",
    );
    expect(await render('{{ (\'{"k": [1, "v"]}\' | load_json).k }}')).toBe("[1, 'v']");
    expect(
      await render(
        "{% load_yaml as cfg %}\nport: {{ pillar.nginx.port }}\nhosts: [a, b]\n{% endload %}{{ cfg.port + 1 }} {{ cfg.hosts }}",
      ),
    ).toBe("8081 ['a', 'b']");
    expect(await render('{% load_json as j %}{"a": {{ 1 + 1 }}}{% endload %}{{ j.a }}')).toBe("2");
    expect(await render("{% load_text as t %}  raw {{ 'x' }}{% endload %}[{{ t }}]")).toBe("[  raw x]");
  });

  it("import_yaml / import_json / import_text render the file as Jinja first", async () => {
    const files = {
      "app/defaults.yaml": "app:\n  port: {{ 8000 + 80 }}\n  os: {{ grains.os }}\n",
      "app/extra.json": '{"debug": false}',
      "app/motd.txt": "hello {{ grains.id }}\n",
    };
    const out = await render(
      "{% import_yaml 'app/defaults.yaml' as d %}{% import_json 'app/extra.json' as e %}{% import_text 'app/motd.txt' as m %}" +
        "{{ d.app.port }} {{ d.app.os }} {{ e.debug }} [{{ m }}]",
      { templates: files },
    );
    expect(out).toBe("8080 Debian False [hello web-01]");
  });

  it("traverse, sequence, is_list, to_bool, exactly_one_true, set filters", async () => {
    expect(
      await render(
        "{{ pillar | traverse('nginx:port') }}|{{ pillar | traverse('list:1:name') }}|{{ pillar | traverse('x:y', 'd') }}",
      ),
    ).toBe("8080|y|d");
    expect(
      await render("{{ 'a' | sequence }}|{{ ['a'] | sequence }}|{{ [] | is_list }}|{{ 'x' | is_list }}"),
    ).toBe("['a']|['a']|True|False");
    expect(
      await render(
        "{{ 'yes' | to_bool }}{{ 'On' | to_bool }}{{ 0 | to_bool }}{{ 2 | to_bool }}{{ [] | to_bool }}{{ none | to_bool }}",
      ),
    ).toBe("TrueFalseFalseTrueFalseFalse");
    expect(
      await render(
        "{{ [0, 1, ''] | exactly_one_true }}|{{ [1, 1] | exactly_one_true }}|{{ [1, 1, 0] | exactly_n_true(2) }}",
      ),
    ).toBe("True|False|True");
    expect(
      await render(
        "{{ [1, 2, 2, 3] | unique }}|{{ [1, 2] | union([2, 3]) }}|{{ [1, 2, 3] | intersect([2, 3, 4]) }}|{{ [1, 2, 3] | difference([2]) }}|{{ [1, 2] | symmetric_difference([2, 3]) }}",
      ),
    ).toBe("[1, 2, 3]|[1, 2, 3]|[2, 3]|[1, 3]|[1, 3]");
  });

  it("regular expressions with Python syntax", async () => {
    expect(await render("{{ 'abcd' | regex_search('^(.*)BC(.*)$', ignorecase=True) }}")).toBe("('a', 'd')");
    expect(await render("{{ 'abcd' | regex_match('bc') }}|{{ 'abcd' | regex_match('(?P<x>a)b') }}")).toBe(
      "None|('a',)",
    );
    expect(await render("{{ 'lets replace spaces' | regex_replace('\\\\s+', '__') }}")).toBe(
      "lets__replace__spaces",
    );
    expect(
      await render(
        "{{ 'k=v' | regex_replace('(\\\\w)=(\\\\w)', '\\\\2=\\\\1') }}|{{ 'a.b' | regex_escape }}",
      ),
    ).toBe("v=k|a\\.b");
    expect(await render("{{ 'web-01' is match('web-\\\\d+') }}|{{ 'db' is match('web') }}")).toBe(
      "True|False",
    );
  });

  it("uuid, hashes, quote and the raise global", async () => {
    // what Python's uuid.uuid5(Salt's namespace, "example") gives
    expect(await render("{{ 'example' | uuid }}")).toBe("9ade8beb-355a-50d8-9011-1c99848a7719");
    expect(await render("{{ 'a b' | quote }}|{{ 'abc' | md5 }}")).toBe(
      "'a b'|900150983cd24fb0d6963f7d28e17f72",
    );
    const err = await render("line\n{{ raise('custom failure') }}").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TemplateError);
    expect((err as TemplateError).message).toBe("custom failure");
    expect((err as TemplateError).line).toBe(2);
  });
});

describe("the salt mapping", () => {
  it("grains.filter_by with grain=, default=, base= and merge=", async () => {
    const lookup =
      "{'Debian': {'pkg': 'apache2', 'x': 1}, 'RedHat': {'pkg': 'httpd'}, 'default': {'pkg': 'web'}, 'base': {'conf': '/etc', 'x': 0}}";
    expect(await render(`{{ salt['grains.filter_by'](${lookup}) }}`)).toBe("{'pkg': 'apache2', 'x': 1}");
    expect(await render(`{{ salt['grains.filter_by'](${lookup}, grain='os') }}`)).toBe(
      "{'pkg': 'apache2', 'x': 1}",
    );
    expect(await render(`{{ salt['grains.filter_by'](${lookup}, grain='osarch') }}`)).toBe("{'pkg': 'web'}");
    expect(await render(`{{ salt['grains.filter_by'](${lookup}, grain='osarch', default='RedHat') }}`)).toBe(
      "{'pkg': 'httpd'}",
    );
    expect(await render(`{{ salt['grains.filter_by'](${lookup}, base='base') }}`)).toBe(
      "{'conf': '/etc', 'x': 1, 'pkg': 'apache2'}",
    );
    expect(
      await render(`{{ salt['grains.filter_by'](${lookup}, merge={'pkg': 'nginx', 'new': true}) }}`),
    ).toBe("{'pkg': 'nginx', 'x': 1, 'new': True}");
    // a list grain matches on any element, with glob patterns
    expect(
      await render("{{ salt['grains.filter_by']({'d*': 'database', 'w?b': 'webserver'}, grain='roles') }}"),
    ).toBe("webserver");
  });

  it("pillar.get, grains.get and config.get take keyword arguments as real kwargs", async () => {
    expect(
      await render(
        "{{ salt['pillar.get']('nginx:port') }}|{{ salt['pillar.get']('nope', default={}) }}|{{ salt['pillar.get']('nope') }}|",
      ),
    ).toBe("8080|{}||");
    expect(await render("{{ salt['pillar.get']('nginx', {'port': 80, 'user': 'www'}, merge=True) }}")).toBe(
      "{'port': 8080, 'user': 'www', 'sites': {'a': 1}}",
    );
    expect(await render("{{ salt['pillar.get']('users', ['root'], merge=True) }}")).toBe("['root', 'ann']");
    expect(
      await render(
        "{{ salt['pillar.get']('nginx.port', delimiter='.') }}|{{ salt.pillar.get('nginx:sites:a') }}",
      ),
    ).toBe("8080|1");
    expect(await render("{{ salt['grains.get']('roles:0') }}|{{ salt['grains.get']('nope', 'd') }}")).toBe(
      "web|d",
    );
    expect(
      await render(
        "{{ salt['config.get']('os') }}|{{ salt['config.get']('nginx:port') }}|{{ salt['config.get']('x', default=5) }}",
      ),
    ).toBe("Debian|8080|5");
  });

  it("slsutil.merge and defaults.merge/deepcopy", async () => {
    expect(
      await render("{{ salt['slsutil.merge']({'a': {'b': 1, 'c': [1]}}, {'a': {'d': 2, 'c': [2]}}) }}"),
    ).toBe("{'a': {'b': 1, 'c': [2], 'd': 2}}");
    expect(
      await render("{{ salt['slsutil.merge']({'a': {'c': [1]}}, {'a': {'c': [2]}}, merge_lists=True) }}"),
    ).toBe("{'a': {'c': [1, 2]}}");
    expect(
      await render(
        "{% set d = {'a': {'x': 1}} %}{% do salt['defaults.merge'](d, {'a': {'y': 2}}) %}{{ d }}|{% set c = salt['defaults.deepcopy'](d) %}{% do c.a.update({'z': 3}) %}{{ d.a | length }}",
      ),
    ).toBe("{'a': {'x': 1, 'y': 2}}|2");
  });

  it("log functions render empty and reach the log", async () => {
    const logged: string[] = [];
    const out = await render("a{{ salt['log.debug']('dbg') }}{% do salt.log.warning('careful', 1) %}b", {
      log: (level, msg) => logged.push(`${level}:${msg}`),
    });
    expect(out).toBe("ab");
    expect(logged).toEqual(["debug:dbg", "warning:careful 1"]);
  });

  it("other functions go through the call bridge with positional args and real kwargs", async () => {
    const calls: unknown[] = [];
    const out = await render(
      "{{ salt['cmd.run']('echo hi', python_shell=True) }}|{{ salt.test.echo({'k': [1, 2.0]}) }}",
      {
        call: async (fun, args, kwargs) => {
          calls.push([fun, args, kwargs]);
          return fun === "cmd.run" ? "hi" : args[0];
        },
      },
    );
    expect(out).toBe("hi|{'k': [1, 2]}");
    expect(calls).toEqual([
      ["cmd.run", ["echo hi"], { python_shell: true }],
      ["test.echo", [{ k: [1, 2] }], {}],
    ]);
  });

  it("basket() asks basket.get for [{peel_id, value}]; mine.get goes to Salt's mine.get with its tgt_type", async () => {
    const calls: unknown[] = [];
    const call = async (fun: string, args: unknown[], kwargs: Record<string, unknown>) => {
      calls.push([fun, args, kwargs]);
      if (fun === "mine.get") return { "web-01": ["10.0.0.1"], "web-02": ["10.0.0.2"] };
      return [
        { peel_id: "web-01", value: ["10.0.0.1"] },
        { peel_id: "web-02", value: ["10.0.0.2"] },
      ];
    };
    const out = await render(
      "{% for peel in basket('role:web', 'network.ip_addrs') %}{{ peel.peel_id }}={{ peel.value[0] }};{% endfor %}|" +
        "{% for id, ips in salt['mine.get']('role:web', 'network.ip_addrs', tgt_type='compound') | dictsort %}{{ id }}:{{ ips | join }};{% endfor %}",
      { call },
    );
    expect(out).toBe("web-01=10.0.0.1;web-02=10.0.0.2;|web-01:10.0.0.1;web-02:10.0.0.2;");
    expect(calls).toEqual([
      ["basket.get", ["role:web", "network.ip_addrs"], {}],
      ["mine.get", ["role:web", "network.ip_addrs"], { tgt_type: "compound" }],
    ]);
  });

  it("a failing execution function is a template error at its position, without engine prefixes", async () => {
    const call = async () => {
      throw new Error('unknown function "nope.fn"');
    };
    const err = await render("a: 1\nb: {{ salt['nope.fn']() }}", { call }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TemplateError);
    expect((err as TemplateError).message).toBe('unknown function "nope.fn"');
    expect([(err as TemplateError).line, (err as TemplateError).col]).toEqual([2, 7]);
  });

  it("grains used only inside an imported map.jinja are the context's, with or without context", async () => {
    const files = {
      "f/map.jinja": "{% set m = salt['grains.filter_by']({'Debian': {'pkg': 'd-' ~ grains.os}}) %}",
    };
    expect(await render("{% from 'f/map.jinja' import m %}{{ m.pkg }}", { templates: files })).toBe(
      "d-Debian",
    );
    expect(
      await render("{% from 'f/map.jinja' import m with context %}{{ m.pkg }}", { templates: files }),
    ).toBe("d-Debian");
  });
});

describe("template errors", () => {
  it("name the imported or included file, its line and column, and carry its text for an excerpt", async () => {
    const files = {
      "lib/map.jinja": "{% set ok = 1 %}\n{% set bad = pillar.nginx.missing.port %}\n",
      "lib/part.jinja": "line one\n  {{ 1 + 'a' }}\n",
      "lib/syntax.jinja": "{% if %}\n",
    };
    const cases: [string, string, number, number, RegExp][] = [
      [
        "{% from 'lib/map.jinja' import ok %}",
        "lib/map.jinja",
        2,
        27,
        /'dict object' has no attribute 'missing'/,
      ],
      [
        "x\n{% include 'lib/part.jinja' %}",
        "lib/part.jinja",
        2,
        8,
        /unsupported operand type\(s\) for \+: 'int' and 'str'/,
      ],
      ["{% import 'lib/syntax.jinja' as s %}", "lib/syntax.jinja", 1, 7, /Expected an expression/],
    ];
    for (const [t, file, line, col, msg] of cases) {
      const err = await render(t, { templates: files }).catch((e: unknown) => e);
      expect(err, t).toBeInstanceOf(TemplateError);
      const te = err as TemplateError;
      expect([te.source, te.line, te.col], t).toEqual([file, line, col]);
      expect(te.message).toMatch(msg);
      expect(te.text).toBe(files[file as keyof typeof files]);
    }
  });

  it("undefined names and attributes raise (StrictUndefined) at their position", async () => {
    const cases: [string, number, number, string][] = [
      ["a\n  {{ nothere }}", 2, 6, "'nothere' is undefined"],
      ["{{ grains.nope }}", 1, 11, "'dict object' has no attribute 'nope'"],
      ["{% for x in nothere %}{% endfor %}", 1, 13, "'nothere' is undefined"],
      ["{{ pillar.users[5] }}", 1, 16, "'list object' has no element 5"],
      ["{{ grains.os.__class__ }}", 1, 14, "access to attribute '__class__' of 'str' object is unsafe."],
    ];
    for (const [t, line, col, message] of cases) {
      const err = (await render(t).catch((e: unknown) => e)) as TemplateError;
      expect(err, t).toBeInstanceOf(TemplateError);
      expect([err.line, err.col, err.message], t).toEqual([line, col, message]);
    }
  });

  it("never leaks JavaScript internals or crashes on hostile input", async () => {
    for (const t of [
      "{{ ''.constructor }}",
      "{{ {}.toString }}",
      "{{ [].__proto__ }}",
      "{{ grains.constructor.constructor('return 1')() }}",
      "{{ range(10**9) | length }}",
    ]) {
      const err = await render(t).catch((e: unknown) => e);
      expect(err, t).toBeInstanceOf(TemplateError);
    }
    const deep = await render("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}").catch(
      (e: unknown) => e,
    );
    expect(deep).toBeInstanceOf(TemplateError);
    expect((deep as TemplateError).message).toMatch(/recursion/);
  });

  it("a compile reports an error inside an imported file at that file, with its excerpt", async () => {
    const dir = await mkdtemp(join(tmpdir(), "zester-tpl-"));
    try {
      await mkdir(join(dir, "web"));
      await writeFile(join(dir, "web", "map.jinja"), "{% set port = 80 %}\n{% set x = port + 'a' %}\n");
      await writeFile(
        join(dir, "web", "init.zy"),
        "{% from 'web/map.jinja' import port %}\nweb:\n  test.nop: []\n",
      );
      const { compileSls } = await import("../src/state/compile.js");
      const err = await compileSls(["web"], { statesDir: dir, settings: {}, facts: async () => ({}) }).catch(
        (e: unknown) => e,
      );
      const text = String((err as Error).message);
      expect(text).toContain("web/map.jinja:2:");
      expect(text).toContain("unsupported operand type(s) for +: 'int' and 'str'");
      expect(text).toContain("{% set x = port + 'a' %}");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
