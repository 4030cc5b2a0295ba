/**
 * The files a settings file pulls in through Jinja (`{% include %}`, `{% import %}`,
 * `{% from ... import %}`, `{% extends %}`). The master needs them to seal a peel the secrets of
 * every file its settings can reach, not only those top.zy names; the peel needs them to explain
 * a secret that could not be sealed.
 *
 * Found with the template engine's own parser rather than a regex over the source: a regex would also match
 * tags inside `{% raw %}` blocks and comments, and could not tell a literal name from an
 * expression such as `"a" ~ b`.
 */
import { posix } from "node:path";
import { hasTemplateSyntax } from "../template/render.js";
import type { SettingsFileReader } from "./source.js";

/** A template reference whose name is an expression: the master cannot know what it loads. */
export interface DynamicInclude {
  /** Settings file holding the tag (relative path). */
  file: string;
  /** 1-based position of the tag's keyword. */
  line: number;
  col: number;
  /** The tag as written, e.g. `{% include name ~ ".zy" %}`. */
  tag: string;
}

interface FileRefs {
  /** Literal template names, as written. */
  names: string[];
  dynamic: Omit<DynamicInclude, "file">[];
}

export interface IncludeClosure {
  /** The start files and every file they reach through literal names, each once, in visit order. */
  files: string[];
  /** File → its text, for every file in `files`. */
  texts: Map<string, string>;
  /** References by expression, in the files above. */
  dynamic: DynamicInclude[];
}

/**
 * Resolves a template name as the template loader does: `./x` and `../x` relative to the including
 * file, anything else relative to the settings root. Undefined for a name that leaves the root
 * (or is absolute): those are never read.
 */
export function resolveTemplateName(from: string, name: string): string | undefined {
  if (name === "" || name.includes("\\") || name.includes("\0") || posix.isAbsolute(name)) return undefined;
  const relative = name.startsWith("./") || name.startsWith("../");
  const joined = posix.normalize(relative ? posix.join(posix.dirname(from), name) : name);
  if (joined === "." || joined === ".." || joined.startsWith("../") || joined.endsWith("/")) return undefined;
  return joined;
}

/** Parsed once per text: a master seals every peel from the same tree. */
const parsedRefs = new Map<string, FileRefs>();
const PARSED_CACHE_MAX = 4096;

/** The text of the tag around a 0-based position: from the `{%` before it to the `%}` after. */
function tagAt(text: string, line0: number, col0: number): string {
  const lines = text.split("\n");
  let at = 0;
  for (let i = 0; i < line0 && i < lines.length; i++) at += lines[i]!.length + 1;
  at += col0;
  const open = text.lastIndexOf("{%", at);
  const close = text.indexOf("%}", at);
  if (open < 0 || close < 0) return "";
  return text.slice(open, close + 2).replace(/\s+/g, " ");
}

async function refsOf(text: string): Promise<FileRefs> {
  if (!hasTemplateSyntax(text)) return { names: [], dynamic: [] };
  const hit = parsedRefs.get(text);
  if (hit) return hit;
  const { templateReferences } = await import("../template/references.js");
  // A file that does not parse fails on the peel with its own template error; nothing to follow.
  const refs = templateReferences(text) ?? { names: [], dynamic: [] };
  const out: FileRefs = {
    names: refs.names,
    dynamic: refs.dynamic.map((d) => ({ ...d, tag: tagAt(text, d.line - 1, d.col - 1) })),
  };
  if (parsedRefs.size >= PARSED_CACHE_MAX) parsedRefs.clear();
  parsedRefs.set(text, out);
  return out;
}

/**
 * Follows literal template names from `start`, recursively, each file once (so cycles end).
 * Reads only through `read`, i.e. inside the settings tree; a name that resolves to no file is
 * skipped (rendering reports it where it matters).
 */
export async function includeClosure(
  read: SettingsFileReader,
  start: Iterable<string>,
  known: ReadonlyMap<string, string> = new Map(),
): Promise<IncludeClosure> {
  const result: IncludeClosure = { files: [], texts: new Map(), dynamic: [] };
  const queue = [...start];
  const seen = new Set(queue);
  while (queue.length > 0) {
    const file = queue.shift()!;
    const text = known.get(file) ?? (await read(file));
    if (text === undefined) continue;
    result.files.push(file);
    result.texts.set(file, text);
    const refs = await refsOf(text);
    for (const d of refs.dynamic) result.dynamic.push({ file, ...d });
    for (const name of refs.names) {
      const target = resolveTemplateName(file, name);
      if (target === undefined || seen.has(target)) continue;
      seen.add(target);
      queue.push(target);
    }
  }
  return result;
}
