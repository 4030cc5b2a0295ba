/**
 * Jinja-compatible rendering through nunjucks. nunjucks is loaded only when a file really contains
 * template syntax: most state files are plain YAML and start-up time is a feature.
 */
import { posix } from "node:path";
import type { Environment, ILoader } from "nunjucks";
import { colonGet, TemplateData } from "./context.js";

const TEMPLATE_SYNTAX = /\{[{%#]/;

export function hasTemplateSyntax(text: string): boolean {
  return TEMPLATE_SYNTAX.test(text);
}

/** Calls an execution function for `salt['mod.fn'](...)`; kwargs are Jinja keyword arguments. */
export type TemplateCall = (
  fun: string,
  args: unknown[],
  kwargs: Record<string, unknown>,
) => Promise<unknown>;

export interface RendererOptions {
  /** Directory for `{% include %}` / `{% import %}` look-ups (the states tree). */
  searchPath?: string;
  /** An in-memory tree for those look-ups instead (a fetched settings tree): path → text. */
  templates?: Readonly<Record<string, string>>;
  call?: TemplateCall;
}

/** What nunjucks asks of a loader; a plain object is enough. */
interface TemplateLoader {
  getSource(name: string): { src: string; path: string; noCache: boolean } | null;
  isRelative?(name: string): boolean;
  resolve?(from: string, to: string): string;
}

/** A tree-relative posix path, or undefined for one that is absolute or leaves the tree. */
function treePath(name: string): string | undefined {
  if (name.includes("\\") || name.includes("\0")) return undefined;
  const p = posix.normalize(name);
  if (p.startsWith("/") || p === ".." || p.startsWith("../")) return undefined;
  return p;
}

function memoryLoader(files: Readonly<Record<string, string>>): TemplateLoader {
  return {
    getSource(name) {
      const path = treePath(name);
      if (path === undefined || !Object.hasOwn(files, path)) return null;
      return { src: files[path]!, path, noCache: false };
    },
    isRelative: (name) => name.startsWith("./") || name.startsWith("../"),
    resolve: (from, to) => posix.join(posix.dirname(from), to),
  };
}

/**
 * Without a tree, includes find nothing. (nunjucks given no loader falls back to
 * `<cwd>/views`, which would let a template read files from wherever the process runs.)
 */
const NO_TEMPLATES: TemplateLoader = { getSource: () => null };

/** A template failed to render; line/col are 1-based positions in the template source. */
export class TemplateError extends Error {
  override name = "TemplateError";
  constructor(
    message: string,
    readonly source: string,
    readonly line: number,
    readonly col: number,
  ) {
    super(message);
  }
}

/** Rounds of re-rendering allowed while `salt[...]` calls resolve (a call may depend on another). */
const MAX_CALL_ROUNDS = 8;

/**
 * One renderer per compile (no module-level state): it owns a nunjucks environment with Salt's
 * everyday filters and the `salt[...]` bridge.
 */
export class TemplateRenderer {
  private env: Environment | undefined;
  private readonly calls = new Map<string, { done: boolean; value?: unknown; error?: unknown }>();

  constructor(private readonly opts: RendererOptions = {}) {}

  /**
   * Renders `text`; `vars` are the top-level names (facts, settings, ...). Functions reached via
   * `salt[...]` are asynchronous while nunjucks expressions are not, so a render that calls one
   * records the call, awaits it and renders again with the answer (templates are pure otherwise).
   */
  async render(text: string, vars: Record<string, unknown>, source: string): Promise<string> {
    if (!hasTemplateSyntax(text)) return text;
    const env = await this.environment();
    const nunjucks = (await import("nunjucks")).default;
    let tmpl: InstanceType<typeof nunjucks.Template>;
    try {
      tmpl = new nunjucks.Template(text, env, source, true);
    } catch (err) {
      throw toTemplateError(err, source, 0, text);
    }
    for (let round = 0; ; round++) {
      const pending: Promise<void>[] = [];
      const data = new TemplateData();
      const ctx = this.context(vars, data, pending);
      let out: string;
      try {
        out = tmpl.render(ctx);
      } catch (err) {
        // Render-time positions from nunjucks are 0-based; parse-time ones are 1-based.
        throw toTemplateError(err, source, 1, text);
      }
      if (pending.length === 0) return out;
      if (round >= MAX_CALL_ROUNDS) {
        throw new TemplateError("salt[...] calls did not settle after several renders", source, 1, 1);
      }
      await Promise.all(pending);
    }
  }

  private context(vars: Record<string, unknown>, data: TemplateData, pending: Promise<void>[]) {
    const ctx: Record<string, unknown> = { True: true, False: false, None: null };
    for (const [k, v] of Object.entries(vars)) ctx[k] = data.wrap(v);
    const facts = vars.facts ?? {};
    const settings = vars.settings ?? {};
    if (!("grains" in vars)) ctx.grains = ctx.facts ?? data.wrap(facts);
    if (!("pillar" in vars)) ctx.pillar = ctx.settings ?? data.wrap(settings);
    const builtins: Record<string, (...a: unknown[]) => unknown> = {
      "pillar.get": (k, d) => data.wrap(colonGet(settings, String(k), d)),
      "settings.get": (k, d) => data.wrap(colonGet(settings, String(k), d)),
      "config.get": (k, d) => data.wrap(colonGet(settings, String(k), colonGet(facts, String(k), d))),
      "grains.get": (k, d) => data.wrap(colonGet(facts, String(k), d)),
      "facts.get": (k, d) => data.wrap(colonGet(facts, String(k), d)),
    };
    ctx.salt = new Proxy(
      {},
      {
        get: (_t, prop) => {
          if (typeof prop !== "string") return undefined;
          const builtin = builtins[prop];
          if (builtin) return builtin;
          return (...args: unknown[]) => this.callOnce(prop, args, data, pending);
        },
      },
    );
    return ctx;
  }

  private callOnce(fun: string, rawArgs: unknown[], data: TemplateData, pending: Promise<void>[]): unknown {
    let kwargs: Record<string, unknown> = {};
    const last = rawArgs[rawArgs.length - 1] as Record<string, unknown> | undefined;
    let args = rawArgs;
    if (last && typeof last === "object" && last.__keywords === true) {
      const { __keywords: _, ...rest } = last;
      kwargs = rest;
      args = rawArgs.slice(0, -1);
    }
    const key = `${fun}\u0000${JSON.stringify([args, kwargs])}`;
    const entry = this.calls.get(key);
    if (entry?.done) {
      if (entry.error !== undefined) throw entry.error;
      return data.wrap(entry.value);
    }
    const call = this.opts.call;
    if (!call) throw new Error(`salt['${fun}'] is not available here`);
    if (!entry) {
      const e: { done: boolean; value?: unknown; error?: unknown } = { done: false };
      this.calls.set(key, e);
      pending.push(
        call(fun, args, kwargs).then(
          (v) => {
            e.done = true;
            e.value = v;
          },
          (err: unknown) => {
            e.done = true;
            e.error = err instanceof Error ? err : new Error(String(err));
          },
        ),
      );
    }
    // Placeholder for this round only; the template is rendered again once the call answers.
    return "";
  }

  private async environment(): Promise<Environment> {
    if (this.env) return this.env;
    const nunjucks = (await import("nunjucks")).default;
    const loader = this.opts.searchPath
      ? new nunjucks.FileSystemLoader(this.opts.searchPath)
      : this.opts.templates
        ? memoryLoader(this.opts.templates)
        : NO_TEMPLATES;
    // nunjucks reads a null source as "not found"; its type declarations do not allow for that.
    const env = new nunjucks.Environment(loader as ILoader, { autoescape: false, throwOnUndefined: false });
    const { stringify } = await import("yaml");
    const toJson = (v: unknown, indent?: number) => JSON.stringify(v ?? null, null, indent);
    env.addFilter("tojson", toJson);
    env.addFilter("json", toJson);
    env.addFilter("yaml_encode", (v: unknown) =>
      stringify(v ?? null, { collectionStyle: "flow", lineWidth: 0 }).trimEnd(),
    );
    env.addFilter("yaml", (v: unknown) =>
      stringify(v ?? null, { collectionStyle: "flow", lineWidth: 0 }).trimEnd(),
    );
    env.addFilter("load_json", (s: unknown) => JSON.parse(String(s)));
    env.addFilter("regex_replace", (s: unknown, pattern: string, repl: string) =>
      String(s).replace(new RegExp(pattern, "g"), repl),
    );
    env.addFilter("regex_match", (s: unknown, pattern: string) =>
      new RegExp(`^(?:${pattern})`).test(String(s)),
    );
    env.addFilter("to_bool", (v: unknown) =>
      typeof v === "string" ? ["true", "yes", "1", "on"].includes(v.toLowerCase()) : Boolean(v),
    );
    this.env = env;
    return env;
  }
}

function toTemplateError(err: unknown, source: string, shift: number, text: string): TemplateError {
  if (err instanceof TemplateError) return err;
  const e = err as { message?: string; lineno?: number; colno?: number };
  const raw = String(e.message ?? err);
  // nunjucks prefixes "(path) [Line n, Column m]" to its messages; keep only the reason.
  const m = /\[Line (\d+)(?:, Column (\d+))?\]/.exec(raw);
  const lineno = e.lineno ?? (m?.[1] !== undefined ? Number(m[1]) : undefined);
  const colno = e.colno ?? (m?.[2] !== undefined ? Number(m[2]) : undefined);
  let line = lineno === undefined ? 1 : lineno + shift;
  let col = colno === undefined ? 1 : colno + shift;
  // Some nunjucks errors (unknown filter) carry no position: find the offending name instead.
  const filter = lineno === undefined ? /filter not found: (\w+)/.exec(raw) : null;
  if (filter) {
    const at = new RegExp(`\\|\\s*${filter[1]}\\b`).exec(text);
    if (at) {
      const before = text.slice(0, at.index);
      line = before.split("\n").length;
      col = at.index - before.lastIndexOf("\n");
    }
  }
  const reason = raw
    .replace(/^\([^)]*\)( \[Line \d+(, Column \d+)?\])?\s*/s, "")
    .replace(/^Error: /, "")
    .trim();
  return new TemplateError(reason, source, line, col);
}
