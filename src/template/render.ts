/**
 * Public face of the template layer: Jinja2 as Salt runs it (see README.md in this folder). The
 * engine is loaded only when a text really contains template syntax: most state files are plain
 * YAML and start-up time is a feature.
 */
import type { Engine } from "./engine.js";

export { TemplateError } from "./error.js";

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
  /** Where `salt['log.*']` messages go; by default warnings and errors go to stderr. */
  log?: (level: string, message: string) => void;
}

/**
 * One renderer per compile (no module-level state): parsed templates and the converted facts and
 * settings are shared by its renders.
 */
export class TemplateRenderer {
  private engine: Promise<Engine> | undefined;

  constructor(private readonly opts: RendererOptions = {}) {}

  /** Renders `text`; `vars` are the top-level names (facts, settings, sls context, ...). */
  async render(text: string, vars: Record<string, unknown>, source: string): Promise<string> {
    // Jinja reads every newline as "\n"; a plain file needs no engine for that
    if (!hasTemplateSyntax(text)) return text.includes("\r") ? text.replace(/\r\n?/g, "\n") : text;
    this.engine ??= import("./engine.js").then((m) => m.Engine.create(this.opts));
    return (await this.engine).render(text, vars, source);
  }
}
