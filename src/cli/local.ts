/**
 * `zester local`: masterless runs on this machine, no NATS. Execution functions, single states,
 * state.apply / highstate, and the inspection commands state.show_sls / state.show_order.
 */
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { errText } from "../util/errors.js";
import { UsageError } from "./errors.js";
import { OUTPUT_FORMATS, type OutputFormat, type PeelRun } from "./output.js";

const USAGE = `Usage: zester local [options] <module.function> [id] [key=value ...]
       zester local [options] state.apply [sls,...]      (no sls: highstate from top.sls/top.zy)
       zester local [options] state.highstate | state.show_sls <sls> | state.show_order [sls]
       zester local [options] state.runs                  (kept runs, newest first: their run ids)
       zester local [options] state.revert <run-id> [force=true]   (undo what a run changed)

Options:
  --states-dir DIR      states tree (default $ZESTER_STATES_DIR or /srv/zester/states)
  --settings-file FILE  YAML file used as settings (pillar)
  --settings-dir DIR    settings tree (top.sls or top.zy, rendered like Salt's pillar_roots)
  --test                dry run: report what would change (same as test=true)
  --format FMT          text, json, yaml, highstate or nested (default text; --out too)
  --id ID               peel id for top file matching and output (default: hostname)
  --concurrency N       states run at once (default 8)
  --failhard            stop at the first failed state
  --cache-dir DIR       compile cache (default $ZESTER_CACHE_DIR or /var/cache/zester/local)
  --no-cache            compile from scratch and store nothing
  --revert-dir DIR      where runs are kept for state.revert (default $ZESTER_REVERT_DIR or
                        /var/lib/zester/local/revert)
  --no-revert           keep nothing for state.revert (the run cannot be reverted)
`;

interface LocalOptions {
  statesDir: string;
  settingsFile?: string;
  settingsDir?: string;
  test: boolean;
  format: OutputFormat;
  id?: string;
  concurrency?: number;
  failhard: boolean;
  cacheDir?: string;
  /** Undefined: keep nothing for state.revert (--no-revert). */
  revertDir: string | undefined;
  positional: string[];
  kwargs: Record<string, unknown>;
}

/** key=value values are YAML scalars or flow collections, except that 0644 stays the string "0644". */
export function parseValue(raw: string, parseYaml: (s: string) => unknown): unknown {
  if (/^[-+]?0\d+$/.test(raw)) return raw;
  if (raw === "") return "";
  try {
    return parseYaml(raw);
  } catch {
    return raw;
  }
}

async function parseArgs(argv: string[]): Promise<LocalOptions> {
  const o: LocalOptions = {
    statesDir: process.env.ZESTER_STATES_DIR || "/srv/zester/states",
    test: false,
    format: "text",
    failhard: false,
    cacheDir: process.env.ZESTER_CACHE_DIR || "/var/cache/zester/local",
    revertDir: process.env.ZESTER_REVERT_DIR || "/var/lib/zester/local/revert",
    positional: [],
    kwargs: {},
  };
  const rawKw: [string, string][] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const flag = eq > 0 ? a.slice(0, eq) : a;
      const value = () => {
        if (eq > 0) return a.slice(eq + 1);
        const v = argv[++i];
        if (v === undefined) throw new UsageError(`${flag} needs a value`);
        return v;
      };
      switch (flag) {
        case "--states-dir":
          o.statesDir = value();
          break;
        case "--settings-file":
          o.settingsFile = value();
          break;
        case "--settings-dir":
          o.settingsDir = value();
          break;
        case "--test":
          o.test = true;
          break;
        case "--failhard":
          o.failhard = true;
          break;
        case "--cache-dir":
          o.cacheDir = value();
          break;
        case "--no-cache":
          delete o.cacheDir;
          break;
        case "--revert-dir":
          o.revertDir = value();
          break;
        case "--no-revert":
          o.revertDir = undefined;
          break;
        case "--id":
          o.id = value();
          break;
        case "--concurrency": {
          const n = Number(value());
          if (!Number.isInteger(n) || n < 1) throw new UsageError("--concurrency must be a positive integer");
          o.concurrency = n;
          break;
        }
        case "--format":
        case "--out": {
          const f = value();
          if (!(OUTPUT_FORMATS as readonly string[]).includes(f))
            throw new UsageError(`--format must be ${OUTPUT_FORMATS.join(", ")}`);
          o.format = f as OutputFormat;
          break;
        }
        case "--help":
          throw new HelpRequested();
        default:
          throw new UsageError(`unknown option ${flag}\n${USAGE}`);
      }
    } else if (a === "-h") {
      throw new HelpRequested();
    } else {
      const eq = a.indexOf("=");
      if (eq > 0 && /^[A-Za-z_][\w-]*$/.test(a.slice(0, eq))) rawKw.push([a.slice(0, eq), a.slice(eq + 1)]);
      else o.positional.push(a);
    }
  }
  if (rawKw.length > 0) {
    const { parse } = await import("yaml");
    for (const [k, v] of rawKw) o.kwargs[k] = parseValue(v, parse);
  }
  return o;
}

class HelpRequested extends Error {}

export async function run(argv: string[]): Promise<number> {
  let o: LocalOptions;
  try {
    o = await parseArgs(argv);
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(USAGE);
      return 0;
    }
    throw err;
  }
  const [fun, ...args] = o.positional;
  if (fun === undefined) throw new UsageError(`missing <module.function>\n${USAGE}`);
  const testKw = o.kwargs.test;
  const isStateRun = fun.startsWith("state.");
  if (isStateRun && testKw !== undefined) {
    o.test = testKw === true || testKw === "true" || testKw === "True";
    delete o.kwargs.test;
  }

  if (o.settingsFile && o.settingsDir)
    throw new UsageError("--settings-file and --settings-dir exclude each other");
  const peelId = o.id ?? hostname();
  let factsOnce: Promise<Record<string, unknown>> | undefined;
  const collectFacts = () => {
    factsOnce ??= import("../facts/index.js").then((m) => m.collectFacts({ id: peelId }));
    return factsOnce;
  };
  const settings = o.settingsFile
    ? await loadSettings(o.settingsFile)
    : o.settingsDir
      ? await resolveSettingsDir(o.settingsDir, peelId, collectFacts)
      : {};
  const engineOpts = {
    statesDir: o.statesDir,
    settings,
    facts: collectFacts,
    peelId,
    test: o.test,
    failhard: o.failhard,
    ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
    ...(o.cacheDir ? { cacheDir: o.cacheDir } : {}),
  };
  const engine = await import("../state/engine.js");
  const { CompileError } = await import("../state/diagnostics.js");

  try {
    switch (fun) {
      case "state.runs": {
        const rv = await import("../revert/run.js");
        await printData(o.format, o.revertDir ? await rv.listRuns(new rv.RevertStore(o.revertDir)) : []);
        return 0;
      }
      case "state.revert":
        return await revertLocal(o, peelId, args);
      case "state.apply":
      case "state.sls":
      case "state.highstate": {
        const refs = fun === "state.highstate" ? [] : slsList(args);
        if (fun === "state.sls" && refs.length === 0)
          throw new UsageError("state.sls needs at least one sls name");
        const target = refs.length === 0 ? { kind: "highstate" as const } : { kind: "sls" as const, refs };
        return await recordedRun(o, peelId, fun, args, engineOpts, (opts) =>
          engine.applyTarget(target, opts),
        );
      }
      case "state.single": {
        const [stateFun, id] = args;
        if (!stateFun) throw new UsageError("state.single needs <module.function> [id] [key=value ...]");
        return await runInlineState(o, engine, engineOpts, peelId, stateFun, id);
      }
      case "state.show_sls":
      case "state.show_order":
      case "state.show_highstate": {
        const refs = fun === "state.show_highstate" ? [] : slsList(args);
        if (fun === "state.show_sls" && refs.length === 0)
          throw new UsageError("state.show_sls needs an sls name");
        const program = await engine.compileTarget(
          refs.length === 0 ? { kind: "highstate" } : { kind: "sls", refs },
          engineOpts,
        );
        const data =
          fun === "state.show_order"
            ? engine.plannedOrder(program)
            : program.states.map((s) => ({
                name: s.name,
                id: s.id,
                function: s.fun,
                sls: s.sls,
                source: `${s.pos.file}:${s.pos.line}:${s.pos.col}`,
                params: s.params,
                requisites: s.requisites.map((r) => ({
                  [r.kind]: r.targets.map((t) => program.states[t]!.name),
                })),
                ...(s.onlyif.length > 0 ? { onlyif: s.onlyif } : {}),
                ...(s.unless.length > 0 ? { unless: s.unless } : {}),
                ...(s.order !== undefined
                  ? { order: Number.isFinite(s.order) ? s.order : s.order < 0 ? "first" : "last" }
                  : {}),
                ...(s.failhard ? { failhard: true } : {}),
                ...(s.retry ? { retry: s.retry } : {}),
              }));
        await printData(o.format, data);
        return 0;
      }
    }
    const { loadFamily } = await import("../modules/index.js");
    const mod = fun.split(".")[0] ?? "";
    const fam = fun.includes(".") ? await loadFamily(mod) : undefined;
    const name = fun.slice(mod.length + 1);
    if (fam?.exec && Object.hasOwn(fam.exec, name)) {
      return await runExec(o, peelId, fun, args, settings, engineOpts.facts);
    }
    if (!fam?.states || !Object.hasOwn(fam.states, name)) {
      const { didYouMean } = await import("../util/suggest.js");
      if (!fam) {
        const { FAMILY_NAMES } = await import("../modules/index.js");
        const s = didYouMean(mod, FAMILY_NAMES);
        throw new UsageError(`unknown module "${mod}"${s ? ` (did you mean "${s}"?)` : ""}`);
      }
      const s = didYouMean(name, [...Object.keys(fam.exec ?? {}), ...Object.keys(fam.states)]);
      throw new UsageError(
        `module "${mod}" has no function "${name}"${s ? ` (did you mean "${mod}.${s}"?)` : ""}`,
      );
    }
    const [id] = args;
    return await runInlineState(o, engine, engineOpts, peelId, fun, id);
  } catch (err) {
    if (err instanceof CompileError) {
      process.stderr.write(`${err.message}\n`);
      if (o.format !== "text") {
        await printRun(o, {
          peel_id: peelId,
          success: false,
          status: "failed",
          error: err.message,
          results: [],
        });
      }
      return 1;
    }
    throw err;
  }
}

function slsList(args: string[]): string[] {
  return args.flatMap((a) => a.split(",")).filter((s) => s !== "");
}

async function runInlineState(
  o: LocalOptions,
  engine: typeof import("../state/engine.js"),
  engineOpts: Parameters<typeof import("../state/engine.js").applyTarget>[1],
  peelId: string,
  fun: string,
  id: string | undefined,
): Promise<number> {
  const kwargs = { ...o.kwargs };
  if (kwargs.test !== undefined) {
    engineOpts.test = kwargs.test === true || kwargs.test === "true";
    delete kwargs.test;
  }
  const stateId = id ?? (typeof kwargs.name === "string" ? kwargs.name : undefined);
  if (stateId === undefined) throw new UsageError(`${fun} needs a state id (or name=...)`);
  const shown = [stateId, ...Object.entries(kwargs).map(([k, v]) => `${k}=${JSON.stringify(v)}`)];
  return recordedRun(o, peelId, fun, shown, engineOpts, (opts) =>
    engine.applyTarget({ kind: "inline", fun, id: stateId, args: kwargs }, opts),
  );
}

type EngineOpts = Parameters<typeof import("../state/engine.js").applyTarget>[1];

/** A state run that keeps its pre-images (real runs) so `state.revert <run id>` can undo it. */
async function recordedRun(
  o: LocalOptions,
  peelId: string,
  fun: string,
  args: string[],
  engineOpts: EngineOpts,
  apply: (opts: EngineOpts) => Promise<import("../state/engine.js").RunReport>,
): Promise<number> {
  if (engineOpts.test || o.revertDir === undefined) {
    const report = await apply(engineOpts);
    return printRun(o, runRecord(peelId, report.results, report.summary));
  }
  const rv = await import("../revert/run.js");
  const { newKsuid } = await import("../jobs/ksuid.js");
  const store = new rv.RevertStore(o.revertDir);
  const recorder = new rv.RunRecorder(store);
  const report = await apply({ ...engineOpts, recorder });
  const rec = runRecord(peelId, report.results, report.summary);
  const kept = await rv.keepRun(store, recorder, { id: newKsuid(), fun, args, machine: peelId });
  if (kept.note) rec.revert = kept.note;
  return printRun(o, rec);
}

/** `state.revert <run-id> [force=true]`, with --test showing what would be restored. */
async function revertLocal(o: LocalOptions, peelId: string, args: string[]): Promise<number> {
  const [id, ...rest] = args;
  if (id === undefined || rest.length > 0)
    throw new UsageError("state.revert needs one run id (list them with: zester local state.runs)");
  const { force, ...others } = o.kwargs;
  const unknown = Object.keys(others);
  if (unknown.length > 0)
    throw new UsageError(`state.revert takes force=true only, not ${unknown.join(", ")}`);
  if (o.revertDir === undefined)
    throw new UsageError("state.revert needs the runs kept in --revert-dir, not --no-revert");
  const rv = await import("../revert/run.js");
  const store = new rv.RevertStore(o.revertDir);
  try {
    const report = await rv.revertById(store, id, { test: o.test, force: rv.truthy(force) });
    return await printRun(o, runRecord(peelId, report.results, report.summary));
  } catch (err) {
    if (!(err instanceof rv.RunNotFound)) throw err;
    return printRun(o, {
      peel_id: peelId,
      success: false,
      status: "failed",
      error: err.message,
      results: [],
    });
  }
}

async function runExec(
  o: LocalOptions,
  peelId: string,
  fun: string,
  args: string[],
  settings: Record<string, unknown>,
  facts: () => Promise<Record<string, unknown>>,
): Promise<number> {
  const { callExec, retcodeError } = await import("../state/exec.js");
  const { TemplateRenderer } = await import("../template/render.js");
  const { saltGrains } = await import("../facts/grains.js");
  const { parse } = await import("yaml");
  const renderer = new TemplateRenderer({ searchPath: o.statesDir });
  // test.* never reads facts; skipping collection keeps `zester local test.ping` instant.
  const loaded = fun.startsWith("test.") ? {} : await facts();
  const ctx = {
    test: o.test,
    id: fun,
    statesDir: o.statesDir,
    facts: loaded,
    settings,
    render: (t: string, extra: Record<string, unknown>, source: string) =>
      renderer.render(t, { facts: loaded, grains: saltGrains(loaded), settings, ...extra }, source),
  };
  const positional = args.map((a) => parseValue(a, parse));
  let rec: PeelRun;
  let retcode: number | undefined;
  try {
    const returned = await callExec(fun, positional, o.kwargs, {
      ...ctx,
      retcode: (code: number) => {
        retcode = code;
      },
    });
    rec = { peel_id: peelId, success: true, status: "success", results: [], returned: returned ?? null };
    if (retcode !== undefined) {
      rec = { ...rec, success: false, status: "failed", error: retcodeError(fun, retcode) };
    }
  } catch (err) {
    const { ExecCallError } = await import("../state/exec.js");
    if (err instanceof ExecCallError) throw new UsageError(err.message);
    rec = { peel_id: peelId, success: false, status: "failed", error: errText(err), results: [] };
  }
  return printRun(o, rec);
}

function runRecord(
  peelId: string,
  results: PeelRun["results"],
  summary: NonNullable<PeelRun["summary"]>,
): PeelRun {
  const ok = summary.failed === 0;
  return { peel_id: peelId, success: ok, status: ok ? "success" : "failed", results, summary };
}

async function printRun(o: LocalOptions, rec: PeelRun): Promise<number> {
  const { formatRuns, exitCodeFor } = await import("./output.js");
  const forPeople = o.format === "text" || o.format === "highstate" || o.format === "nested";
  const color = forPeople && process.stdout.isTTY === true && !process.env.NO_COLOR;
  process.stdout.write(formatRuns([rec], o.format, { color }));
  return exitCodeFor([rec]);
}

async function printData(format: OutputFormat, data: unknown): Promise<void> {
  if (format === "nested" || format === "highstate") {
    // Salt's highstate outputter falls back to nested for data that is not a state run.
    const { nestedLines } = await import("./nested.js");
    const { painter } = await import("./paint.js");
    process.stdout.write(`${nestedLines(data, 0, painter(false)).join("\n")}\n`);
    return;
  }
  if (format === "json") {
    process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
    return;
  }
  const { stringify } = await import("yaml");
  process.stdout.write(stringify(data, { lineWidth: 0 }));
}

/** A settings tree resolved for this machine as a peel resolves its own (no secrets here). */
async function resolveSettingsDir(
  dir: string,
  peelId: string,
  facts: () => Promise<Record<string, unknown>>,
): Promise<Record<string, unknown>> {
  const { resolveSettings } = await import("../settings/resolve.js");
  return resolveSettings({ files: dir, facts: await facts(), peelId });
}

async function loadSettings(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read --settings-file ${path}: ${errText(err)}`);
  }
  const { parse } = await import("yaml");
  let data: unknown;
  try {
    data = parse(text);
  } catch (err) {
    throw new UsageError(`--settings-file ${path} is not valid YAML: ${errText(err)}`);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== "object" || Array.isArray(data))
    throw new UsageError(`--settings-file ${path} must be a YAML map`);
  return data as Record<string, unknown>;
}
