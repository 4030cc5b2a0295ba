/**
 * Who may receive `!encrypted` values: only peels chosen by their id. Facts (and so `G@`, bare
 * `key:value` words, `S@` on the peel's addresses, and anything top.zy's template computes from
 * facts or grains) are written by the peel itself, so a target built on them lets any peel
 * claim the fact and have the master seal the secrets to it: Salt's "never target pillar by
 * grains" problem. Zester refuses such a tree when it is published, pointing at the target in
 * top.zy, and refuses to seal by such a target if one slips past that check (a templated
 * top.zy), instead of documenting the risk.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { type Diagnostic, excerpt } from "../state/diagnostics.js";
import type { TargetNode } from "../target/ast.js";
import { parseTopTarget, TargetSyntaxError } from "../target/index.js";
import { hasTemplateSyntax } from "../template/render.js";
import { refLevels } from "../util/sls-files.js";
import { SecretError, SettingsError } from "./errors.js";
import { includeClosure } from "./includes.js";
import type { SettingsRef } from "./resolve.js";
import { type ExtractedSecret, secretIdsInFiles } from "./sanitize.js";
import { type SettingsFiles, TOP_FILES, toReader } from "./source.js";

/** The part of a target that reads peel-written data, or undefined when it looks at the id only. */
export function peelWrittenPart(node: TargetNode): string | undefined {
  switch (node.kind) {
    case "glob":
    case "regex":
    case "list":
      return undefined;
    case "data":
      return node.source === "facts" ? node.text : undefined;
    case "cidr":
      return `S@${node.cidr}`;
    case "not":
      return peelWrittenPart(node.child);
    case "and":
    case "or":
      for (const c of node.children) {
        const p = peelWrittenPart(c);
        if (p !== undefined) return p;
      }
      return undefined;
  }
}

function why(target: string, part: string, ref: string, files: string[]): string {
  return (
    `target ${JSON.stringify(target)} matches on ${part}, which each peel writes itself, and assigns ` +
    `${JSON.stringify(ref)}, whose files hold !encrypted values (${files.join(", ")}): any peel could ` +
    "claim that fact and receive them. Target secrets by peel id (glob, E@, L@) and keep " +
    "fact-targeted files free of !encrypted values"
  );
}

async function secretFilesOf(
  files: SettingsFiles,
  startFiles: string[],
  secrets: Readonly<Record<string, ExtractedSecret>>,
): Promise<string[]> {
  const closure = await includeClosure(toReader(files), startFiles);
  const ids = new Set(secretIdsInFiles(secrets, closure.files));
  return [
    ...new Set(
      Object.values(secrets)
        .filter((s) => ids.has(s.id))
        .map((s) => s.file),
    ),
  ];
}

/**
 * Publish-time check of a literal top.zy: every target that reads facts and reaches a file with
 * secrets is a SettingsError at its line and column. A templated top.zy is checked per peel
 * (refuseFactTargetedSecrets), since its targets exist only once rendered.
 */
export async function checkSecretTargets(
  files: Readonly<Record<string, string>>,
  secrets: Readonly<Record<string, ExtractedSecret>>,
): Promise<void> {
  const topFile = TOP_FILES.find((f) => files[f] !== undefined);
  const text = topFile === undefined ? undefined : files[topFile];
  if (
    topFile === undefined ||
    text === undefined ||
    Object.keys(secrets).length === 0 ||
    hasTemplateSyntax(text)
  )
    return;
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0 || !isMap(doc.contents)) return; // resolve.ts reports these
  const diags: Diagnostic[] = [];
  for (const env of doc.contents.items) {
    if (!isMap(env.value)) continue;
    for (const pair of env.value.items) {
      if (!isScalar(pair.key) || !isSeq(pair.value)) continue;
      const target = String(pair.key.value);
      let part: string | undefined;
      try {
        part = peelWrittenPart(parseTopTarget(target));
      } catch (err) {
        if (err instanceof TargetSyntaxError) continue;
        throw err;
      }
      if (part === undefined) continue;
      for (const item of pair.value.items) {
        if (!isScalar(item) || typeof item.value !== "string") continue;
        const ref = item.value;
        const start = refLevels(ref)
          .flat()
          .filter((f) => f in files);
        const held = await secretFilesOf(files, start, secrets);
        if (held.length === 0) continue;
        const p = lines.linePos(pair.key.range?.[0] ?? 0);
        diags.push({
          kind: "structure",
          file: topFile,
          line: p.line,
          col: p.col,
          message: why(target, part, ref, held),
          excerpt: excerpt(text, p.line, p.col),
        });
      }
    }
  }
  if (diags.length > 0) throw new SettingsError(diags);
}

/**
 * Seal-time check for one peel: a file with secrets that reached it through a fact-reading
 * target is refused (SecretError), so nothing is sealed for it.
 */
export async function refuseFactTargetedSecrets(
  files: SettingsFiles,
  refs: readonly SettingsRef[],
  secrets: Readonly<Record<string, ExtractedSecret>>,
): Promise<void> {
  if (Object.keys(secrets).length === 0) return;
  const read = toReader(files);
  let top = "";
  let topFile: string = TOP_FILES[0];
  for (const f of TOP_FILES) {
    const t = await read(f);
    if (t !== undefined) {
      top = t;
      topFile = f;
    }
  }
  // A template that reads facts decides the targets themselves from peel-written data.
  const templated =
    hasTemplateSyntax(top) && /\b(facts|grains)\b/.test(top) ? "facts in top.zy's template" : undefined;
  for (const r of refs) {
    let part: string | undefined = templated;
    try {
      part ??= peelWrittenPart(parseTopTarget(r.target));
    } catch {
      continue;
    }
    if (part === undefined) continue;
    const held = await secretFilesOf(files, [r.file], secrets);
    if (held.length > 0) throw new SecretError(`${topFile}: ${why(r.target, part, r.ref, held)}`);
  }
}
