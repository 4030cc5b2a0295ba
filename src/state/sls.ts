/**
 * Loading one .sls or .zy file: locate it from a dotted reference, render it if it holds template syntax,
 * parse the YAML keeping positions. Nothing here knows about modules or requisites.
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Document, LineCounter } from "yaml";
import { isENOENT } from "../util/files.js";
import { findRef } from "../util/sls-files.js";
import type { Diagnostic } from "./diagnostics.js";
import { excerpt } from "./diagnostics.js";

export interface LoadedSls {
  /** Dotted reference, e.g. `web.nginx`. */
  ref: string;
  /** Path relative to the states dir, e.g. `web/nginx/init.sls`; used in every diagnostic. */
  file: string;
  /** Text after rendering (what the YAML positions refer to). */
  text: string;
  doc: Document.Parsed;
  lines: LineCounter;
}

/** Resolves `.sibling` / `..parent` relative includes against the including sls. */
export function resolveRelativeRef(ref: string, from: string, fromIsInit: boolean): string {
  if (!ref.startsWith(".")) return ref;
  const dots = /^\.+/.exec(ref)![0].length;
  const pkg = from.split(".");
  // `a/b/init.sls` is package a.b; `a/b.sls` lives in package a.
  if (!fromIsInit) pkg.pop();
  for (let i = 1; i < dots; i++) pkg.pop();
  const rest = ref.slice(dots);
  return [...pkg, ...(rest ? [rest] : [])].filter((p) => p !== "").join(".");
}

/**
 * What a compile read, so a cached compile can be reused only while every file is unchanged and
 * every probed-but-absent file is still absent.
 */
export class CompileTracker {
  /** Path relative to the states dir → "mtime:size:ino", or null for "looked, not there". */
  readonly files = new Map<string, string | null>();
  usedFacts = false;
  /** False once something not captured by `files` influenced the result (salt[...] calls, Jinja includes). */
  cacheable = true;
}

export function stampOf(st: { mtimeMs: number; size: number; ino: number }): string {
  return `${st.mtimeMs}:${st.size}:${st.ino}`;
}

/** Reads the file of a dotted ref (see util/sls-files.ts); throws AmbiguousRefError. */
export async function readSls(
  statesDir: string,
  ref: string,
  track?: CompileTracker,
): Promise<{ file: string; text: string } | undefined> {
  const found = await findRef(ref, async (file) => {
    const path = join(statesDir, file);
    try {
      // Stat before reading: a change after the stat shows up as a new stamp next time.
      const st = await stat(path);
      const text = await readFile(path, "utf8");
      track?.files.set(file, stampOf(st));
      return text;
    } catch (err) {
      if (!isENOENT(err) && (err as NodeJS.ErrnoException).code !== "ENOTDIR") throw err;
      track?.files.set(file, null);
      return undefined;
    }
  });
  return found && { file: found.file, text: found.value };
}

/** Parses YAML 1.2 keeping offsets; YAML errors become diagnostics (all of them). */
export async function parseSls(
  ref: string,
  file: string,
  text: string,
  diags: Diagnostic[],
): Promise<LoadedSls | undefined> {
  const { LineCounter, parseDocument } = await import("yaml");
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const p = lines.linePos(e.pos[0]);
      diags.push({
        kind: "yaml",
        file,
        line: p.line,
        col: p.col,
        message: e.message.split("\n")[0]!.replace(/ at line \d+, column \d+.*$/, ""),
        excerpt: excerpt(text, p.line, p.col),
      });
    }
    return undefined;
  }
  return { ref, file, text, doc, lines };
}
