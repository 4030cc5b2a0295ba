/**
 * The reactor directory (`top.zy` + reaction files) published to the `reactor-files` bucket by
 * the lease holder, like the states tree, and read back by every master. A rule set that does not
 * check out is never published: the last good one stays live, and the caller says so.
 */
import { readFile } from "node:fs/promises";
import type { KV } from "@nats-io/kv";
import {
  type FileTreePublishResult,
  fetchTreeFiles,
  kvSource,
  publishFileTree,
  readLiveTree,
} from "../bus/file-tree.js";
import { scanTree } from "../master/state-publisher.js";
import { hasTemplateSyntax } from "../template/render.js";
import { parseReaction } from "./actions.js";
import { ReactorFileError, type ReactorProblem } from "./errors.js";
import { parseRules, type Rule, TOP_FILE } from "./rules.js";

export const DEFAULT_REACTOR_DIR = "/srv/zester/reactor";

export interface ReactorTree {
  /** The bucket revision it came from (0: not from the bucket). */
  rev: number;
  files: Record<string, string>;
  rules: Rule[];
}

/** Every problem of a tree: top.zy's, and those of reaction files that need no event to check. */
export function checkReactorFiles(files: Readonly<Record<string, string>>): {
  rules: Rule[];
  problems: ReactorProblem[];
} {
  const problems: ReactorProblem[] = [];
  const paths = new Set(Object.keys(files));
  let rules: Rule[] = [];
  const top = files[TOP_FILE];
  if (top === undefined) {
    problems.push({
      file: TOP_FILE,
      line: 1,
      col: 1,
      message: "top.zy is missing: the reactor has no rules",
    });
  } else {
    try {
      rules = parseRules(top, paths);
    } catch (err) {
      if (!(err instanceof ReactorFileError)) throw err;
      problems.push(...err.problems);
    }
  }
  for (const path of new Set(rules.flatMap((r) => r.reactions))) {
    const text = files[path]!;
    if (hasTemplateSyntax(text)) continue;
    try {
      parseReaction(text, path);
    } catch (err) {
      if (!(err instanceof ReactorFileError)) throw err;
      problems.push(...err.problems);
    }
  }
  return { rules, problems };
}

export interface ReactorPublishResult extends FileTreePublishResult {
  /** Set when the directory did not check out and the live tree was kept. */
  problems?: ReactorProblem[];
}

export class ReactorPublisher {
  constructor(
    private readonly kv: KV,
    private readonly dir: string,
    private readonly masterId: string,
  ) {}

  async publish(): Promise<ReactorPublishResult> {
    const scanned = (await scanTree(this.dir)) ?? [];
    const texts: Record<string, string> = {};
    const bytes = new Map<string, Uint8Array>();
    for (const f of scanned) {
      const data = await readFile(f.abs);
      bytes.set(f.path, data);
      texts[f.path] = data.toString("utf8");
    }
    if (scanned.length > 0) {
      const { problems } = checkReactorFiles(texts);
      if (problems.length > 0) {
        const live = await readLiveTree(this.kv).catch(() => undefined);
        return {
          published: false,
          rev: live?.revision.rev ?? 0,
          files: live ? Object.keys(live.manifest.files).length : 0,
          blobsWritten: 0,
          blobsDeleted: 0,
          reason: "the reactor dir has errors",
          problems,
        };
      }
    }
    return publishFileTree(
      this.kv,
      scanned.map((f) => ({ path: f.path, sha256: f.sha256, size: f.size, read: () => bytes.get(f.path)! })),
      { master: this.masterId, emptyReason: `reactor dir ${this.dir} is missing or empty` },
    );
  }
}

/** The live tree from the bucket with its rules; undefined when none was published. */
export async function loadReactorTree(kv: KV): Promise<ReactorTree | undefined> {
  const live = await readLiveTree(kv);
  if (!live) return undefined;
  const files: Record<string, string> = {};
  await fetchTreeFiles(kvSource(kv), live.manifest, (path, _e, data) => {
    files[path] = Buffer.from(data).toString("utf8");
  });
  // Published trees were checked; a tree that fails now (an older build's) runs no rules.
  const { rules, problems } = checkReactorFiles(files);
  if (problems.length > 0) throw new ReactorFileError(problems);
  return { rev: live.revision.rev, files, rules };
}
