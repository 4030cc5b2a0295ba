import { describe, expect, it } from "vitest";
import { hasTemplateSyntax, TemplateError, TemplateRenderer } from "../src/template/render.js";

describe("template rendering", () => {
  it("detects template syntax", () => {
    expect(hasTemplateSyntax("a: b\n")).toBe(false);
    expect(hasTemplateSyntax("a: {{ x }}")).toBe(true);
    expect(hasTemplateSyntax("{% if 1 %}{% endif %}")).toBe(true);
    expect(hasTemplateSyntax("{# c #}")).toBe(true);
  });

  it("offers Salt's everyday helpers", async () => {
    const r = new TemplateRenderer();
    const out = await r.render(
      "{% for k, v in settings.items() %}{{k}}={{v | tojson}};{% endfor %}|{{ pillar.get('a:b', 'd') }}|" +
        "{{ pillar.get('x:y', 'no') }}|{{ settings.c | json }}|{{ True }}|{{ grains.os }}|{{ facts.get('os') }}|" +
        "{{ salt['pillar.get']('a:b') }}|{{ {'k': [1, 'x']} | yaml_encode }}|{{ settings.keys() | join(',') }}",
      { facts: { os: "debian" }, settings: { a: { b: 1 }, c: [1, 2] } },
      "t.zy",
    );
    expect(out).toBe('a={"b": 1};c=[1, 2];|1|no|[1, 2]|True|debian|debian|1|{k: [1, x]}|a,c');
  });

  it("calls execution functions through salt[...]", async () => {
    const seen: string[] = [];
    const r = new TemplateRenderer({
      call: async (fun, args, kwargs) => {
        seen.push(fun);
        return `${fun}:${args.join(",")}:${JSON.stringify(kwargs)}`;
      },
    });
    const out = await r.render("v={{ salt['test.echo']('hi', n=2) }}", {}, "t.zy");
    expect(out).toBe('v=test.echo:hi:{"n":2}');
    expect(seen).toEqual(["test.echo"]);
  });

  it("reports line and column of syntax and runtime errors", async () => {
    const r = new TemplateRenderer();
    const cases: [string, number][] = [
      ["a\nb {{ foo( }}\n", 2],
      ["line1\n{% if %}\n", 2],
      ["x\n\n  {{ nothere() }}", 3],
    ];
    for (const [text, line] of cases) {
      const err = await r.render(text, {}, "e.zy").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TemplateError);
      const te = err as TemplateError;
      expect(te.line, `${text}: ${te.message}`).toBe(line);
      expect(te.col).toBeGreaterThan(0);
      expect(te.message).not.toMatch(/^\(/);
    }
  });
});

describe("template look-ups (include, import)", () => {
  it("an in-memory tree serves includes and imports, relative names included, and nothing outside it", async () => {
    const r = new TemplateRenderer({
      templates: {
        "common/macros.zy": "{% macro port() %}8080{% endmacro %}",
        "common/part.zy": "part: {% include './leaf.zy' %}",
        "common/leaf.zy": "leaf",
      },
    });
    const out = await r.render(
      '{% import "common/macros.zy" as m %}{% include "common/part.zy" %} {{ m.port() }}',
      {},
      "top.zy",
    );
    expect(out).toBe("part: leaf 8080");
    for (const name of ["../etc/passwd", "/etc/passwd", "common/../../x.zy", "nope.zy"]) {
      await expect(r.render(`{% include "${name}" %}`, {}, "t.zy"), name).rejects.toThrow(
        /template not found/,
      );
    }
  });

  it("without a tree, includes find nothing (never nunjucks' <cwd>/views fallback)", async () => {
    const { mkdir, rm, rmdir, writeFile } = await import("node:fs/promises");
    const { join } = await import("node:path");
    const name = `zester-probe-${process.pid}-${Date.now()}.txt`;
    const views = join(process.cwd(), "views");
    await mkdir(views, { recursive: true });
    await writeFile(join(views, name), "read from the working directory");
    try {
      await expect(new TemplateRenderer().render(`{% include "${name}" %}`, {}, "t.zy")).rejects.toThrow(
        /template not found/,
      );
    } finally {
      await rm(join(views, name), { force: true });
      await rmdir(views).catch(() => {}); // only when this test made it (and it is empty)
    }
  });
});
