/**
 * Compile: .sls/.zy files → a list of validated states with resolved requisites, or one CompileError
 * carrying every problem found (template, YAML, structure, modules, parameters, requisites,
 * cycles). Nothing is executed here except `salt[...]` calls made by templates.
 */
import { isMap, isScalar, isSeq, type Node, type Pair, type YAMLMap } from "yaml";
import { saltGrains } from "../facts/grains.js";
import { type Resolved, resolveState } from "../modules/index.js";
import {
  engineKeyNames,
  inRequisiteBase,
  isEngineKey,
  isRequisiteKind,
  type RequisiteKind,
  type ValidatedParams,
  validateParams,
} from "../modules/params.js";
import type { ModuleContext, Params, StateFunction } from "../modules/types.js";
import { TemplateError, TemplateRenderer } from "../template/render.js";
import { errText } from "../util/errors.js";
import { AmbiguousRefError, isInitFile, lookedFor } from "../util/sls-files.js";
import { didYouMean } from "../util/suggest.js";
import {
  CompileError,
  type Diagnostic,
  type DiagnosticKind,
  excerpt,
  type SourcePos,
} from "./diagnostics.js";
import { callExec } from "./exec.js";
import { buildGraph, type Graph } from "./graph.js";
import { CompileTracker, type LoadedSls, parseSls, readSls, resolveRelativeRef } from "./sls.js";
import { slsContext } from "./sls-context.js";

export type Facts = Record<string, unknown>;

export interface CompileOptions {
  statesDir: string;
  /** Facts are collected only if a template or top.zy needs them. */
  facts: () => Promise<Facts>;
  settings: Record<string, unknown>;
  /** Used for templates' `salt[...]` calls. */
  context?: (facts: Facts) => ModuleContext;
  /** Records what the compile depended on (for the compile cache). */
  track?: CompileTracker;
}

/** A guard (onlyif/unless): a shell command, or an execution function call. */
export type Guard = { cmd: string } | { fun: string; args: Params };

export interface RetrySpec {
  attempts: number;
  /** Seconds between attempts. */
  interval: number;
  until: boolean;
}

export interface ResolvedRequisite {
  kind: RequisiteKind;
  /** The reference as written, for messages. */
  ref: string;
  /** Indexes into Program.states. */
  targets: number[];
}

export interface CompiledState {
  index: number;
  id: string;
  /** `module.function` */
  fun: string;
  /** `<module.function>:<id>` */
  name: string;
  sls?: string;
  pos: SourcePos;
  params: Params;
  requisites: ResolvedRequisite[];
  onlyif: Guard[];
  unless: Guard[];
  /** Numeric rank from `order`; first = -Infinity, last = +Infinity. */
  order?: number;
  /** Place in declaration order through includes (Salt's state_auto_order), from 0. */
  autoOrder: number;
  /** 1-based place among the states one `names:` list expanded to. */
  nameOrder?: number;
  failhard: boolean;
  /** Salt's `parallel: true`: an unknown footprint does not make this state a barrier. */
  parallel: boolean;
  /** Commands run after the state; their exit code decides its result (Salt's check_cmd). */
  checkCmd: string[];
  retry?: RetrySpec;
  /** `watch_drift: true`: the peel repairs this state as soon as its resource drifts. */
  watchDrift?: boolean;
  /** Non-fatal problems found while compiling (unknown parameters, ignored as Salt does). */
  warnings?: string[];
}

export interface Program {
  states: CompiledState[];
  functions: ReadonlyMap<string, StateFunction>;
  graph: Graph;
  /** Facts if they were collected while compiling. */
  facts?: Facts;
}

interface RawArg {
  key: string;
  value: unknown;
  pos: SourcePos;
  /** Positions of list items, when the value is a list (requisite targets point there). */
  itemPos?: SourcePos[];
}

interface RawState {
  id: string;
  /** The id before `names` expansion; requisites on it reach every expanded state. */
  group: string;
  fun: string;
  args: RawArg[];
  pos: SourcePos;
  sls: string;
  file: string;
  /** Place in declaration order (see declarationOrder). */
  decl?: number;
  nameOrder?: number;
}

/** Collects diagnostics with source excerpts. */
class Diags {
  readonly list: Diagnostic[] = [];
  constructor(private readonly texts: Map<string, string>) {}

  add(kind: DiagnosticKind, pos: SourcePos, message: string, id?: string): void {
    const text = this.texts.get(pos.file);
    const d: Diagnostic = { kind, message, file: pos.file, line: pos.line, col: pos.col };
    if (id !== undefined) d.id = id;
    if (text !== undefined) d.excerpt = excerpt(text, pos.line, pos.col);
    this.list.push(d);
  }
}

function posOf(
  sls: LoadedSls,
  node: { range?: [number, number, number] | null } | null | undefined,
): SourcePos {
  const off = node?.range?.[0] ?? 0;
  const p = sls.lines.linePos(off);
  return { file: sls.file, line: p.line, col: p.col };
}

function keyText(pair: Pair): string {
  const k = pair.key;
  if (isScalar(k)) return String(k.value);
  return String(k);
}

function toJS(node: unknown): unknown {
  if (node === null || node === undefined) return null;
  if (typeof (node as Node).toJSON === "function") return (node as Node).toJSON();
  return node;
}

/** `opts` carries the peel id, which comes with the facts. */
const FACT_USE = /\b(facts|grains|salt|opts)\b/;
/** A template that reads other templates may use facts there (a formula's map.jinja does). */
const READS_TEMPLATES = /\{%-?\s*(include|import|from|extends|import_yaml|import_json|import_text)\b/;

/** Loads one sls and its includes (each file once: diamonds and cycles are fine). */
class Loader {
  readonly texts = new Map<string, string>();
  readonly diags = new Diags(this.texts);
  readonly states: RawState[] = [];
  readonly extends: { sls: LoadedSls; node: YAMLMap }[] = [];
  /** The sls refs each loaded file includes, in the order written. */
  readonly includesOf = new Map<string, string[]>();
  private readonly seen = new Set<string>();
  private readonly renderer: TemplateRenderer;
  private factsLoaded: Facts | undefined;
  readonly track: CompileTracker;

  constructor(private readonly opts: CompileOptions) {
    this.track = opts.track ?? new CompileTracker();
    this.renderer = new TemplateRenderer({
      searchPath: opts.statesDir,
      call: async (fun, args, kwargs) => {
        this.track.cacheable = false;
        const facts = await this.facts();
        const ctx = opts.context?.(facts);
        if (!ctx) throw new Error(`salt['${fun}'] is not available while compiling here`);
        return callExec(fun, args, kwargs, ctx);
      },
    });
  }

  get loadedFacts(): Facts | undefined {
    return this.factsLoaded;
  }

  async facts(): Promise<Facts> {
    this.track.usedFacts = true;
    this.factsLoaded ??= await this.opts.facts();
    return this.factsLoaded;
  }

  /**
   * Loads refs breadth-first. Files of one level are read and rendered concurrently, then walked
   * in reference order so state order never depends on I/O timing.
   */
  async load(roots: { ref: string; pos?: SourcePos }[]): Promise<void> {
    let queue = roots;
    while (queue.length > 0) {
      const fresh = queue.filter((q) => {
        if (this.seen.has(q.ref)) return false;
        this.seen.add(q.ref);
        return true;
      });
      const loaded = await Promise.all(fresh.map((q) => this.loadOne(q.ref, q.pos)));
      const next: { ref: string; pos: SourcePos }[] = [];
      for (const l of loaded) if (l) next.push(...this.walk(l.sls, l.isInit));
      queue = next;
    }
  }

  private async loadOne(
    ref: string,
    from?: SourcePos,
  ): Promise<{ sls: LoadedSls; isInit: boolean } | undefined> {
    const where = from ?? { file: "<command line>", line: 1, col: 1 };
    let found: { file: string; text: string } | undefined;
    try {
      found = await readSls(this.opts.statesDir, ref, this.track);
    } catch (err) {
      if (!(err instanceof AmbiguousRefError)) throw err;
      this.diags.add("include", where, `sls ${err.message}`);
      return undefined;
    }
    if (!found) {
      this.diags.add("include", where, `sls "${ref}" not found (looked for ${lookedFor(ref)})`);
      return undefined;
    }
    this.texts.set(found.file, found.text);
    let text = found.text;
    if (/\{[{%#]/.test(text)) {
      // Jinja include/import read files this tracker does not see.
      const readsTemplates = READS_TEMPLATES.test(text);
      if (readsTemplates) this.track.cacheable = false;
      try {
        const facts = readsTemplates || FACT_USE.test(text) ? await this.facts() : {};
        text = await this.renderer.render(
          text,
          {
            ...slsContext(ref, found.file, this.opts.statesDir, facts.id as string | undefined),
            facts,
            grains: saltGrains(facts),
            settings: this.opts.settings,
          },
          found.file,
        );
      } catch (err) {
        if (err instanceof TemplateError) {
          // the error may sit in an imported or included file: report it there, with its excerpt
          if (err.text !== undefined && err.source !== found.file) this.texts.set(err.source, err.text);
          this.diags.add("template", { file: err.source, line: err.line, col: err.col }, err.message);
        } else {
          this.diags.add("template", { file: found.file, line: 1, col: 1 }, errText(err));
        }
        return undefined;
      }
      // Positions below refer to the rendered text; show that in excerpts.
      this.texts.set(found.file, text);
    }
    const sls = await parseSls(ref, found.file, text, this.diags.list);
    if (!sls) return undefined;
    return { sls, isInit: isInitFile(found.file) };
  }

  private walk(sls: LoadedSls, isInit: boolean): { ref: string; pos: SourcePos }[] {
    const includes: { ref: string; pos: SourcePos }[] = [];
    const root = sls.doc.contents;
    if (root === null || (isScalar(root) && (root.value === null || root.value === ""))) return includes;
    if (!isMap(root)) {
      this.diags.add("structure", posOf(sls, root), "a state file must be a map of state ids");
      return includes;
    }
    for (const pair of root.items) {
      const id = keyText(pair);
      const kpos = posOf(sls, pair.key as Node);
      if (id === "include") {
        if (!isSeq(pair.value)) {
          this.diags.add("structure", kpos, "include must be a list of sls names");
          continue;
        }
        for (const item of pair.value.items) {
          const v = toJS(item);
          const ref =
            typeof v === "string"
              ? v
              : v && typeof v === "object" && typeof (v as { sls?: unknown }).sls === "string"
                ? (v as { sls: string }).sls
                : undefined;
          if (ref === undefined) {
            this.diags.add("structure", posOf(sls, item as Node), "include items are sls names");
            continue;
          }
          includes.push({ ref: resolveRelativeRef(ref, sls.ref, isInit), pos: posOf(sls, item as Node) });
        }
        continue;
      }
      if (id === "extend") {
        if (isMap(pair.value)) this.extends.push({ sls, node: pair.value });
        else this.diags.add("structure", kpos, "extend must be a map of state ids");
        continue;
      }
      this.parseStateDecl(sls, id, kpos, pair.value as Node | null, this.states);
    }
    this.includesOf.set(
      sls.ref,
      includes.map((i) => i.ref),
    );
    return includes;
  }

  /**
   * `<id>: { mod.fun: [ {k: v}, ... ] }`, `{ mod.fun: [] }` or Salt's `{ mod: [ fun, {k: v} ] }`.
   * Under `extend:` the function may be left out (`service: [ {watch: ...} ]`), as Salt allows:
   * the declaration then names only the module whose state it extends.
   */
  parseStateDecl(
    sls: LoadedSls,
    id: string,
    kpos: SourcePos,
    value: Node | null,
    out: RawState[],
    extending = false,
  ): void {
    if (isScalar(value) && typeof value.value === "string" && value.value.includes(".")) {
      out.push({
        id,
        group: id,
        fun: value.value,
        args: [],
        pos: posOf(sls, value),
        sls: sls.ref,
        file: sls.file,
      });
      return;
    }
    if (!isMap(value)) {
      this.diags.add(
        "structure",
        value ? posOf(sls, value) : kpos,
        `state "${id}" must be a map of module.function to a list of parameters`,
        id,
      );
      return;
    }
    for (const decl of value.items) {
      let fun = keyText(decl);
      const dpos = posOf(sls, decl.key as Node);
      const args: RawArg[] = [];
      const body = decl.value as Node | null;
      if (body !== null && !(isScalar(body) && body.value === null) && !isSeq(body)) {
        this.diags.add(
          "structure",
          posOf(sls, body),
          `parameters of ${fun} in "${id}" must be a list of single-key maps ("- key: value")`,
          id,
        );
        continue;
      }
      let ok = true;
      for (const item of isSeq(body) ? body.items : []) {
        if (isScalar(item) && typeof item.value === "string" && !fun.includes(".")) {
          fun = `${fun}.${item.value}`;
          continue;
        }
        if (!isMap(item) || item.items.length !== 1) {
          this.diags.add(
            "structure",
            posOf(sls, item as Node),
            `each parameter of ${fun} in "${id}" must be a single-key map ("- key: value")`,
            id,
          );
          ok = false;
          continue;
        }
        const p = item.items[0]!;
        const arg: RawArg = { key: keyText(p), value: toJS(p.value), pos: posOf(sls, p.key as Node) };
        if (isSeq(p.value)) arg.itemPos = p.value.items.map((n) => posOf(sls, n as Node));
        args.push(arg);
      }
      if (!ok) continue;
      if (!fun.includes(".") && !extending) {
        this.diags.add(
          "structure",
          dpos,
          `"${fun}" in "${id}" names no function (write ${fun}.<function>)`,
          id,
        );
        continue;
      }
      out.push({ id, group: id, fun, args, pos: dpos, sls: sls.ref, file: sls.file });
    }
  }
}

interface ParsedRef {
  text: string;
  pos: SourcePos;
  mod?: string;
  fun?: string;
  id: string;
  /** `{sls: name}`: every state declared in that file. */
  sls?: boolean;
}

function parseRef(v: unknown, pos: SourcePos): ParsedRef | string {
  if (typeof v === "string" || typeof v === "number") {
    const s = String(v);
    const m = /^([A-Za-z_]\w*)\.(\w+):(.+)$/.exec(s);
    if (m) return { text: s, pos, mod: m[1]!, fun: `${m[1]}.${m[2]}`, id: m[3]! };
    return { text: s, pos, id: s };
  }
  if (v && typeof v === "object" && !Array.isArray(v)) {
    const entries = Object.entries(v);
    if (entries.length !== 1) return "a requisite item is an id, module.function:id or {module: id}";
    const [k, target] = entries[0]!;
    if (typeof target !== "string" && typeof target !== "number") return `{${k}: ...} must name a state id`;
    const id = String(target);
    if (k === "sls") return { text: `sls: ${id}`, pos, id, sls: true };
    if (k.includes(".")) return { text: `${k}:${id}`, pos, mod: k.split(".")[0]!, fun: k, id };
    return { text: `${k}: ${id}`, pos, mod: k, id };
  }
  return "a requisite item is an id, module.function:id or {module: id}";
}

/** Requisite values must be lists; a single string is accepted as a list of one. */
function refItems(
  key: string,
  a: RawArg,
  diags: Diags,
  id: string,
): { value: unknown; pos: SourcePos }[] | undefined {
  if (Array.isArray(a.value)) return a.value.map((v, i) => ({ value: v, pos: a.itemPos?.[i] ?? a.pos }));
  if (typeof a.value === "string") return [{ value: a.value, pos: a.pos }];
  if (a.value && typeof a.value === "object") {
    diags.add(
      "requisite",
      a.pos,
      `${key} must be a list ("- ${key}:" then "  - module: id" items), not a map`,
      id,
    );
    return undefined;
  }
  diags.add("requisite", a.pos, `${key} must be a list of state references`, id);
  return undefined;
}

/**
 * onlyif/unless items. A scalar that is neither a command nor a {fun} call (`onlyif: True` from
 * `{{ cond }}`, a number, an empty value) is what Salt's _run_check_onlyif/_unless call a "bad
 * type": in onlyif it ends the checks and the state runs (earlier items still count); in unless
 * it marks "run" but a later true item marks "skip" again, so it only matters when it is the
 * last item (then unless can never skip). Warned, since the tree likely meant otherwise.
 */
function parseGuards(a: RawArg, diags: Diags, id: string, warnings: string[]): Guard[] {
  const items = Array.isArray(a.value) ? a.value : [a.value];
  const out: Guard[] = [];
  const badType = (v: unknown) =>
    v === null || v === undefined || typeof v === "boolean" || typeof v === "number";
  for (const [i, it] of items.entries()) {
    if (badType(it)) {
      const at = a.itemPos?.[i] ?? a.pos;
      const last = i === items.length - 1;
      const effect =
        a.key === "onlyif"
          ? "the state runs (Salt: bad type passed)"
          : last
            ? "unless never skips the state (Salt: bad type passed)"
            : "ignored (Salt: bad type passed)";
      warnings.push(
        `${at.file}:${at.line}:${at.col}: ${a.key}: ${JSON.stringify(it ?? null)} is not a command; ${effect}`,
      );
      if (a.key === "onlyif") return out;
      if (last) return [];
      continue;
    }
    if (typeof it === "string") out.push({ cmd: it });
    else if (it && typeof it === "object" && typeof (it as { fun?: unknown }).fun === "string") {
      const { fun, args, ...rest } = it as { fun: string; args?: unknown };
      const params: Params = { ...rest };
      if (args && typeof args === "object" && !Array.isArray(args)) Object.assign(params, args);
      out.push({ fun, args: params });
    } else
      diags.add(
        "param",
        a.pos,
        `${a.key} takes a shell command, a list of them, or {fun: module.function}`,
        id,
      );
  }
  return out;
}

function parseRetry(a: RawArg, diags: Diags, id: string): RetrySpec | undefined {
  if (a.value === false || a.value === null) return undefined;
  if (a.value === true) return { attempts: 2, interval: 30, until: true };
  if (a.value && typeof a.value === "object" && !Array.isArray(a.value)) {
    const r = a.value as Record<string, unknown>;
    const attempts = Number(r.attempts ?? 2);
    const interval = Number(r.interval ?? 30);
    if (!Number.isInteger(attempts) || attempts < 1 || !Number.isFinite(interval) || interval < 0) {
      diags.add("param", a.pos, "retry needs attempts >= 1 and interval >= 0 (seconds)", id);
      return undefined;
    }
    return { attempts, interval, until: r.until === undefined ? true : Boolean(r.until) };
  }
  diags.add("param", a.pos, "retry is true or {attempts, interval, until}", id);
  return undefined;
}

function parseOrder(a: RawArg, diags: Diags, id: string): number | undefined {
  if (a.value === "first") return Number.NEGATIVE_INFINITY;
  if (a.value === "last") return Number.POSITIVE_INFINITY;
  if (typeof a.value === "number" && Number.isFinite(a.value)) return a.value;
  diags.add("param", a.pos, `order is first, last or a number, got ${JSON.stringify(a.value)}`, id);
  return undefined;
}

/** Arguments `use` never copies: the state's own identity and position. */
const NOT_USED: ReadonlySet<string> = new Set(["name", "names", "use", "order"]);

function parseCheckCmd(a: RawArg, diags: Diags, id: string): string[] {
  const items = Array.isArray(a.value) ? a.value : [a.value];
  if (items.every((x) => typeof x === "string")) return items as string[];
  diags.add("param", a.pos, "check_cmd takes a shell command or a list of them", id);
  return [];
}

/**
 * Salt's state_auto_order: states are numbered in declaration order, a file's includes (depth
 * first, each file once) before its own states, the roots in the order given.
 */
function declarationOrder(
  states: RawState[],
  roots: readonly string[],
  includesOf: ReadonlyMap<string, readonly string[]>,
): RawState[] {
  const bySls = new Map<string, RawState[]>();
  for (const s of states) {
    const l = bySls.get(s.sls);
    if (l) l.push(s);
    else bySls.set(s.sls, [s]);
  }
  const out: RawState[] = [];
  const visited = new Set<string>();
  const visit = (ref: string) => {
    if (visited.has(ref)) return;
    visited.add(ref);
    for (const inc of includesOf.get(ref) ?? []) visit(inc);
    for (const s of bySls.get(ref) ?? []) out.push(s);
  };
  for (const r of roots) visit(r);
  for (const s of states) if (!visited.has(s.sls)) visit(s.sls);
  out.forEach((s, i) => {
    s.decl = i;
  });
  return out;
}

/** Applies `extend:` blocks: requisites are appended, other parameters replaced. */
function applyExtends(loader: Loader, states: RawState[]): void {
  const byIdFamily = new Map<string, RawState>();
  for (const s of states) byIdFamily.set(`${s.id}\u0000${s.fun.split(".")[0]}`, s);
  for (const { sls, node } of loader.extends) {
    for (const pair of node.items) {
      const id = keyText(pair);
      const decls: RawState[] = [];
      loader.parseStateDecl(sls, id, posOf(sls, pair.key as Node), pair.value as Node | null, decls, true);
      for (const ext of decls) {
        const target = byIdFamily.get(`${id}\u0000${ext.fun.split(".")[0]}`);
        if (!target) {
          loader.diags.add(
            "requisite",
            ext.pos,
            `extend: no state "${id}" using module "${ext.fun.split(".")[0]}"`,
            id,
          );
          continue;
        }
        for (const a of ext.args) {
          const i = target.args.findIndex((x) => x.key === a.key);
          if (
            (isRequisiteKind(a.key) || inRequisiteBase(a.key)) &&
            i >= 0 &&
            Array.isArray(target.args[i]!.value)
          ) {
            const prev = target.args[i]!.value as unknown[];
            const old = target.args[i]!;
            const added = Array.isArray(a.value) ? a.value : [a.value];
            target.args[i] = {
              ...old,
              value: [...prev, ...added],
              itemPos: [
                ...prev.map((_, k) => old.itemPos?.[k] ?? old.pos),
                ...added.map((_, k) => a.itemPos?.[k] ?? a.pos),
              ],
            };
          } else if (i >= 0) target.args[i] = a;
          else target.args.push(a);
        }
      }
    }
  }
}

/** `names:` turns one declaration into one state per name (each may carry its own overrides). */
function expandNames(states: RawState[], diags: Diags): RawState[] {
  const out: RawState[] = [];
  for (const s of states) {
    const names = s.args.find((a) => a.key === "names");
    if (!names) {
      out.push(s);
      continue;
    }
    if (!Array.isArray(names.value)) {
      diags.add("param", names.pos, "names must be a list", s.id);
      continue;
    }
    const rest = s.args.filter((a) => a.key !== "names");
    let nameOrder = 0;
    for (const item of names.value) {
      let name: string;
      const extra: RawArg[] = [];
      if (item && typeof item === "object" && !Array.isArray(item) && Object.keys(item).length === 1) {
        const [k, v] = Object.entries(item)[0]!;
        name = k;
        const overrides = Array.isArray(v) ? v : v && typeof v === "object" ? [v] : [];
        for (const o of overrides) {
          if (o && typeof o === "object") {
            for (const [ok, ov] of Object.entries(o)) extra.push({ key: ok, value: ov, pos: names.pos });
          }
        }
      } else if (typeof item === "string" || typeof item === "number") {
        name = String(item);
      } else {
        diags.add("param", names.pos, "names items are strings or {name: [overrides]}", s.id);
        continue;
      }
      const keys = new Set(extra.map((e) => e.key));
      out.push({
        ...s,
        id: name,
        nameOrder: ++nameOrder,
        args: [
          ...rest.filter((a) => !keys.has(a.key) && a.key !== "name"),
          { key: "name", value: name, pos: names.pos },
          ...extra,
        ],
      });
    }
  }
  return out;
}

/** Finds states by reference; all indexes are built once, so look-ups are O(1). */
class RefIndex {
  private readonly byName = new Map<string, number[]>();
  private readonly byId = new Map<string, number[]>();
  private readonly byModId = new Map<string, number[]>();
  private readonly byModName = new Map<string, number[]>();
  private readonly byPrimary = new Map<string, number[]>();
  private readonly bySls = new Map<string, number[]>();

  constructor(
    states: readonly { id: string; group: string; fun: string; sls?: string; primary?: unknown }[],
  ) {
    const add = (m: Map<string, number[]>, k: string, i: number) => {
      const l = m.get(k);
      if (!l) m.set(k, [i]);
      else if (l[l.length - 1] !== i) l.push(i);
    };
    states.forEach((s, i) => {
      const mod = s.fun.split(".")[0]!;
      add(this.byName, `${s.fun}:${s.id}`, i);
      add(this.byName, `${s.fun}:${s.group}`, i);
      add(this.byId, s.id, i);
      add(this.byId, s.group, i);
      add(this.byModId, `${mod}\u0000${s.id}`, i);
      add(this.byModId, `${mod}\u0000${s.group}`, i);
      if (s.sls !== undefined) add(this.bySls, s.sls, i);
      if (typeof s.primary === "string") {
        add(this.byModName, `${mod}\u0000${s.primary}`, i);
        add(this.byPrimary, s.primary, i);
      }
    });
  }

  find(r: ParsedRef): number[] {
    if (r.sls) return this.bySls.get(r.id) ?? [];
    if (r.fun) return this.byName.get(`${r.fun}:${r.id}`) ?? [];
    if (r.mod)
      return this.byModId.get(`${r.mod}\u0000${r.id}`) ?? this.byModName.get(`${r.mod}\u0000${r.id}`) ?? [];
    return this.byId.get(r.id) ?? this.byPrimary.get(r.id) ?? [];
  }

  ids(): IterableIterator<string> {
    return this.byId.keys();
  }
}

/**
 * Compiles the given raw states (already loaded) into a Program, or throws CompileError with
 * every diagnostic found, including the loader's. Steps, in Salt's order: extend, use, names,
 * resolve functions, per-state params and engine options, requisites, cycles.
 */
async function finish(loader: Loader, raw: RawState[]): Promise<Program> {
  const diags = loader.diags;
  applyExtends(loader, raw);
  applyUse(raw, diags);
  const states = expandNames(raw, diags);
  const { functions, failures } = await resolveFunctions(states);

  // Salt tells states apart by declaration ID and name together (its chunk tag), so one name
  // that two declarations' `names:` both expand to (the docker formula's shared package deps)
  // is two states, not a duplicate; the later one's name then carries its declaration ID.
  const seen = new Map<string, SourcePos>();
  const usedNames = new Set<string>();
  const compiled: CompiledState[] = [];
  const pending: PendingState[] = [];
  for (const s of states) {
    const name = `${s.fun}:${s.id}`;
    const key = `${s.fun}\u0000${s.group}\u0000${s.id}`;
    const dup = seen.get(key);
    if (dup) {
      diags.add(
        "duplicate",
        s.pos,
        `state ${name} is declared twice (first at ${dup.file}:${dup.line}:${dup.col})`,
        s.id,
      );
      continue;
    }
    seen.set(key, s.pos);
    const fn = functions.get(s.fun);
    if (!fn) {
      const why = failures.get(s.fun)!;
      diags.add(
        why.kind === "unknown-module" ? "unknown-module" : "unknown-function",
        s.pos,
        why.error,
        s.id,
      );
      continue;
    }
    const { state, engineArgs } = compileState(s, fn, compiled.length, diags);
    if (usedNames.has(state.name)) state.name = `${s.fun}:${s.group}:${s.id}`;
    usedNames.add(state.name);
    compiled.push(state);
    pending.push({ state, raw: s, args: engineArgs });
  }

  linkRequisites(pending, compiled, functions, diags);
  const graph = buildGraph(compiled);
  reportCycles(graph, compiled, diags);
  if (diags.list.length > 0) throw new CompileError(diags.list);
  const program: Program = { states: compiled, functions, graph };
  if (loader.loadedFacts) program.facts = loader.loadedFacts;
  return program;
}

interface PendingState {
  state: CompiledState;
  raw: RawState;
  /** Its engine keywords (requisites among them), linked once every state is compiled. */
  args: RawArg[];
}

/**
 * `use`: copy the non-requisite arguments of another state that this one does not set, guards
 * and other state options included, as Salt does.
 */
function applyUse(raw: RawState[], diags: Diags): void {
  const preIndex = new RefIndex(raw);
  for (const s of raw) {
    const use = s.args.find((a) => a.key === "use");
    if (!use) continue;
    const items = refItems("use", use, diags, s.id) ?? [];
    const have = new Set(s.args.map((a) => a.key));
    for (const it of items) {
      const r = parseRef(it.value, it.pos);
      if (typeof r === "string") {
        diags.add("requisite", it.pos, r, s.id);
        continue;
      }
      const found = preIndex.find(r);
      if (found.length === 0) {
        diags.add("requisite", it.pos, `use: no state matches "${r.text}"${suggestId(r.id, preIndex)}`, s.id);
        continue;
      }
      for (const a of raw[found[0]!]!.args) {
        if (NOT_USED.has(a.key) || isRequisiteKind(a.key) || inRequisiteBase(a.key) || have.has(a.key))
          continue;
        s.args.push(a);
        have.add(a.key);
      }
    }
  }
}

/** Each module family is loaded once; a function that does not resolve keeps why. */
async function resolveFunctions(states: readonly RawState[]): Promise<{
  functions: Map<string, StateFunction>;
  failures: Map<string, Extract<Resolved<StateFunction>, { ok: false }>>;
}> {
  const functions = new Map<string, StateFunction>();
  const failures = new Map<string, Extract<Resolved<StateFunction>, { ok: false }>>();
  for (const fun of new Set(states.map((s) => s.fun))) {
    const r = await resolveState(fun);
    if (r.ok) functions.set(fun, r.fn);
    else failures.set(fun, r);
  }
  return { functions, failures };
}

/**
 * The parameters a state function receives: its primary parameter defaulted to the state id
 * (unless given, or given by an alias), then aliases, types and defaults from its schema, then
 * the function's own cross-field `validate`. The
 * engine's one copy of this rule; module tests call it too (test/support/module-context.ts).
 */
export function stateParams(fn: StateFunction, id: string, args: Params): ValidatedParams {
  const withPrimary =
    args[fn.primary] === undefined && !hasAlias(fn, fn.primary, args) ? { ...args, [fn.primary]: id } : args;
  const v = validateParams(fn.params, withPrimary, { extra: fn.extraParams === true });
  // Cross-field rules only on params the schema accepted: they may rely on its types.
  if (v.issues.length === 0 && fn.validate) v.issues.push(...fn.validate(v.params));
  return v;
}

/** One state: module parameters validated, engine options (guards, order, retry, ...) parsed. */
function compileState(
  s: RawState,
  fn: StateFunction,
  index: number,
  diags: Diags,
): { state: CompiledState; engineArgs: RawArg[] } {
  const modArgs: Params = {};
  const argPos = new Map<string, SourcePos>();
  const engineArgs: RawArg[] = [];
  for (const a of s.args) {
    if (isEngineKey(a.key)) engineArgs.push(a);
    else {
      modArgs[a.key] = a.value;
      argPos.set(a.key, a.pos);
    }
  }
  const v = stateParams(fn, s.id, modArgs);
  const warnings: string[] = [];
  for (const issue of v.issues) {
    const at = argPos.get(issue.key) ?? s.pos;
    if (issue.unknown) {
      // Salt passes keys a state function does not know into its **kwargs and ignores them,
      // so trees carry such keys; they are reported, not fatal. A near-miss of a requisite or
      // engine keyword stays an error: it silently drops an ordering or a guard.
      const e = didYouMean(issue.key, engineKeyNames());
      if (e) {
        diags.add("param", at, `${s.fun}: unknown parameter "${issue.key}" (did you mean "${e}"?)`, s.id);
      } else {
        warnings.push(`${at.file}:${at.line}:${at.col}: ${s.fun}: ${issue.message}, ignored`);
      }
      continue;
    }
    diags.add("param", at, `${s.fun}: ${issue.message}`, s.id);
  }
  const state: CompiledState = {
    index,
    id: s.id,
    fun: s.fun,
    name: `${s.fun}:${s.id}`,
    sls: s.sls,
    pos: s.pos,
    params: v.params,
    requisites: [],
    onlyif: [],
    unless: [],
    autoOrder: s.decl ?? 0,
    failhard: false,
    parallel: false,
    checkCmd: [],
  };
  if (s.nameOrder !== undefined) state.nameOrder = s.nameOrder;
  applyEngineOptions(state, engineArgs, diags, warnings);
  if (warnings.length > 0) state.warnings = warnings;
  return { state, engineArgs };
}

/** The engine keywords that are options of the state itself (requisites are linked later). */
function applyEngineOptions(
  state: CompiledState,
  engineArgs: readonly RawArg[],
  diags: Diags,
  warnings: string[],
): void {
  const id = state.id;
  for (const a of engineArgs) {
    if (a.key === "onlyif") state.onlyif = parseGuards(a, diags, id, warnings);
    else if (a.key === "unless") state.unless = parseGuards(a, diags, id, warnings);
    else if (a.key === "order") {
      const o = parseOrder(a, diags, id);
      if (o !== undefined) state.order = o;
    } else if (a.key === "failhard") state.failhard = a.value === true;
    else if (a.key === "parallel") state.parallel = a.value === true;
    else if (a.key === "check_cmd") state.checkCmd = parseCheckCmd(a, diags, id);
    else if (a.key === "watch_drift") {
      if (typeof a.value === "boolean") state.watchDrift = a.value;
      else diags.add("param", a.pos, `watch_drift must be true or false, got ${JSON.stringify(a.value)}`, id);
    } else if (a.key === "retry") {
      const r = parseRetry(a, diags, id);
      if (r) state.retry = r;
    }
  }
}

/** Requisites, including the reversed `_in` forms, resolved against every compiled state. */
function linkRequisites(
  pending: readonly PendingState[],
  compiled: CompiledState[],
  functions: ReadonlyMap<string, StateFunction>,
  diags: Diags,
): void {
  const index = new RefIndex(
    compiled.map((c, i) => ({
      id: c.id,
      group: pending[i]!.raw.group,
      fun: c.fun,
      sls: c.sls,
      primary: c.params[primaryOf(functions, c.fun)],
    })),
  );
  for (const { state, args } of pending) {
    for (const a of args) {
      const base = isRequisiteKind(a.key) ? a.key : inRequisiteBase(a.key);
      if (!base) continue;
      const items = refItems(a.key, a, diags, state.id);
      if (!items) continue;
      for (const it of items) {
        const r = parseRef(it.value, it.pos);
        if (typeof r === "string") {
          diags.add("requisite", it.pos, r, state.id);
          continue;
        }
        const targets = index.find(r);
        if (targets.length === 0) {
          diags.add(
            "requisite",
            it.pos,
            `${a.key}: no state matches "${r.text}"${suggestId(r.id, index)}`,
            state.id,
          );
          continue;
        }
        if (a.key === base) {
          state.requisites.push({
            kind: base,
            ref: r.text,
            targets: targets.filter((t) => t !== state.index),
          });
          if (targets.includes(state.index))
            diags.add("cycle", it.pos, `${state.name} ${a.key}s itself`, state.id);
        } else {
          for (const t of targets) {
            if (t === state.index) continue;
            compiled[t]!.requisites.push({ kind: base, ref: state.name, targets: [state.index] });
          }
        }
      }
    }
  }
}

/** Every cycle, each with its path. */
function reportCycles(graph: Graph, compiled: readonly CompiledState[], diags: Diags): void {
  for (const cyc of graph.cycles) {
    const first = compiled[cyc[0]!]!;
    // Graph edges point from a state to what waits for it; print "X needs Y needs ... X".
    const path = [...cyc, cyc[0]!]
      .reverse()
      .map((i) => compiled[i]!.name)
      .join(" -> ");
    diags.add("cycle", first.pos, `requisite cycle: ${path} (each waits for the next)`, first.id);
  }
}

function primaryOf(functions: ReadonlyMap<string, StateFunction>, fun: string): string {
  return functions.get(fun)?.primary ?? "name";
}

function hasAlias(fn: StateFunction, param: string, args: Params): boolean {
  for (const a of fn.params[param]?.aliases ?? []) if (args[a] !== undefined) return true;
  return false;
}

function suggestId(id: string, index: RefIndex): string {
  const s = didYouMean(id, index.ids());
  return s ? ` (did you mean "${s}"?)` : "";
}

/** Compiles the named sls files (dotted refs) and everything they include. */
export async function compileSls(refs: readonly string[], opts: CompileOptions): Promise<Program> {
  const loader = new Loader(opts);
  await loader.load(refs.map((ref) => ({ ref })));
  return finish(loader, declarationOrder(loader.states, refs, loader.includesOf));
}

/** A one-state program from the command line: `zester local file.managed /etc/x mode=0644`. */
export async function compileInline(
  fun: string,
  id: string,
  args: Params,
  opts: CompileOptions,
): Promise<Program> {
  const loader = new Loader(opts);
  const pos: SourcePos = { file: "<command line>", line: 1, col: 1 };
  const raw: RawState = {
    id,
    group: id,
    fun,
    args: Object.entries(args).map(([key, value]) => ({ key, value, pos })),
    pos,
    sls: "",
    file: pos.file,
  };
  return finish(loader, [raw]);
}
