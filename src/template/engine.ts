/**
 * Wires the Jinja engine as Salt configures it: sandboxed, StrictUndefined, `do` and loop
 * controls, Salt's filters/tests/globals, a loader for the states tree, Salt's newline handling.
 * Loaded lazily by render.ts, only for text that has template syntax.
 */
import { readdir, readFile } from "node:fs/promises";
import { join, posix, relative, sep } from "node:path";
import { errText } from "../util/errors.js";
import { isENOENT } from "../util/files.js";
import { TemplateError } from "./error.js";
import { FILTERS } from "./filters.js";
import { Environment, type EnvironmentConfig, type LoadedSource } from "./interp.js";
import { TESTS } from "./predicates.js";
import type { RendererOptions } from "./render.js";
import { SALT_TESTS, type SaltContext, saltFilters, saltGlobals } from "./salt.js";
import {
  ContextDict,
  float,
  fromJs,
  isDict,
  iterate,
  Namespace,
  PyError,
  PyFunc,
  str,
  toNumber,
} from "./values.js";

/** A tree-relative posix path, or undefined for one that is absolute or leaves the tree. */
function treePath(name: string): string | undefined {
  if (name.includes("\\") || name.includes("\0")) return undefined;
  const p = posix.normalize(name);
  if (p.startsWith("/") || p === ".." || p.startsWith("../")) return undefined;
  return p;
}

/** Salt's loader: `./x` and `../x` are relative to the including file, other names to the tree. */
function resolveName(name: string, from: string): string | undefined {
  const relative = name.startsWith("./") || name.startsWith("../");
  return treePath(relative ? posix.join(posix.dirname(from), name) : name);
}

const MAX_RANGE = 100000;
const CONTEXT_DICTS = new Set(["grains", "pillar", "facts", "settings"]);

function jinjaGlobals(): Map<string, unknown> {
  const g = new Map<string, unknown>();
  g.set(
    "range",
    new PyFunc("range", (a) => {
      const [start, stop, step] =
        a.length === 1
          ? [0, toNumber(a[0]), 1]
          : [toNumber(a[0]), toNumber(a[1]), a.length > 2 ? toNumber(a[2]) : 1];
      if (step === 0) throw new PyError("ValueError", "range() arg 3 must not be zero");
      const n = Math.max(0, Math.ceil((stop - start) / step));
      if (n > MAX_RANGE)
        throw new PyError(
          "OverflowError",
          `Range too big. The sandbox blocks ranges larger than MAX_RANGE (${MAX_RANGE}).`,
        );
      return Array.from({ length: n }, (_, i) => start + i * step);
    }),
  );
  g.set(
    "dict",
    new PyFunc("dict", (a, k) => {
      const m = new Map<unknown, unknown>();
      if (a.length > 0) {
        if (isDict(a[0])) for (const [kk, vv] of a[0]) m.set(kk, vv);
        else
          for (const p of iterate(a[0])) {
            const kv = iterate(p);
            m.set(kv[0], kv[1]);
          }
      }
      for (const [kk, vv] of k) m.set(kk, vv);
      return m;
    }),
  );
  g.set(
    "namespace",
    new PyFunc("namespace", (a, k) => {
      const ns = new Namespace();
      if (a.length > 0 && isDict(a[0])) for (const [kk, vv] of a[0]) ns.attrs.set(str(kk), vv);
      for (const [kk, vv] of k) ns.attrs.set(kk, vv);
      return ns;
    }),
  );
  g.set(
    "joiner",
    new PyFunc("joiner", (a) => {
      const sep = a.length > 0 ? str(a[0]) : ", ";
      let used = false;
      return new PyFunc("joiner", () => {
        if (used) return sep;
        used = true;
        return "";
      });
    }),
  );
  g.set("cycler", new PyFunc("cycler", (a) => new Cycler(a)));
  g.set("lipsum", new PyFunc("lipsum", async (a, k) => (await import("./lipsum.js")).lipsum(a, k)));
  return g;
}

class Cycler {
  private pos = 0;
  constructor(private readonly items: unknown[]) {}
  pyRepr(): string {
    return "<Cycler>";
  }
  pyAttr(name: string): unknown {
    if (name === "current") return this.items[this.pos];
    if (name === "next") {
      return new PyFunc("next", () => {
        const v = this.items[this.pos];
        this.pos = (this.pos + 1) % this.items.length;
        return v;
      });
    }
    if (name === "reset") {
      return new PyFunc("reset", () => {
        this.pos = 0;
        return null;
      });
    }
    return undefined;
  }
}

async function yamlLoader(): Promise<(text: string) => unknown> {
  const { parse } = await import("yaml");
  // PyYAML (Salt's loader) reads YAML 1.1 and keeps `1.0` a float.
  const pyFloat = {
    tag: "tag:yaml.org,2002:float",
    default: true,
    test: /^[-+]?(?:(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+)$/,
    resolve: (s: string) => float(Number(s.replace(/_/g, ""))),
  };
  return (text) => parse(text, { version: "1.1", customTags: (tags) => [pyFloat, ...tags] }) ?? null;
}

function defaultLog(level: string, message: string): void {
  if (level === "warning" || level === "error" || level === "critical" || level === "exception") {
    process.stderr.write(`template ${level}: ${message}\n`);
  }
}

export class Engine {
  /** JavaScript data converted once per renderer: the same facts/settings keep their identity. */
  private readonly converted = new WeakMap<object, unknown>();
  private readonly compileCache: EnvironmentConfig["cache"] = new Map();

  constructor(
    private readonly opts: RendererOptions,
    private readonly parseYaml: (text: string) => unknown,
  ) {}

  static async create(opts: RendererOptions): Promise<Engine> {
    return new Engine(opts, await yamlLoader());
  }

  private async load(name: string, from: string): Promise<LoadedSource | null> {
    const path = resolveName(name, from);
    if (path === undefined) return null;
    if (this.opts.templates) {
      return Object.hasOwn(this.opts.templates, path) ? { text: this.opts.templates[path]!, path } : null;
    }
    if (!this.opts.searchPath) return null;
    try {
      return { text: await readFile(join(this.opts.searchPath, path), "utf8"), path };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return null;
      throw new PyError("TemplateNotFound", `cannot read template ${path}: ${errText(err)}`);
    }
  }

  /** A context mapping, converted once per renderer so mutations and identity persist. */
  private contextDict(v: unknown): unknown {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return fromJs(v, this.converted);
    const hit = this.converted.get(v);
    if (hit instanceof ContextDict) return hit;
    const converted = fromJs(v, new WeakMap());
    if (!(converted instanceof Map)) return converted;
    const d = new ContextDict(converted);
    this.converted.set(v, d);
    return d;
  }

  private parseData(format: "yaml" | "json", text: string): unknown {
    try {
      const data = format === "yaml" ? this.parseYaml(text) : JSON.parse(text);
      return fromJs(data);
    } catch (err) {
      if (err instanceof PyError) throw err;
      const what = format === "yaml" ? "Encountered error loading yaml" : "Unable to load json";
      throw new PyError("TemplateRuntimeError", `${what}: ${errText(err).split("\n")[0]}`);
    }
  }

  private files: Promise<string[]> | undefined;

  /** Every file of the states tree, relative and sorted (Salt's fileserver file_list), read once. */
  private fileList(): Promise<string[]> {
    this.files ??= (async () => {
      if (this.opts.templates) return Object.keys(this.opts.templates).sort();
      if (!this.opts.searchPath) return [];
      const root = this.opts.searchPath;
      const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch((err: unknown) => {
        if (isENOENT(err)) return [];
        throw err;
      });
      return entries
        .filter((e) => e.isFile())
        .map((e) => posix.join(relative(root, e.parentPath).split(sep).join("/"), e.name))
        .sort();
    })();
    return this.files;
  }

  async render(text: string, vars: Record<string, unknown>, source: string): Promise<string> {
    const globals = jinjaGlobals();
    const context = new Map<string, unknown>();
    for (const [k, v] of Object.entries(vars)) {
      context.set(k, CONTEXT_DICTS.has(k) ? this.contextDict(v) : fromJs(v, this.converted));
    }
    if (!context.has("grains")) context.set("grains", context.get("facts") ?? new Map());
    if (!context.has("pillar")) context.set("pillar", context.get("settings") ?? new Map());
    const salt: SaltContext = {
      grains: context.get("grains"),
      pillar: context.get("pillar"),
      opts: context.get("opts") ?? new Map(),
      log: this.opts.log ?? defaultLog,
      cache: this.converted,
    };
    if (this.opts.call) salt.call = this.opts.call;
    salt.files = () => this.fileList();
    const { env: saltEnv, context: saltContext } = saltGlobals(salt);
    for (const [k, v] of saltEnv) globals.set(k, v);
    for (const [k, v] of saltContext) if (!context.has(k)) context.set(k, v);
    const env = new Environment({
      load: (name, from) => this.load(name, from),
      filters: { ...FILTERS, ...saltFilters((f, t) => this.parseData(f, t)), indent: FILTERS.indent! },
      tests: { ...TESTS, ...SALT_TESTS },
      globals,
      context,
      parseData: (f, t) => this.parseData(f, t),
      cache: this.compileCache,
    });
    const { ast } = env.compile(text, source);
    // Salt appends os.linesep ("\n" here) when the source ended with a newline
    const newline = text.endsWith("\n") ? "\n" : "";
    try {
      const r = await env.render(ast, text, source, null, 0);
      return r.out + newline;
    } catch (err) {
      if (err instanceof TemplateError) throw err;
      throw new TemplateError(errText(err), source, 1, 1, text);
    }
  }
}
