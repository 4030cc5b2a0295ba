import { describe, expect, it } from "vitest";
import type { TargetNode } from "../src/target/index.js";
import { parseTarget, parseTopTarget, TargetSyntaxError } from "../src/target/index.js";

/** A compact rendering of the tree, so precedence is visible in one string. */
function show(n: TargetNode): string {
  switch (n.kind) {
    case "glob":
      return n.pattern;
    case "regex":
      return `E@${n.source}`;
    case "list":
      return `L@${n.ids.join(",")}`;
    case "cidr":
      return `S@${n.cidr}`;
    case "data":
      return n.text;
    case "not":
      return `not(${show(n.child)})`;
    case "and":
      return `and(${n.children.map(show).join(" ")})`;
    case "or":
      return `or(${n.children.map(show).join(" ")})`;
  }
}

function syntaxError(expr: string, parse = parseTarget): TargetSyntaxError {
  try {
    parse(expr);
  } catch (err) {
    expect(err).toBeInstanceOf(TargetSyntaxError);
    return err as TargetSyntaxError;
  }
  throw new Error(`expected ${JSON.stringify(expr)} to be rejected`);
}

describe("target parser", () => {
  it("parses every leaf form", () => {
    expect(parseTarget("web*")).toEqual({ kind: "glob", pattern: "web*", column: 1 });
    expect(parseTarget("web-0[1-3]")).toMatchObject({ kind: "glob", pattern: "web-0[1-3]" });
    expect(parseTarget("E@^web\\d+$")).toMatchObject({ kind: "regex", source: "^web\\d+$" });
    expect(parseTarget("L@a,b,c")).toMatchObject({ kind: "list", ids: ["a", "b", "c"] });
    expect(parseTarget("S@10.0.0.0/8")).toMatchObject({ kind: "cidr", cidr: "10.0.0.0/8" });
    expect(parseTarget("S@2001:db8::/32")).toMatchObject({ kind: "cidr", cidr: "2001:db8::/32" });
    expect(parseTarget("G@os:Debian")).toMatchObject({
      kind: "data",
      source: "facts",
      op: ":",
      splits: [{ path: ["os"], value: "Debian" }],
    });
    expect(parseTarget("I@role:web")).toMatchObject({ kind: "data", source: "settings" });
  });

  it("offers every colon as a split, dot and colon both separating path segments", () => {
    expect(parseTarget("G@network:hostname:web1")).toMatchObject({
      splits: [
        { path: ["network"], value: "hostname:web1" },
        { path: ["network", "hostname"], value: "web1" },
      ],
    });
    expect(parseTarget("G@network.hostname:web1")).toMatchObject({
      splits: [{ path: ["network", "hostname"], value: "web1" }],
    });
    // Splits that would leave an empty path segment are not offered.
    expect(parseTarget("G@ipv6:fe80::1")).toMatchObject({
      splits: [
        { path: ["ipv6"], value: "fe80::1" },
        { path: ["ipv6", "fe80"], value: ":1" },
      ],
    });
  });

  it("parses comparisons at the first operator", () => {
    for (const op of [">=", "<=", "!=", ">", "<"]) {
      expect(parseTarget(`G@cpu_count${op}4`)).toMatchObject({
        op,
        splits: [{ path: ["cpu_count"], value: "4" }],
      });
    }
    expect(parseTarget("G@memory:total>=1024")).toMatchObject({
      op: ">=",
      splits: [{ path: ["memory", "total"], value: "1024" }],
    });
    // A colon before the operator is tolerated: `key:>=4` reads like `key>=4`.
    expect(parseTarget("G@cpu_count:>=4")).toMatchObject({ op: ">=", splits: [{ path: ["cpu_count"] }] });
  });

  it("binds not tighter than and, and tighter than or", () => {
    expect(show(parseTarget("a or b and not c"))).toBe("or(a and(b not(c)))");
    expect(show(parseTarget("not a and b or c and d"))).toBe("or(and(not(a) b) and(c d))");
    expect(show(parseTarget("not not a"))).toBe("not(not(a))");
    expect(show(parseTarget("a and b and c or d"))).toBe("or(and(a b c) d)");
  });

  it("lets parentheses override precedence, with or without spaces", () => {
    expect(show(parseTarget("( a or b ) and c"))).toBe("and(or(a b) c)");
    expect(show(parseTarget("(a or b) and not(c or d)"))).toBe("and(or(a b) not(or(c d)))");
    expect(show(parseTarget("G@os:Debian and ( web* or L@db1,db2 ) and not E@.*-old$"))).toBe(
      "and(G@os:Debian or(web* L@db1,db2) not(E@.*-old$))",
    );
    expect(show(parseTarget("((a))"))).toBe("a");
  });

  it("keeps parentheses that belong to a regex", () => {
    expect(show(parseTarget("(E@^(web|db)\\d+$)"))).toBe("E@^(web|db)\\d+$");
    expect(show(parseTarget("E@(a|b) or c"))).toBe("or(E@(a|b) c)");
  });

  it("records 1-based columns", () => {
    const n = parseTarget("  web* and G@os:x");
    expect(n).toMatchObject({ children: [{ column: 3 }, { column: 12 }] });
  });

  it("reports an unexpected ) with its column and a caret line", () => {
    const e = syntaxError("web* and ( ) or x");
    expect(e.column).toBe(12);
    expect(e.summary).toBe('target: unexpected ")" at column 12');
    expect(e.message).toBe(`${e.summary}\n  web* and ( ) or x\n             ^`);
    expect(syntaxError("web*)").summary).toBe('target: unexpected ")" at column 5');
  });

  it("reports missing operands, operators and parentheses", () => {
    expect(syntaxError("").summary).toBe("target: empty expression at column 1");
    expect(syntaxError("web* and").summary).toBe('target: expected an expression after "and" at column 9');
    expect(syntaxError("not").summary).toBe('target: expected an expression after "not" at column 4');
    expect(syntaxError("web* db*").summary).toBe('target: expected "and" or "or" before "db*" at column 6');
    expect(syntaxError("( web* or db*").summary).toBe('target: missing ")" to close this "(" at column 1');
    expect(syntaxError("( a b )").summary).toBe('target: expected "and", "or" or ")" before "b" at column 5');
    expect(syntaxError("and a").summary).toBe('target: unexpected "and" at column 1');
    expect(syntaxError("a or or b").summary).toBe('target: unexpected "or" at column 6');
  });

  it("rejects unknown prefixes with the known ones and a did-you-mean", () => {
    const x = syntaxError("web* and X@foo");
    expect(x.column).toBe(10);
    expect(x.summary).toContain('unknown prefix "X@" at column 10');
    expect(x.summary).toContain("G@ (facts), I@ (settings), E@ (id regex), L@ (id list), S@ (CIDR)");
    expect(syntaxError("g@os:Debian").summary).toContain('(did you mean "G@"?)');
    expect(syntaxError("P@os:Deb.*").summary).toContain("use G@ with a glob value");
    expect(syntaxError("N@group").summary).toBe(
      'target: unknown nodegroup "group": no nodegroups are defined (nodegroups: in master.yaml) at column 1',
    );
  });

  it("expands N@ nodegroups given to the parser, nested and inside compounds, and refuses loops", () => {
    const nodegroups = {
      web: "web-* and G@os:Debian",
      db: "L@db-01,db-02",
      edge: "N@web or lb-*",
      a: "N@b",
      b: "N@a",
    };
    expect(show(parseTarget("N@edge and not web-9", { nodegroups }))).toBe(
      show(parseTarget("((web-* and G@os:Debian) or lb-*) and not web-9")),
    );
    expect(parseTarget("N@db", { nodegroups })).toMatchObject({ kind: "list", ids: ["db-01", "db-02"] });
    const typo = syntaxError("web-1 or N@wbe", (e) => parseTarget(e, { nodegroups }));
    expect(typo.column).toBe(10);
    expect(typo.summary).toBe(
      'target: unknown nodegroup "wbe" at column 10 (did you mean "web"?); defined: web, db, edge, a, b',
    );
    expect(syntaxError("N@a", (e) => parseTarget(e, { nodegroups })).summary).toBe(
      'target: nodegroup "a" (N@b): nodegroup "a" includes itself (a -> b -> a) at column 1',
    );
  });

  it("rejects malformed leaves at the column of the problem", () => {
    expect(syntaxError("G@os").summary).toMatch(/^target: G@ needs key:value or a comparison.* at column 3$/);
    expect(syntaxError("G@:x").summary).toBe('target: missing key before ":" at column 3');
    expect(syntaxError("G@os:").summary).toBe('target: missing value after ":" at column 6');
    expect(syntaxError("G@cpu>=").summary).toBe('target: missing value after ">=" at column 8');
    expect(syntaxError("G@>=4").summary).toBe('target: missing key before ">=" at column 3');
    expect(syntaxError("G@a..b>1").summary).toBe('target: empty key segment in "a..b" at column 3');
    expect(syntaxError("a and E@(").summary).toMatch(/^target: bad E@ regular expression: .* at column 9$/);
    expect(syntaxError("L@a,,b").summary).toBe("target: empty peel id in L@ list at column 5");
    expect(syntaxError("S@10.0.0.0/33").summary).toBe(
      'target: prefix length "/33" must be 0 to 32 at column 3',
    );
    expect(syntaxError("S@10.0.0.256").summary).toContain('"10.0.0.256" is not an IPv4 or IPv6 address');
    expect(syntaxError("S@::1/129").summary).toContain("must be 0 to 128");
    expect(syntaxError("web[1-").summary).toContain('unclosed "["');
    expect(syntaxError("G@os:[x").summary).toContain('unclosed "["');
  });

  it('reads a bare key:value as a fact match everywhere: ids never contain ":"', () => {
    expect(parseTarget("web* and os:Debian")).toMatchObject({
      kind: "and",
      children: [
        { kind: "glob" },
        { kind: "data", source: "facts", splits: [{ path: ["os"], value: "Debian" }] },
      ],
    });
    expect(parseTarget("role:webserver")).toMatchObject({ kind: "data", source: "facts", column: 1 });
    // The errors are G@'s, at the bare word's columns.
    expect(syntaxError("web* and os:").summary).toBe('target: missing value after ":" at column 13');
  });

  it("reads bare key:value as a fact match in top.zy", () => {
    expect(parseTopTarget("role:webserver")).toMatchObject({
      kind: "data",
      source: "facts",
      splits: [{ path: ["role"], value: "webserver" }],
    });
    expect(show(parseTopTarget("os:Debian and web*"))).toBe("and(os:Debian web*)");
    expect(parseTopTarget("*")).toMatchObject({ kind: "glob", pattern: "*" });
    expect(syntaxError("role:", parseTopTarget).summary).toBe('target: missing value after ":" at column 6');
  });
});
