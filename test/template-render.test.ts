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
    expect(out).toBe('a={"b":1};c=[1,2];|1|no|[1,2]|true|debian|debian|1|{ k: [ 1, x ] }|a,c');
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
