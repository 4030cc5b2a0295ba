/**
 * Highstate: `top.sls` (or `top.zy`) maps targets to sls lists, with the CLI's target grammar (a bare
 * `key:value` is a fact match) and Salt's `- match: grain|glob|pcre|list|compound` items.
 */
import { isMap, isSeq } from "yaml";
import { saltGrains } from "../facts/grains.js";
import {
  compileTarget,
  type ParseOptions,
  parseTarget,
  parseTopTarget,
  peelIdsOnly,
  type TargetNode,
  TargetSyntaxError,
} from "../target/index.js";
import { type TemplateError, TemplateRenderer } from "../template/render.js";
import { AmbiguousRefError } from "../util/sls-files.js";
import { type CompileOptions, compileSls, type Facts, type Program } from "./compile.js";
import { CompileError, type Diagnostic, excerpt } from "./diagnostics.js";
import { readNodegroups } from "./nodegroups.js";
import { CompileTracker, parseSls, readSls } from "./sls.js";
import { minimalOpts, SALTENV } from "./sls-context.js";

type MatchType = "glob" | "grain" | "pcre" | "list" | "compound" | "nodegroup";

/**
 * A top.zy target in the CLI's grammar (src/target): `key:value` means a fact match; Salt's
 * `- match:` item picks another reading of the same text.
 */
function topTarget(target: string, how: MatchType | undefined, opts: ParseOptions): TargetNode {
  switch (how) {
    case "pcre":
      return parseTarget(`E@${target}`, opts);
    case "list":
      return parseTarget(`L@${target}`, opts);
    case "grain":
      return parseTarget(`G@${target}`, opts);
    case "nodegroup":
      return parseTarget(`N@${target}`, opts);
    case "glob":
      return parseTarget(target, opts);
    default:
      return parseTopTarget(target, opts);
  }
}

/** The sls refs top.zy assigns to this peel, in file order, without duplicates. */
export async function topRefs(
  opts: CompileOptions & { peelId?: string },
): Promise<{ refs: string[]; facts: Facts | undefined }> {
  const diags: Diagnostic[] = [];
  const track = opts.track ?? new CompileTracker();
  let found: { file: string; text: string } | undefined;
  try {
    found = await readSls(opts.statesDir, "top", track);
  } catch (err) {
    if (!(err instanceof AmbiguousRefError)) throw err;
    throw new CompileError([{ kind: "include", file: err.files[0]!, line: 1, col: 1, message: err.message }]);
  }
  if (!found) {
    throw new CompileError([
      {
        kind: "include",
        file: "top.sls",
        line: 1,
        col: 1,
        message: `no top.sls or top.zy in ${opts.statesDir}`,
      },
    ]);
  }
  // Facts only when top.zy needs them: a templated top, fact matching, or no --id.
  let facts: Facts | undefined;
  const getFacts = async () => {
    track.usedFacts = true;
    facts ??= await opts.facts();
    return facts;
  };
  let text = found.text;
  try {
    if (/\{[{%#]/.test(text)) {
      if (/\{%-?\s*(include|import|from|extends)\b/.test(text)) track.cacheable = false;
      const facts = await getFacts();
      text = await new TemplateRenderer({ searchPath: opts.statesDir }).render(
        text,
        {
          facts,
          grains: saltGrains(facts),
          settings: opts.settings,
          saltenv: SALTENV,
          opts: minimalOpts(opts.statesDir, opts.peelId ?? (facts.id as string | undefined)),
        },
        found.file,
      );
    }
  } catch (err) {
    const e = err as TemplateError;
    throw new CompileError([
      { kind: "template", file: found.file, line: e.line ?? 1, col: e.col ?? 1, message: e.message },
    ]);
  }
  const sls = await parseSls("top", found.file, text, diags);
  if (!sls) throw new CompileError(diags);
  const id = opts.peelId ?? String((await getFacts()).id ?? "");
  const refs: string[] = [];
  const seen = new Set<string>();
  const root = sls.doc.contents;
  const fail = (node: unknown, message: string) => {
    const p = sls.lines.linePos((node as { range?: number[] } | null)?.range?.[0] ?? 0);
    diags.push({
      kind: "structure",
      file: found.file,
      line: p.line,
      col: p.col,
      message,
      excerpt: excerpt(text, p.line, p.col),
    });
  };
  if (!isMap(root)) {
    fail(root, `${found.file} must map environments (base:) to targets`);
    throw new CompileError(diags);
  }
  const base = root.get("base", true);
  if (base !== undefined && !isMap(base)) fail(base, "base: must map targets to lists of sls names");
  if (isMap(base)) {
    // N@name: the master's nodegroups, published with this tree (src/state/nodegroups.ts).
    const nodegroups = await readNodegroups(opts.statesDir, track);
    const parseOpts: ParseOptions = nodegroups ? { nodegroups } : {};
    for (const pair of base.items) {
      const target = String((pair.key as { value?: unknown }).value ?? pair.key);
      if (!isSeq(pair.value)) {
        fail(pair.value ?? pair.key, `target "${target}" must have a list of sls names`);
        continue;
      }
      const items = pair.value.toJSON() as unknown[];
      let how: MatchType | undefined;
      const list: string[] = [];
      for (const it of items) {
        if (typeof it === "string") list.push(it);
        else if (it && typeof it === "object" && "match" in it)
          how = String((it as { match: unknown }).match) as MatchType;
      }
      let node: TargetNode;
      try {
        node = topTarget(target, how, parseOpts);
      } catch (err) {
        if (!(err instanceof TargetSyntaxError)) throw err;
        fail(pair.key, `target "${target}": ${err.summary}`);
        continue;
      }
      const byId = peelIdsOnly(node);
      const hit = byId
        ? byId.matchId(id)
        : compileTarget(node).match({ id, facts: await getFacts(), settings: opts.settings });
      if (!hit) continue;
      for (const r of list) {
        if (!seen.has(r)) {
          seen.add(r);
          refs.push(r);
        }
      }
    }
  }
  if (diags.length > 0) throw new CompileError(diags);
  return { refs, facts };
}

/** Compiles everything top.zy assigns to this peel. */
export async function compileHighstate(opts: CompileOptions & { peelId?: string }): Promise<Program> {
  const { refs, facts } = await topRefs(opts);
  const program = await compileSls(refs, facts ? { ...opts, facts: async () => facts } : opts);
  if (facts && !program.facts) program.facts = facts;
  return program;
}
