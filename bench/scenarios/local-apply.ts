/**
 * local-apply: the same workload applied by `zester local` and, when installed, CFEngine's
 * cf-agent. (a) 200 files + 20 directories, first run; (b) the same again, nothing to change;
 * (c) 10 files drifted and repaired; (d) 50 templated files from a 20-item loop; (e) 50 guarded
 * commands. Baseline: `node -e 0`, the floor any Node.js tool pays to start.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { errText } from "../../src/util/errors.js";
import {
  fmtMs,
  repeat,
  type ScenarioOptions,
  type ScenarioResult,
  type Stats,
  table,
  timeCommand,
} from "../lib.js";

const FILES = 200;
/** Per tool and workload: peers that take a minute a run get fewer runs (the table says how many). */
const BUDGET_MS = 60_000;
const DIRS = 20;
const SERIAL = "zester local --concurrency 1";
const NO_REVERT = "zester local --no-revert";

function content(i: number): string {
  return `# managed file ${i}\nkey_${i} = value_${i}\n`;
}

function zesterFilesTree(root: string): string {
  const out: string[] = [];
  for (let d = 0; d < DIRS; d++) {
    out.push(`dir_${d}:\n  file.directory:\n    - name: ${root}/dir_${d}\n    - mode: "0755"\n`);
  }
  for (let i = 0; i < FILES; i++) {
    out.push(
      `file_${i}:\n  file.managed:\n    - name: ${root}/file_${i}.conf\n    - mode: "0644"\n    - content: ${JSON.stringify(content(i))}\n`,
    );
  }
  return out.join("");
}

function zesterTemplated(root: string): string {
  return `{% set items = range(20) %}
{% for n in range(50) %}
tpl_{{ n }}:
  file.managed:
    - name: ${root}/tpl_{{ n }}.conf
    - content: |
{%- for i in items %}
        item {{ i }} of file {{ n }} = {{ i * n }}
{%- endfor %}
{% endfor %}
`;
}

function zesterGuarded(root: string): string {
  const out: string[] = [];
  for (let i = 0; i < 50; i++) {
    out.push(
      `guard_${i}:\n  cmd.run:\n    - name: touch ${root}/guard_${i}\n    - creates: ${root}/guard_${i}\n`,
    );
  }
  return out.join("");
}

function cfPolicy(body: string): string {
  return `body common control { bundlesequence => { "bench" }; }
body perms m(mode) { mode => "$(mode)"; }
bundle agent bench {
${body}
}
`;
}

function cfFiles(root: string): string {
  const lines: string[] = ["  files:"];
  for (let d = 0; d < DIRS; d++) lines.push(`    "${root}/dir_${d}/." create => "true", perms => m("0755");`);
  for (let i = 0; i < FILES; i++) {
    const c = content(i).replace(/\n/g, "$(const.n)");
    lines.push(`    "${root}/file_${i}.conf" create => "true", content => "${c}", perms => m("0644");`);
  }
  return cfPolicy(lines.join("\n"));
}

function cfGuarded(root: string): string {
  const lines: string[] = ["  commands:"];
  for (let i = 0; i < 50; i++) {
    lines.push(`    "/usr/bin/touch ${root}/guard_${i}" if => not(fileexists("${root}/guard_${i}"));`);
  }
  return cfPolicy(lines.join("\n"));
}

interface Tool {
  name: string;
  /** Writes the workload for `root`, returns argv that applies it. */
  setup(work: string, root: string, kind: "files" | "templated" | "guarded"): Promise<string[]>;
}

/** `extra` flags let the same workload run one state at a time, to show what parallelism buys. */
function zesterTool(bin: string, name = "zester local", extra: string[] = []): Tool {
  return {
    name,
    async setup(work, root, kind) {
      const states = join(work, "states");
      await mkdir(states, { recursive: true });
      const text =
        kind === "files"
          ? zesterFilesTree(root)
          : kind === "templated"
            ? zesterTemplated(root)
            : zesterGuarded(root);
      await writeFile(join(states, "bench.zy"), text);
      return [
        process.execPath,
        bin,
        "local",
        "state.apply",
        "bench",
        "--states-dir",
        states,
        "--format",
        "json",
        // Runs kept for state.revert go under the scenario's temp dir, not the machine's default.
        "--revert-dir",
        join(work, "revert"),
        ...extra,
      ];
    },
  };
}

const cfengine: Tool = {
  name: "cf-agent",
  async setup(work, root, kind) {
    const policy = join(work, "bench.cf");
    if (kind === "templated") {
      const lines: string[] = ["  vars:", '    "items" slist => { expandrange("[0-19]", 1) };', "  files:"];
      for (let n = 0; n < 50; n++) {
        lines.push(
          `    "${root}/tpl_${n}.conf" create => "true", edit_template_string => "{{#vars.bench.items}}item {{.}} of file ${n}$(const.n){{/vars.bench.items}}", template_method => "inline_mustache";`,
        );
      }
      await writeFile(policy, cfPolicy(lines.join("\n")), { mode: 0o600 });
    } else {
      await writeFile(policy, kind === "files" ? cfFiles(root) : cfGuarded(root), { mode: 0o600 });
    }
    return ["cf-agent", "-KI", "-f", policy];
  },
};

function puppetManifest(root: string, kind: "files" | "templated" | "guarded"): string {
  if (kind === "files") {
    const out: string[] = [];
    for (let d = 0; d < DIRS; d++)
      out.push(`file { '${root}/dir_${d}': ensure => directory, mode => '0755' }`);
    for (let i = 0; i < FILES; i++) {
      out.push(
        `file { '${root}/file_${i}.conf': ensure => file, mode => '0644', content => ${JSON.stringify(content(i))} }`,
      );
    }
    return out.join("\n");
  }
  if (kind === "templated") {
    return `50.each |$n| {
  file { "${root}/tpl_\${n}.conf":
    ensure => file,
    content => inline_epp('<% 20.each |$i| { %>item <%= $i %> of file <%= $n %> = <%= $i * $n %>\n<% } %>', { 'n' => $n }),
  }
}`;
  }
  return `50.each |$i| {
  exec { "touch ${root}/guard_\${i}": path => ['/usr/bin', '/bin'], creates => "${root}/guard_\${i}" }
}`;
}

const puppet: Tool = {
  name: "puppet apply",
  async setup(work, root, kind) {
    const manifest = join(work, "bench.pp");
    await writeFile(manifest, puppetManifest(root, kind));
    return ["puppet", "apply", "--color=false", manifest];
  },
};

function ansiblePlaybook(root: string, kind: "files" | "templated" | "guarded"): string {
  const head = "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n";
  if (kind === "files") {
    return `${head}    - file: { path: "${root}/dir_{{ item }}", state: directory, mode: "0755" }
      loop: "{{ range(${DIRS}) | list }}"
    - copy: { dest: "${root}/file_{{ item }}.conf", mode: "0644", content: "# managed file {{ item }}\\nkey_{{ item }} = value_{{ item }}\\n" }
      loop: "{{ range(${FILES}) | list }}"
`;
  }
  if (kind === "templated") {
    return `${head}    - copy:
        dest: "${root}/tpl_{{ n }}.conf"
        content: "{% for i in range(20) %}item {{ i }} of file {{ n }} = {{ i * n }}\\n{% endfor %}"
      loop: "{{ range(50) | list }}"
      loop_control: { loop_var: n }
`;
  }
  return `${head}    - command: touch ${root}/guard_{{ item }}
      args: { creates: "${root}/guard_{{ item }}" }
      loop: "{{ range(50) | list }}"
`;
}

const ansible: Tool = {
  name: "ansible-playbook -c local",
  async setup(work, root, kind) {
    const playbook = join(work, "bench.yml");
    await writeFile(playbook, ansiblePlaybook(root, kind));
    return ["ansible-playbook", "-i", "localhost,", "-c", "local", playbook];
  },
};

function has(bin: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${bin}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Peer tools come from Debian packages, installed only when asked (`--with-peers`). */
export function installPeers(): void {
  const wanted: [string, string][] = [
    ["cf-agent", "cfengine3"],
    ["puppet", "puppet"],
    ["ansible-playbook", "ansible-core"],
  ];
  const missing = wanted.filter(([bin]) => !has(bin)).map(([, pkg]) => pkg);
  if (missing.length === 0) return;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
  execFileSync("apt-get", ["install", "-y", "-qq", ...missing], { stdio: "inherit", env });
}

export async function localApply(opts: ScenarioOptions): Promise<ScenarioResult> {
  if (opts.withPeers) installPeers();
  const tools: Tool[] = [
    zesterTool(opts.zesterBin),
    zesterTool(opts.zesterBin, SERIAL, ["--concurrency", "1"]),
    // What keeping pre-images for state.revert costs: the same runs keeping nothing.
    zesterTool(opts.zesterBin, NO_REVERT, ["--no-revert"]),
  ];
  if (has("cf-agent")) tools.push(cfengine);
  if (has("puppet")) tools.push(puppet);
  if (has("ansible-playbook")) tools.push(ansible);
  const baseline = await repeat(opts.runs, opts.warmup, () => timeCommand([process.execPath, "-e", "0"]));
  const rows: (string | number)[][] = [];
  const cell = (s: Stats) =>
    `${fmtMs(s.median)} (×${(s.median / baseline.median).toFixed(1)}, ±${(s.spread * 100).toFixed(0)}%` +
    `${s.n < opts.runs ? `, ${s.n} run${s.n === 1 ? "" : "s"}` : ""})`;
  const firstRuns = new Map<string, Stats>();
  const rss = (s: Stats) => (s.rssKiB === undefined ? "n/a" : `${(s.rssKiB / 1024).toFixed(0)} MiB`);
  for (const tool of tools) {
    const work = await mkdtemp(join(tmpdir(), "zester-bench-"));
    try {
      const root = join(work, "root");
      const fresh = async () => {
        await rm(root, { recursive: true, force: true });
        await mkdir(root, { recursive: true });
      };
      // A peer that fails a workload (missing module, sandbox limits) gets the reason in its cell.
      let secondStats: Stats | undefined;
      const measure = async (run: () => Promise<Stats>, keep = false, label?: string): Promise<string> => {
        try {
          const st = await run();
          if (keep) secondStats = st;
          if (label) firstRuns.set(label, st);
          return cell(st);
        } catch (err) {
          const lines = errText(err)
            .split("\n")
            .filter((l) => /error/i.test(l));
          return `failed: ${(lines.at(-1) ?? errText(err).split("\n")[0] ?? "").slice(0, 120)}`;
        }
      };
      const argv = await tool.setup(work, root, "files");
      const first = await measure(
        () => repeat(opts.runs, opts.warmup, () => timeCommand(argv), fresh, BUDGET_MS),
        false,
        tool.name,
      );
      const second = await measure(async () => {
        await fresh();
        await timeCommand(argv);
        return repeat(opts.runs, opts.warmup, () => timeCommand(argv), undefined, BUDGET_MS);
      }, true);
      const drift = async () => {
        for (let i = 0; i < 10; i++) await writeFile(join(root, `file_${i * 7}.conf`), "drifted\n");
      };
      const repaired = await measure(() =>
        repeat(opts.runs, opts.warmup, () => timeCommand(argv), drift, BUDGET_MS),
      );
      const tplArgv = await tool.setup(work, root, "templated");
      const templated = await measure(() =>
        repeat(opts.runs, opts.warmup, () => timeCommand(tplArgv), fresh, BUDGET_MS),
      );
      const guardArgv = await tool.setup(work, root, "guarded");
      const guarded = await measure(async () => {
        await fresh();
        await timeCommand(guardArgv);
        return repeat(opts.runs, opts.warmup, () => timeCommand(guardArgv), undefined, BUDGET_MS);
      });
      rows.push([
        tool.name,
        first,
        second,
        repaired,
        templated,
        guarded,
        secondStats ? rss(secondStats) : "n/a",
      ]);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
  const md = [
    `Baseline \`node -e 0\`: ${fmtMs(baseline.median)}. Cells: median wall time (ratio to the baseline, spread p10–p90 over the median), ${opts.runs} runs after ${opts.warmup} warm-up.`,
    "",
    table(
      [
        "tool",
        "(a) 200 files + 20 dirs, first",
        "(b) same, no change",
        "(c) 10 drifted",
        "(d) 50 templated",
        "(e) 50 guarded cmds (satisfied)",
        "peak RSS (b)",
      ],
      rows,
    ),
  ];
  const par = firstRuns.get("zester local");
  const ser = firstRuns.get(SERIAL);
  if (par && ser)
    md.push(
      "",
      `Parallel speed-up of the 220 independent states, first run (a): ${(ser.median / par.median).toFixed(2)}× ` +
        "(`--concurrency 1` / default; footprints are disjoint, so the scheduler overlaps them).",
    );
  if (!tools.some((t) => t.name === "cf-agent"))
    md.push("", "cf-agent is not installed: run with `--with-peers` to compare.");
  return { title: "local-apply", markdown: md.join("\n") };
}
