import { describe, expect, test } from "vitest";
import { parse } from "yaml";
import { exitCodeFor, formatMs, formatRuns, type PeelRun } from "../src/cli/output.js";
import type { StateResult } from "../src/state/result.js";

function state(over: Partial<StateResult> & Pick<StateResult, "id" | "module" | "run_num">): StateResult {
  return {
    name: `${over.module}:${over.id}`,
    result: true,
    changed: false,
    comment: "",
    changes: {},
    skipped: false,
    duration_ms: 1.5,
    ...over,
  };
}

const ok = state({ id: "nginx", module: "pkg.installed", run_num: 0, comment: "All packages installed" });
const changed = state({
  id: "/etc/nginx/nginx.conf",
  module: "file.managed",
  run_num: 1,
  changed: true,
  comment: "File updated",
  changes: { mode: "0644" },
  diff: "--- a/etc/nginx/nginx.conf\n+++ b/etc/nginx/nginx.conf\n@@ -1 +1 @@\n-worker 1\n+worker 4\n",
  duration_ms: 12.25,
});
const failed = state({
  id: "migrate",
  module: "cmd.run",
  run_num: 2,
  result: false,
  comment: "exit 1\nno db",
});
const skipped = state({
  id: "reload",
  module: "service.running",
  run_num: 3,
  result: false,
  skipped: true,
  skip_reason: "requisite failed: cmd.run:migrate",
});

const web01: PeelRun = {
  peel_id: "web-01",
  success: false,
  status: "failed",
  // Deliberately out of order: text output follows run_num.
  results: [failed, ok, skipped, changed],
};

const ESC = "\x1b[";

describe("text", () => {
  test("full highstate-style output, no colour", () => {
    const out = formatRuns([web01], "text", { color: false });
    expect(out).toBe(
      [
        "web-01:",
        "----------",
        "          ID: nginx",
        "    Function: pkg.installed",
        "        Name: pkg.installed:nginx",
        "      Result: True",
        "     Comment: All packages installed",
        "    Duration: 1.500 ms",
        "     Changes:",
        "----------",
        "          ID: /etc/nginx/nginx.conf",
        "    Function: file.managed",
        "        Name: file.managed:/etc/nginx/nginx.conf",
        "      Result: True",
        "     Comment: File updated",
        "    Duration: 12.250 ms",
        "     Changes:",
        '              mode: "0644"',
        "              diff:",
        "                  --- a/etc/nginx/nginx.conf",
        "                  +++ b/etc/nginx/nginx.conf",
        "                  @@ -1 +1 @@",
        "                  -worker 1",
        "                  +worker 4",
        "----------",
        "          ID: migrate",
        "    Function: cmd.run",
        "        Name: cmd.run:migrate",
        "      Result: False",
        "     Comment: exit 1",
        "              no db",
        "    Duration: 1.500 ms",
        "     Changes:",
        "----------",
        "          ID: reload",
        "    Function: service.running",
        "        Name: service.running:reload",
        "      Result: Skipped",
        "     Comment: requisite failed: cmd.run:migrate",
        "    Duration: 1.500 ms",
        "     Changes:",
        "----------",
        "",
        "Summary for web-01",
        "------------",
        "Succeeded: 2 (changed=1)",
        "Failed:    1",
        "Skipped:   1",
        "------------",
        "Total states run:     4",
        "Total run time:  16.750 ms",
        "",
      ].join("\n"),
    );
    expect(out).not.toContain(ESC);
  });

  test("colours: green ok, cyan changed, red failed, yellow skipped; diff lines coloured", () => {
    const out = formatRuns([web01], "text", { color: true });
    const lines = out.split("\n");
    const line = (text: string) => lines.find((l) => l.includes(text))!;
    expect(line("ID: nginx")).toBe(`${ESC}0;32m          ID: nginx${ESC}0m`);
    expect(line("ID: /etc/nginx")).toBe(`${ESC}0;36m          ID: /etc/nginx/nginx.conf${ESC}0m`);
    expect(line("ID: migrate")).toBe(`${ESC}0;31m          ID: migrate${ESC}0m`);
    expect(line("Result: Skipped")).toBe(`${ESC}0;33m      Result: Skipped${ESC}0m`);
    expect(line("+worker 4")).toBe(`                  ${ESC}0;32m+worker 4${ESC}0m`);
    expect(line("-worker 1")).toBe(`                  ${ESC}0;31m-worker 1${ESC}0m`);
    expect(line("@@ -1")).toBe(`                  ${ESC}0;36m@@ -1 +1 @@${ESC}0m`);
    expect(line("+++ b/")).toBe("                  +++ b/etc/nginx/nginx.conf");
    expect(line("Succeeded")).toBe(`${ESC}0;32mSucceeded: 2${ESC}0m ${ESC}0;36m(changed=1)${ESC}0m`);
    expect(line("Failed:")).toBe(`${ESC}0;31mFailed:    1${ESC}0m`);
    expect(lines[0]).toBe(`${ESC}0;31mweb-01:${ESC}0m`);
    // Stripping the codes gives exactly the uncoloured output.
    expect(out.replace(/\x1b\[[0-9;]*m/g, "")).toBe(formatRuns([web01], "text", { color: false }));
  });

  test("test mode: pending states show Result: None in yellow and are counted", () => {
    const pending = state({
      id: "/etc/motd",
      module: "file.managed",
      run_num: 0,
      pending: true,
      comment: "The file would be updated",
      diff: "+hello\n",
    });
    const run: PeelRun = {
      peel_id: "db-1",
      success: true,
      status: "success",
      results: [pending, { ...ok, run_num: 1 }],
    };
    const out = formatRuns([run], "text", { color: true });
    expect(out).toContain(`${ESC}0;33m      Result: None${ESC}0m`);
    expect(out).toContain(`${ESC}0;32mSucceeded: 2${ESC}0m (changed=0, pending=1)`);
  });

  test('stateOutput "changes" hides unchanged successes and skips, keeps the summary whole', () => {
    const out = formatRuns([web01], "text", { color: false, stateOutput: "changes" });
    expect(out).not.toContain("ID: nginx\n");
    expect(out).not.toContain("ID: reload");
    expect(out).toContain("ID: /etc/nginx/nginx.conf");
    expect(out).toContain("ID: migrate");
    expect(out).toContain("Total states run:     4");
    expect(out).toContain("Skipped:   1");
  });

  test("given summary wins over recomputation; run time in seconds above 1 s", () => {
    const run: PeelRun = {
      peel_id: "p",
      success: true,
      status: "success",
      results: [ok],
      summary: { succeeded: 1, failed: 0, changed: 0, skipped: 0, total: 1, duration_ms: 2345.6 },
    };
    expect(formatRuns([run], "text", { color: false })).toContain("Total run time:    2.346 s\n");
  });

  test("unreachable peels, exec returns, errors and a fleet line", () => {
    const runs: PeelRun[] = [
      { peel_id: "a", success: true, status: "success", results: [], returned: true },
      { peel_id: "b", success: false, status: "unreachable", results: [] },
      { peel_id: "c", success: true, status: "success", results: [], returned: "line one\nline two\n" },
      { peel_id: "d", success: true, status: "success", results: [], returned: { pid: 42, ok: false } },
      {
        peel_id: "e",
        success: false,
        status: "failed",
        error: "render error: top.zy:3: undefined",
        results: [],
      },
    ];
    expect(formatRuns(runs, "text", { color: false })).toBe(
      [
        "a:",
        "    True",
        "",
        "b:",
        "    Peel did not return: no response",
        "",
        "c:",
        "    line one",
        "    line two",
        "",
        "d:",
        "    pid: 42",
        "    ok: false",
        "",
        "e:",
        "----------",
        "Error: render error: top.zy:3: undefined",
        "",
        "Summary for e",
        "------------",
        "Succeeded: 0 (changed=0)",
        "Failed:    0",
        "Skipped:   0",
        "------------",
        "Total states run:     0",
        "Total run time:   0.000 ms",
        "",
        "Peels: 5, succeeded: 3, failed: 1, unreachable: 1",
        "",
      ].join("\n"),
    );
  });
});

describe("json and yaml", () => {
  const runs: PeelRun[] = [
    web01,
    { peel_id: "web-02", success: false, status: "unreachable", error: "timeout after 30s", results: [] },
    { peel_id: "web-03", success: true, status: "success", results: [], returned: true },
  ];

  test("json: an array, one object per peel, error always present, return for exec calls", () => {
    const out = formatRuns(runs, "json", { color: true });
    expect(out.endsWith("\n")).toBe(true);
    expect(out).not.toContain(ESC);
    const data = JSON.parse(out);
    expect(data).toHaveLength(3);
    expect(Object.keys(data[0])).toEqual(["peel_id", "success", "status", "error", "results", "summary"]);
    expect(data[0].error).toBeNull();
    expect(data[0].results).toEqual(web01.results);
    expect(data[0].summary).toEqual({
      succeeded: 2,
      failed: 1,
      changed: 1,
      skipped: 1,
      total: 4,
      duration_ms: 16.75,
    });
    expect(data[1]).toEqual({
      peel_id: "web-02",
      success: false,
      status: "unreachable",
      error: "timeout after 30s",
      results: [],
    });
    expect(data[2]).toEqual({
      peel_id: "web-03",
      success: true,
      status: "success",
      error: null,
      results: [],
      return: true,
    });
  });

  test("yaml carries the same data", () => {
    const out = formatRuns(runs, "yaml", { color: true });
    expect(parse(out)).toEqual(JSON.parse(formatRuns(runs, "json", { color: false })));
    expect(out).toContain("      diff: |\n        --- a/etc/nginx/nginx.conf\n");
  });

  test("no peels", () => {
    expect(formatRuns([], "json", { color: false })).toBe("[]\n");
    expect(formatRuns([], "yaml", { color: false })).toBe("[]\n");
  });
});

describe("exitCodeFor", () => {
  const s = (status: PeelRun["status"], success = status === "success"): PeelRun => ({
    peel_id: status,
    success,
    status,
    results: [],
  });
  test("0 / 2 / 3 / 4", () => {
    expect(exitCodeFor([])).toBe(0);
    expect(exitCodeFor([s("success"), s("success")])).toBe(0);
    expect(exitCodeFor([s("success"), s("failed")])).toBe(2);
    expect(exitCodeFor([s("success"), s("unreachable")])).toBe(3);
    expect(exitCodeFor([s("failed"), s("unreachable")])).toBe(4);
    // success: false with a loose status still counts as a failure
    expect(exitCodeFor([s("success", false)])).toBe(2);
  });
});

test("formatMs", () => {
  expect(formatMs(0.5)).toBe("0.500 ms");
  expect(formatMs(999.9994)).toBe("999.999 ms");
  expect(formatMs(999.9996)).toBe("1.000 s");
  expect(formatMs(1500)).toBe("1.500 s");
});

describe("warnings", () => {
  test("a run on snapshot settings says so in text and json", () => {
    const run: PeelRun = {
      peel_id: "web-01",
      success: true,
      status: "success",
      results: [],
      returned: true,
      warning: "settings from the last-known-good snapshot: bus unreachable",
    };
    expect(formatRuns([run], "text", { color: false })).toContain(
      "    Warning: settings from the last-known-good snapshot: bus unreachable",
    );
    expect(formatRuns([run], "text", { color: true })).toContain("\u001b[0;33m    Warning:");
    expect(JSON.parse(formatRuns([run], "json", { color: false }))[0].warning).toMatch(/snapshot/);
  });
});

describe("messages as Salt prints them", () => {
  test("a failed call prints its error, without a None above it", () => {
    const run: PeelRun = {
      peel_id: "web-01",
      success: false,
      status: "failed",
      results: [],
      returned: null,
      error: 'unknown function "test.pnig" (did you mean "test.ping"?)',
    };
    expect(formatRuns([run], "text", { color: false })).toBe(
      'web-01:\n    Error: unknown function "test.pnig" (did you mean "test.ping"?)\n',
    );
    // A call that succeeded with None still shows it.
    const none: PeelRun = {
      peel_id: "web-01",
      success: true,
      status: "success",
      results: [],
      returned: null,
    };
    expect(formatRuns([none], "text", { color: false })).toBe("web-01:\n    None\n");
  });

  test("a skipped state shows the sentence, not the skip code", () => {
    const s = state({
      id: "restart",
      module: "cmd.run",
      run_num: 0,
      skipped: true,
      skip_reason: "onchanges_not_met",
      comment: "State was not run because none of the onchanges reqs changed",
    });
    const out = formatRuns([{ peel_id: "web-01", success: true, status: "success", results: [s] }], "text", {
      color: false,
    });
    expect(out).toContain("     Comment: State was not run because none of the onchanges reqs changed\n");
    expect(out).not.toContain("onchanges_not_met");
    // Machines still get the code.
    const json = JSON.parse(
      formatRuns([{ peel_id: "web-01", success: true, status: "success", results: [s] }], "json", {
        color: false,
      }),
    );
    expect(json[0].results[0].skip_reason).toBe("onchanges_not_met");
  });

  test("a state's warnings are printed under its result and kept in json", () => {
    const w = 'a.sls:3:7: cron.present: unknown parameter "output_loglevel", ignored';
    const s = state({ id: "job", module: "cron.present", run_num: 0, warnings: [w] });
    const run: PeelRun = { peel_id: "web-01", success: true, status: "success", results: [s] };
    expect(formatRuns([run], "text", { color: false })).toContain(`    Warnings: ${w}\n`);
    expect(JSON.parse(formatRuns([run], "json", { color: false }))[0].results[0].warnings).toEqual([w]);
  });
});

describe("Salt's highstate outputter (--out highstate)", () => {
  // A local wall-clock time, so the expected Started line does not depend on the machine's zone.
  const started = new Date(2026, 11, 4, 21, 40, 23, 123).toISOString();
  const run: PeelRun = {
    ...web01,
    results: [failed, { ...ok, started_at: started }, skipped, changed],
  };

  test("state blocks in run order, changes through nested at column 14, Salt's summary", () => {
    expect(formatRuns([run], "highstate", { color: false })).toBe(
      [
        "web-01:",
        "----------",
        "          ID: nginx",
        "    Function: pkg.installed",
        "      Result: True",
        "     Comment: All packages installed",
        "     Started: 21:40:23.123000",
        "    Duration: 1.5 ms",
        "     Changes:   ",
        "----------",
        "          ID: /etc/nginx/nginx.conf",
        "    Function: file.managed",
        "      Result: True",
        "     Comment: File updated",
        "     Started: ",
        "    Duration: 12.25 ms",
        "     Changes:   ",
        "              ----------",
        "              diff:",
        "                  --- a/etc/nginx/nginx.conf",
        "                  +++ b/etc/nginx/nginx.conf",
        "                  @@ -1 +1 @@",
        "                  -worker 1",
        "                  +worker 4",
        "              mode:",
        "                  0644",
        "----------",
        "          ID: migrate",
        "    Function: cmd.run",
        "      Result: False",
        "     Comment: exit 1",
        "              no db",
        "     Started: ",
        "    Duration: 1.5 ms",
        "     Changes:   ",
        "----------",
        "          ID: reload",
        "    Function: service.running",
        "      Result: False",
        "     Comment: requisite failed: cmd.run:migrate",
        "     Started: ",
        "    Duration: 1.5 ms",
        "     Changes:   ",
        "",
        "Summary for web-01",
        "------------",
        "Succeeded: 2 (changed=1)",
        "Failed:    2",
        "------------",
        "Total states run:     4",
        "Total run time:  16.750 ms",
        "",
      ].join("\n"),
    );
  });

  test("a dry run: pending states are None, counted as unchanged; wide counts widen the columns", () => {
    const pending = state({
      id: "conf",
      module: "file.managed",
      run_num: 0,
      pending: true,
      comment: "The file /etc/app.conf is set to be changed",
      changes: { newfile: "/etc/app.conf" },
      duration_ms: 2000,
    });
    const many = Array.from({ length: 10 }, (_, i) =>
      state({ id: `s${i}`, module: "test.nop", run_num: i + 1 }),
    );
    const out = formatRuns(
      [{ peel_id: "web-02", success: true, status: "success", results: [pending, ...many] }],
      "highstate",
      { color: false },
    );
    expect(out).toContain("      Result: None\n");
    expect(out).toContain(
      [
        "Summary for web-02",
        "-------------",
        "Succeeded: 11 (unchanged=1, changed=1)",
        "Failed:     0",
        "-------------",
        "Total states run:     11",
        "Total run time:    2.015 s",
        "",
      ].join("\n"),
    );
  });

  test("answers that are not state runs print as nested; a compile error as Salt's block", () => {
    const out = formatRuns(
      [
        { peel_id: "web-01", success: true, status: "success", results: [], returned: true },
        { peel_id: "web-02", success: false, status: "unreachable", error: "no response", results: [] },
        { peel_id: "web-03", success: false, status: "failed", error: "top.zy:3:5: bad", results: [] },
      ],
      "highstate",
      { color: false },
    );
    expect(out).toBe(
      [
        "web-01:",
        "    True",
        "web-02:",
        "    Peel did not return: no response",
        "web-03:",
        "    Data failed to compile:",
        "----------",
        "    top.zy:3:5: bad",
        "",
      ].join("\n"),
    );
  });

  test("colour: green header and ok states, cyan changed, red failed", () => {
    const lines = formatRuns([run], "highstate", { color: true }).split("\n");
    expect(lines[0]).toBe(`${ESC}0;31mweb-01:${ESC}0m`);
    expect(lines).toContain(`${ESC}0;32m          ID: nginx${ESC}0m`);
    expect(lines).toContain(`${ESC}0;36m          ID: /etc/nginx/nginx.conf${ESC}0m`);
    expect(lines).toContain(`${ESC}0;31m          ID: migrate${ESC}0m`);
  });
});

describe("Salt's nested outputter (--out nested)", () => {
  test("sorted keys, ---------- above nested mappings, - for list items, |_ above nested ones", () => {
    const out = formatRuns(
      [
        { peel_id: "web-01", success: true, status: "success", results: [], returned: true },
        {
          peel_id: "web-02",
          success: true,
          status: "success",
          results: [],
          returned: { z: 1, a: { d: "l1\nl2\n", b: [1, "x", { c: null }, ["y"]], e: "" } },
        },
      ],
      "nested",
      { color: false },
    );
    expect(out).toBe(
      [
        "web-01:",
        "    True",
        "web-02:",
        "    ----------",
        "    a:",
        "        ----------",
        "        b:",
        "            - 1",
        "            - x",
        "            |_",
        "              ----------",
        "              c:",
        "                  None",
        "            |_",
        "              - y",
        "        d:",
        "            l1",
        "            l2",
        "        e:",
        "    z:",
        "        1",
        "",
      ].join("\n"),
    );
  });

  test("a state run as Salt's return mapping: <module>_|-<id>_|-<name>_|-<function> keys", () => {
    const out = formatRuns(
      [{ peel_id: "web-01", success: true, status: "success", results: [{ ...ok, sls: "nginx" }] }],
      "nested",
      { color: false },
    );
    expect(out).toBe(
      [
        "web-01:",
        "    ----------",
        "    pkg_|-nginx_|-nginx_|-installed:",
        "        ----------",
        "        __id__:",
        "            nginx",
        "        __run_num__:",
        "            0",
        "        __sls__:",
        "            nginx",
        "        changes:",
        "            ----------",
        "        comment:",
        "            All packages installed",
        "        duration:",
        "            1.5",
        "        name:",
        "            nginx",
        "        result:",
        "            True",
        "",
      ].join("\n"),
    );
  });

  test("a failed peel's keys are red, values keep their colours", () => {
    const out = formatRuns(
      [{ peel_id: "web-01", success: false, status: "failed", results: [], returned: { rc: 1 } }],
      "nested",
      { color: true },
    );
    expect(out.split("\n")).toEqual([
      `${ESC}0;31mweb-01:${ESC}0m`,
      `    ${ESC}0;31m----------${ESC}0m`,
      `    ${ESC}0;31mrc:${ESC}0m`,
      `        ${ESC}0;33m1${ESC}0m`,
      "",
    ]);
  });
});
