/**
 * `inotify` (alias `file`): changes under paths, through fs.watch (inotify on Linux).
 * `files: {/etc/nginx/nginx.conf: {mask: [modify]}, /srv/www: {recurse: true}}`. Data:
 * `{path, change}` with Salt's change names (IN_MODIFY, IN_CREATE, IN_DELETE).
 *
 * A file is watched through its directory, so editors that replace a file (write a temp, rename
 * it over) are seen like in-place writes, and a file that does not exist yet is seen when it
 * appears. A burst of the same change to the same path (a write in several syscalls) is one
 * event, reported once the path has been quiet for 50 ms.
 */
import { type FSWatcher, watch } from "node:fs";
import { stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { errText } from "../../util/errors.js";
import { isENOENT } from "../../util/files.js";
import { suggestion } from "../../util/suggest.js";
import { type BeaconModule, boolOption, isMapping } from "./types.js";

export type FileChange = "IN_MODIFY" | "IN_CREATE" | "IN_DELETE";

const MASKS: Readonly<Record<string, FileChange>> = {
  modify: "IN_MODIFY",
  close_write: "IN_MODIFY",
  attrib: "IN_MODIFY",
  create: "IN_CREATE",
  moved_to: "IN_CREATE",
  delete: "IN_DELETE",
  moved_from: "IN_DELETE",
};
const PATH_KEYS = ["mask", "recurse", "exclude"] as const;
const COALESCE_MS = 50;

export interface WatchSpec {
  path: string;
  recurse: boolean;
  changes: ReadonlySet<FileChange>;
  exclude: readonly string[];
}

/**
 * Watches many paths with one fs.watch per directory (files are watched through their parent),
 * so 1,000 files in a few directories cost a few inotify watches and no polling at all.
 */
export class PathWatcher {
  private readonly watchers: FSWatcher[] = [];
  private readonly quiet = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  /** `coalesceMs`: report a burst of one change to one path once it has been quiet that long (0: every event). */
  constructor(
    specs: readonly WatchSpec[],
    private readonly onChange: (path: string, change: FileChange, spec: WatchSpec) => void,
    private readonly onError: (err: unknown) => void,
    private readonly coalesceMs = 0,
  ) {
    const files = new Map<string, Map<string, WatchSpec>>();
    for (const s of specs) {
      const abs = resolve(s.path);
      if (s.recurse) {
        this.open(
          abs,
          true,
          (name) => join(abs, name),
          () => s,
        );
        continue;
      }
      const dir = dirname(abs);
      const m = files.get(dir) ?? new Map<string, WatchSpec>();
      files.set(dir, m);
      m.set(basename(abs), s);
    }
    for (const [dir, names] of files) {
      this.open(
        dir,
        false,
        (name) => join(dir, name),
        (name) => names.get(name),
      );
    }
  }

  private open(
    dir: string,
    recursive: boolean,
    full: (name: string) => string,
    specOf: (name: string) => WatchSpec | undefined,
  ): void {
    let w: FSWatcher;
    try {
      w = watch(dir, { recursive, persistent: false }, (event, name) => {
        if (this.stopped || name === null) return;
        const spec = specOf(String(name));
        if (!spec) return;
        void this.classify(full(String(name)), event, spec);
      });
    } catch (err) {
      this.onError(new Error(`cannot watch ${dir}: ${errText(err)}`));
      return;
    }
    w.on("error", (err) => this.onError(new Error(`watching ${dir}: ${errText(err)}`)));
    this.watchers.push(w);
  }

  private async classify(path: string, event: string, spec: WatchSpec): Promise<void> {
    if (spec.exclude.some((e) => path.startsWith(e))) return;
    let change: FileChange = "IN_MODIFY";
    if (event === "rename") {
      try {
        await stat(path);
        change = "IN_CREATE";
      } catch (err) {
        if (!isENOENT(err)) return;
        change = "IN_DELETE";
      }
    }
    if (!spec.changes.has(change) || this.stopped) return;
    if (this.coalesceMs <= 0) {
      this.onChange(path, change, spec);
      return;
    }
    const key = `${change} ${path}`;
    clearTimeout(this.quiet.get(key));
    this.quiet.set(
      key,
      setTimeout(() => {
        this.quiet.delete(key);
        if (!this.stopped) this.onChange(path, change, spec);
      }, this.coalesceMs),
    );
  }

  close(): void {
    this.stopped = true;
    for (const t of this.quiet.values()) clearTimeout(t);
    this.quiet.clear();
    for (const w of this.watchers) w.close();
    this.watchers.length = 0;
  }
}

function parseSpec(path: string, raw: unknown): WatchSpec {
  const o = raw === null || raw === undefined ? {} : raw;
  if (!path.startsWith("/")) throw new Error(`files: ${JSON.stringify(path)} is not an absolute path`);
  if (!isMapping(o)) throw new Error(`files.${path} must be a mapping`);
  for (const k of Object.keys(o)) {
    if (!(PATH_KEYS as readonly string[]).includes(k))
      throw new Error(`files.${path}: unknown option "${k}"${suggestion(k, PATH_KEYS)}`);
  }
  const masks = o.mask === undefined ? ["create", "delete", "modify"] : o.mask;
  if (!Array.isArray(masks)) throw new Error(`files.${path}.mask must be a list (modify, create, delete)`);
  const changes = new Set<FileChange>();
  for (const m of masks) {
    const c = MASKS[String(m).toLowerCase()];
    if (!c)
      throw new Error(
        `files.${path}.mask: unknown change "${String(m)}"${suggestion(String(m), Object.keys(MASKS))}`,
      );
    changes.add(c);
  }
  const exclude = o.exclude === undefined ? [] : o.exclude;
  if (!Array.isArray(exclude)) throw new Error(`files.${path}.exclude must be a list of paths`);
  return {
    path,
    recurse: boolOption(o.recurse, `files.${path}.recurse`, false),
    changes,
    exclude: exclude.map(String),
  };
}

export const beacon: BeaconModule = {
  doc: "Changes under paths (fs.watch): `files: {/etc/motd: {mask: [modify]}}`; data {path, change}.",
  keys: ["files"],
  create(options) {
    const raw = options.files;
    if (!isMapping(raw) || Object.keys(raw).length === 0)
      throw new Error("files must map paths to options ({} for defaults)");
    const specs = Object.entries(raw).map(([p, o]) => parseSpec(p, o));
    return {
      watch(emit, fail) {
        const w = new PathWatcher(specs, (path, change) => emit({ path, change }), fail, COALESCE_MS);
        return () => w.close();
      },
    };
  },
};
