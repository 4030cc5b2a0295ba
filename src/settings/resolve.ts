/**
 * Settings resolution on a peel: top.zy picks files by target expression, each file is rendered
 * (facts + the settings merged so far) and parsed, the results deep-merge in order (top.zy order,
 * then list order; later wins), and finally secret placeholders become plaintexts.
 */
import { type Document, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { saltGrains } from "../facts/grains.js";
import { type Diagnostic, type DiagnosticKind, excerpt } from "../state/diagnostics.js";
import { SALTENV, slsContext } from "../state/sls-context.js";
import { compilePredicate, parseTopTarget, TargetSyntaxError } from "../target/index.js";
import {
  type RendererOptions,
  type TemplateCall,
  TemplateError,
  TemplateRenderer,
} from "../template/render.js";
import { errText } from "../util/errors.js";
import { AmbiguousRefError, findRef, lookedFor } from "../util/sls-files.js";
import { SecretError, SettingsError } from "./errors.js";
import { includeClosure } from "./includes.js";
import { deepMerge, isPlainMap } from "./merge.js";
import { placeholder, placeholderPaths, substituteSecrets } from "./placeholders.js";
import { type ExtractedSecret, secretIdsInFiles } from "./sanitize.js";
import { refuseFactTargetedSecrets } from "./secret-targets.js";
import { type SettingsFileReader, type SettingsFiles, TOP_FILES, toReader } from "./source.js";
import { encryptedTag } from "./yaml-tag.js";

export interface SettingsTopOptions {
  /** The (sanitized) settings tree: a directory, a reader, or relative path → text. */
  files: SettingsFiles;
  facts: Readonly<Record<string, unknown>>;
  peelId: string;
}

export interface ResolveSettingsOptions extends SettingsTopOptions {
  /** Placeholder id → plaintext, from openPeelSecrets. Omitted: any placeholder is an error. */
  secrets?: Readonly<Record<string, string>>;
  /** Leave `ZESTER_SECRET[...]` placeholders as they are (master-side previews, targeting). */
  keepPlaceholders?: boolean;
  /** Masterless runs holding the master curve key: opens `!encrypted` values in unsanitized files. */
  openEncrypted?: (value: string) => string;
  /** `salt['mod.fn'](...)` in templates. */
  call?: TemplateCall;
}

/** One settings file top.zy assigns to the peel. */
export interface SettingsRef {
  /** Dotted name as written in top.zy, e.g. `common.base`. */
  ref: string;
  /** Relative path it resolved to, e.g. `common/base.sls` or `common/base/init.zy`. */
  file: string;
  /** The target expression that matched first. */
  target: string;
}

export interface ResolvedSettings {
  settings: Record<string, unknown>;
  refs: SettingsRef[];
}

const REF = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
/** Salt's `- match: <type>` list items; Zester's expressions already say how to match. */
const SALT_MATCH_TYPES: Readonly<Record<string, string | undefined>> = {
  compound: undefined,
  glob: undefined,
  grain: undefined,
  pcre: "use E@<regex> in the target instead of `match: pcre`",
  list: "use L@a,b in the target instead of `match: list`",
  pillar: "settings cannot be targeted by settings (I@) in the settings top.zy",
  ipcidr: "use S@<cidr> in the target instead of `match: ipcidr`",
};

class Collector {
  readonly diags: Diagnostic[] = [];
  add(kind: DiagnosticKind, file: string, text: string, line: number, col: number, message: string) {
    this.diags.push({
      kind,
      file,
      line,
      col,
      message,
      excerpt: text === "" ? undefined : excerpt(text, line, col),
    });
  }
}

interface Parsed {
  doc: Document;
  lines: LineCounter;
}

function parseYaml(
  file: string,
  text: string,
  out: Collector,
  open: ((value: string) => string) | undefined,
): Parsed | undefined {
  const lines = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: true,
    customTags: [encryptedTag(open)],
  });
  if (doc.errors.length === 0) return { doc, lines };
  for (const e of doc.errors) {
    const p = lines.linePos(e.pos[0]);
    out.add(
      "yaml",
      file,
      text,
      p.line,
      p.col,
      e.message.split("\n")[0]!.replace(/ at line \d+, column \d+.*$/, ""),
    );
  }
  return undefined;
}

async function render(
  renderer: TemplateRenderer,
  file: string,
  text: string,
  vars: Record<string, unknown>,
  out: Collector,
): Promise<string | undefined> {
  try {
    return await renderer.render(text, vars, file);
  } catch (err) {
    if (err instanceof TemplateError) {
      out.add("template", err.source, err.text ?? text, err.line, err.col, err.message);
    } else out.add("template", file, text, 1, 1, errText(err));
    return undefined;
  }
}

function nodeStart(node: unknown): number {
  return (node as Node | null)?.range?.[0] ?? 0;
}

async function readRef(
  read: SettingsFileReader,
  ref: string,
): Promise<{ file: string; text: string } | undefined> {
  const found = await findRef(ref, read);
  return found && { file: found.file, text: found.value };
}

interface TopResult {
  refs: SettingsRef[];
  texts: Map<string, string>;
}

async function matchTop(
  read: SettingsFileReader,
  opts: SettingsTopOptions,
  renderer: TemplateRenderer,
  out: Collector,
): Promise<TopResult> {
  const result: TopResult = { refs: [], texts: new Map() };
  const tops = await Promise.all(TOP_FILES.map(async (file) => ({ file, text: await read(file) })));
  const present = tops.filter((t) => t.text !== undefined);
  if (present.length > 1) {
    out.add("include", present[1]!.file, "", 1, 1, new AmbiguousRefError("top", TOP_FILES).message);
    return result;
  }
  if (present.length === 0) return result;
  const TOP_FILE = present[0]!.file;
  const text = await render(
    renderer,
    TOP_FILE,
    present[0]!.text!,
    { facts: opts.facts, grains: saltGrains(opts.facts), settings: {}, id: opts.peelId, saltenv: SALTENV },
    out,
  );
  if (text === undefined) return result;
  const parsed = parseYaml(TOP_FILE, text, out, undefined);
  if (!parsed) return result;
  const at = (node: unknown, offset = 0) => parsed.lines.linePos(nodeStart(node) + offset);
  const fail = (node: unknown, message: string, kind: DiagnosticKind = "structure", offset = 0) => {
    const p = at(node, offset);
    out.add(kind, TOP_FILE, text, p.line, p.col, message);
  };
  const root = parsed.doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) return result;
  if (!isMap(root)) {
    fail(root, `${TOP_FILE} must map the environment (base:) to targets`);
    return result;
  }
  const peel = { id: opts.peelId, facts: opts.facts as Record<string, unknown> };
  const seen = new Set<string>();
  for (const envPair of root.items) {
    const env = isScalar(envPair.key) ? String(envPair.key.value) : "";
    if (env !== "base") {
      fail(envPair.key, `unknown environment ${JSON.stringify(env)}: settings have one environment, base:`);
      continue;
    }
    const targets = envPair.value;
    if (targets === null || (isScalar(targets) && targets.value === null)) continue;
    if (!isMap(targets)) {
      fail(targets, "base: must map target expressions to lists of settings names");
      continue;
    }
    for (const pair of targets.items) {
      const keyNode = pair.key;
      const target = isScalar(keyNode) ? String(keyNode.value) : "";
      let matches: boolean;
      try {
        matches = compilePredicate(parseTopTarget(target))(peel);
      } catch (err) {
        if (!(err instanceof TargetSyntaxError)) throw err;
        const quoted =
          isScalar(keyNode) && (keyNode.type === "QUOTE_DOUBLE" || keyNode.type === "QUOTE_SINGLE");
        fail(keyNode, err.summary, "structure", (quoted ? 1 : 0) + err.column - 1);
        continue;
      }
      if (!isSeq(pair.value)) {
        fail(pair.value ?? keyNode, `target ${JSON.stringify(target)} must have a list of settings names`);
        continue;
      }
      const items: { ref: string; node: unknown }[] = [];
      for (const item of pair.value.items) {
        if (isScalar(item) && typeof item.value === "string") {
          if (REF.test(item.value)) items.push({ ref: item.value, node: item });
          else
            fail(
              item,
              `invalid settings name ${JSON.stringify(item.value)}: expected dotted names like common.base`,
            );
        } else if (
          isMap(item) &&
          item.items.length === 1 &&
          isScalar(item.items[0]!.key) &&
          item.items[0]!.key.value === "match"
        ) {
          const how = String((item.items[0]!.value as { value?: unknown } | null)?.value ?? "");
          if (!Object.hasOwn(SALT_MATCH_TYPES, how)) fail(item, `unknown match type ${JSON.stringify(how)}`);
          else if (SALT_MATCH_TYPES[how] !== undefined) fail(item, SALT_MATCH_TYPES[how]!);
        } else {
          fail(item, "list items under a target must be settings names such as common.base");
        }
      }
      if (!matches) continue;
      for (const { ref, node } of items) {
        if (seen.has(ref)) continue;
        seen.add(ref);
        let found: { file: string; text: string } | undefined;
        try {
          found = await readRef(read, ref);
        } catch (err) {
          if (!(err instanceof AmbiguousRefError)) throw err;
          fail(node, `settings ${err.message}`, "include");
          continue;
        }
        if (!found) {
          fail(node, `settings ${JSON.stringify(ref)} not found (looked for ${lookedFor(ref)})`, "include");
          continue;
        }
        result.refs.push({ ref, file: found.file, target });
        result.texts.set(found.file, found.text);
      }
    }
  }
  return result;
}

/** Where `{% include %}` and friends look: the directory, or the in-memory tree (a fetched one). */
function templateSource(files: SettingsFiles): Pick<RendererOptions, "searchPath" | "templates"> {
  if (typeof files === "string") return { searchPath: files };
  if (typeof files === "function") return {};
  return { templates: files };
}

/** The files top.zy assigns to a peel, in merge order. Throws SettingsError. */
export async function settingsTopRefs(
  opts: SettingsTopOptions & { call?: TemplateCall },
): Promise<SettingsRef[]> {
  const out = new Collector();
  const renderer = new TemplateRenderer({ ...templateSource(opts.files), call: opts.call });
  const top = await matchTop(toReader(opts.files), opts, renderer, out);
  if (out.diags.length > 0) throw new SettingsError(out.diags);
  return top.refs;
}

/** Like resolveSettings, and also says which files were merged. */
export async function resolveSettingsDetailed(opts: ResolveSettingsOptions): Promise<ResolvedSettings> {
  const out = new Collector();
  const renderer = new TemplateRenderer({ ...templateSource(opts.files), call: opts.call });
  const top = await matchTop(toReader(opts.files), opts, renderer, out);
  let settings: Record<string, unknown> = {};
  for (const ref of top.refs) {
    const source = top.texts.get(ref.file)!;
    const text = await render(
      renderer,
      ref.file,
      source,
      {
        ...slsContext(ref.ref, ref.file, typeof opts.files === "string" ? opts.files : "", opts.peelId),
        facts: opts.facts,
        grains: saltGrains(opts.facts),
        settings,
        id: opts.peelId,
      },
      out,
    );
    if (text === undefined) continue;
    const parsed = parseYaml(ref.file, text, out, opts.openEncrypted);
    if (!parsed) continue;
    let value: unknown;
    try {
      value = parsed.doc.toJS();
    } catch (err) {
      // e.g. an alias bomb: yaml refuses excessive alias expansion.
      out.add("yaml", ref.file, text, 1, 1, errText(err));
      continue;
    }
    if (value === null || value === undefined) continue;
    if (!isPlainMap(value)) {
      const p = parsed.lines.linePos(nodeStart(parsed.doc.contents));
      out.add(
        "structure",
        ref.file,
        text,
        p.line,
        p.col,
        "a settings file must be a mapping of keys to values",
      );
      continue;
    }
    settings = deepMerge(settings, value);
  }
  if (out.diags.length > 0) throw new SettingsError(out.diags);
  if (!opts.keepPlaceholders) {
    await explainUnsealable(opts, top, settings);
    settings = substituteSecrets(settings, opts.secrets);
  }
  return { settings, refs: top.refs };
}

/**
 * A placeholder with no sealed value that comes from none of the files the master could see
 * this peel needs (top.zy's files and what they include by a literal name) was pulled in by a
 * template name computed at render time. substituteSecrets would blame a changed top.zy match;
 * say what really happened and where, so the operator can write the name as a literal.
 */
async function explainUnsealable(
  opts: ResolveSettingsOptions,
  top: TopResult,
  settings: Record<string, unknown>,
): Promise<void> {
  const delivered = opts.secrets ?? {};
  const missing = placeholderPaths(settings).flatMap((p) =>
    p.ids.filter((id) => !Object.hasOwn(delivered, id)).map((id) => ({ path: p.path, id })),
  );
  if (missing.length === 0) return;
  const closure = await includeClosure(
    toReader(opts.files),
    top.refs.map((r) => r.file),
    top.texts,
  );
  if (closure.dynamic.length === 0) return;
  const inClosure = (id: string) => [...closure.texts.values()].some((t) => t.includes(placeholder(id)));
  const outside = missing.filter((m) => !inClosure(m.id));
  if (outside.length === 0) return;
  // Only an in-memory tree can be searched for the file a placeholder came from (the peel's).
  const all = typeof opts.files === "object" ? (opts.files as Readonly<Record<string, string>>) : undefined;
  const from = (id: string) => {
    if (!all) return "";
    const file = Object.keys(all).find((f) => all[f]!.includes(placeholder(id)));
    return file === undefined ? "" : ` (in ${file})`;
  };
  const tags = closure.dynamic.map((d) => `  ${d.file}:${d.line}:${d.col}: ${d.tag}`);
  const n = outside.length;
  throw new SecretError(
    `${n} settings value${n === 1 ? "" : "s"} reference a secret the master did not seal for this peel:\n` +
      `${outside.map((m) => `  ${m.path}: ${placeholder(m.id)}${from(m.id)}`).join("\n")}\n` +
      "it comes from a file loaded through a template name computed at render time, which the master " +
      "cannot follow: it seals only the secrets of the files top.zy assigns and of the files they " +
      "include, import or extend by a literal name. Name the file as a string literal " +
      `(e.g. {% include "common/secrets.zy" %}) in:\n${tags.join("\n")}`,
    [...new Set(outside.map((m) => m.path))],
  );
}

/**
 * Resolves a peel's settings. Throws SettingsError (file:line:column of every template, YAML,
 * top.zy or missing-file problem) or SecretError (key paths whose secret cannot be delivered).
 */
export async function resolveSettings(opts: ResolveSettingsOptions): Promise<Record<string, unknown>> {
  return (await resolveSettingsDetailed(opts)).settings;
}

/**
 * Master side: the secrets a peel needs, i.e. those extracted from the files its top.zy matches
 * (judged with the facts the master knows) and from every file those reach through a literal
 * `{% include %}`, `{% import %}`, `{% from %}` or `{% extends %}` name, recursively. Only these
 * are sealed into the peel's blob. A name computed at render time cannot be followed here; the
 * peel explains that when the value turns up unsealed (explainUnsealable).
 */
export async function peelSecretIds(
  opts: SettingsTopOptions & { secrets: Readonly<Record<string, ExtractedSecret>> },
): Promise<string[]> {
  const refs = await settingsTopRefs(opts);
  await refuseFactTargetedSecrets(opts.files, refs, opts.secrets);
  const closure = await includeClosure(
    toReader(opts.files),
    refs.map((r) => r.file),
  );
  return secretIdsInFiles(opts.secrets, closure.files);
}
