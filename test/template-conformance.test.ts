import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { TemplateError, TemplateRenderer } from "../src/template/render.js";
import { CORPUS, CORPUS_VARS, type CorpusCase } from "./fixtures/jinja-corpus.js";

/**
 * Every corpus case renders byte-identical to the real Python Jinja2 with Salt's settings (the
 * oracle script, run here once over the whole corpus); a case the oracle rejects must be rejected.
 */
const PYTHON = "/usr/bin/python3";
const ORACLE = join(import.meta.dirname, "support", "jinja-oracle.py");

function oracleAvailable(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`;
  const probe = spawnSync(PYTHON, ["-c", "import jinja2"], { encoding: "utf8" });
  if (probe.status !== 0) return "python3-jinja2 is not installed (scripts/ensure-tools.sh installs it)";
  return undefined;
}

const missing = oracleAvailable();
if (missing) console.warn(`template conformance skipped: ${missing}`);

type OracleResult = { out: string } | { error: string };

function withVars(c: CorpusCase): CorpusCase & { vars: Record<string, unknown> } {
  return { ...c, vars: { ...CORPUS_VARS, ...(c.vars ?? {}) } };
}

describe.skipIf(missing !== undefined)(
  "Jinja2 conformance (Python Jinja2 with Salt's settings as oracle)",
  () => {
    let expected: OracleResult[] = [];

    beforeAll(() => {
      const cases = CORPUS.map((c) => {
        const v = withVars(c);
        return { template: v.t, files: v.files ?? {}, vars: v.vars };
      });
      const r = spawnSync(PYTHON, [ORACLE], {
        input: JSON.stringify(cases),
        encoding: "utf8",
        maxBuffer: 64 << 20,
      });
      if (r.status !== 0) throw new Error(`oracle failed: ${r.stderr}`);
      expected = JSON.parse(r.stdout) as OracleResult[];
    });

    it("has at least 300 cases", () => {
      expect(CORPUS.length).toBeGreaterThanOrEqual(300);
      expect(expected).toHaveLength(CORPUS.length);
    });

    CORPUS.forEach((c, i) => {
      it(`case ${i}: ${JSON.stringify(c.t).slice(0, 90)}`, async () => {
        const v = withVars(c);
        const renderer = new TemplateRenderer({ templates: v.files ?? {} });
        const want = expected[i]!;
        const got = await renderer.render(v.t, v.vars, "case.sls").then(
          (out) => ({ out }),
          (err: unknown) => ({ error: err }),
        );
        if ("error" in want) {
          expect(
            "error" in got,
            `Python Jinja2 rejects this (${want.error}); Zester rendered ${JSON.stringify((got as { out?: string }).out)}`,
          ).toBe(true);
          expect((got as { error: unknown }).error).toBeInstanceOf(TemplateError);
        } else {
          if ("error" in got)
            throw new Error(
              `Zester failed where Jinja2 renders ${JSON.stringify(want.out)}: ${String((got.error as Error).message)}`,
            );
          expect(got.out).toBe(want.out);
        }
      });
    });
  },
);
