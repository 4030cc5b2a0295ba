/**
 * The `file` family: file contents, permissions and in-place surgery on existing files.
 *
 * Every state reads the system once in plan(), computes the exact result (new bytes, modes,
 * owners) and hands back an apply() that writes exactly that, atomically. Only ENOENT means a path
 * is absent; any other error while reading fails the state with the error in the comment.
 */
import { createHash } from "node:crypto";
import type { Stats } from "node:fs";
import {
  chmod,
  chown,
  copyFile,
  lchown,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  rename,
  rm,
  symlink,
  utimes,
} from "node:fs/promises";
import { dirname, isAbsolute, join, normalize, resolve, sep } from "node:path";
import { saltGrains } from "../facts/grains.js";
import { colonGet } from "../template/context.js";
import { errnoText } from "../util/errors.js";
import { run } from "../util/exec.js";
import { isENOENT, statOrUndefined, writeFileAtomic } from "../util/files.js";
import { unifiedDiff } from "./diff.js";
import { localSource, onePath } from "./footprints.js";
import {
  applying,
  bool,
  ensureNewline,
  escapeRe,
  failed,
  guard,
  joinText,
  listParam,
  lstatOrUndefined,
  StateError,
  splitText,
  str,
  unchanged,
  withRevertDocs,
} from "./support.js";
import type {
  ExecFunction,
  ModuleContext,
  ModuleFamily,
  ParamSpec,
  Params,
  Plan,
  StateFunction,
  Undo,
} from "./types.js";

// ---------------------------------------------------------------------------------------------
// Helpers shared by the states below.

function absPath(params: Params, key = "name"): string {
  const p = str(params, key);
  if (!p) throw new StateError(`${key} is required`);
  if (!isAbsolute(p)) throw new StateError(`${key} must be an absolute path, got "${p}"`);
  return normalize(p);
}

/**
 * Parses a file mode. Digits are always octal: "0644", "644", 644 (YAML reads unquoted 0644 as
 * the number 644) and "0o644" all mean rw-r--r--. Anything else is an error, never a guess.
 */
export function parseMode(value: unknown, key = "mode"): number | undefined {
  if (value === undefined || value === null) return undefined;
  let text: string;
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value < 0) throw new StateError(`${key}: ${value} is not a file mode`);
    text = String(value);
  } else if (typeof value === "string") {
    text = value.trim();
  } else {
    throw new StateError(`${key} must be a string like "0644"`);
  }
  const m = /^(?:0o|0)?([0-7]{1,4})$/i.exec(text);
  if (!m) {
    const hint =
      typeof value === "number" && /[89]/.test(text)
        ? ' (it looks like an octal literal YAML already converted; quote it: "0644")'
        : ' (write it in octal, e.g. "0644")';
    throw new StateError(`${key}: ${JSON.stringify(value)} is not a valid file mode${hint}`);
  }
  const mode = Number.parseInt(m[1]!, 8);
  if (typeof value === "number" && !plausibleNumericMode(mode)) {
    // YAML 1.2 turns 0o644 into 420, which would otherwise be read as 0420 without a word.
    const hint =
      value <= 0o7777
        ? ` (YAML reads 0o${value.toString(8)} as ${value}); quote it: "0${value.toString(8)}"`
        : "";
    throw new StateError(`${key}: the number ${value} is ambiguous as a file mode${hint}`);
  }
  return mode;
}

/**
 * Unquoted numbers are trusted only when they look like real modes: permissions that narrow from
 * owner to group to others (0644, 0750, 1777). A 0o literal YAML already converted (420 for 0o644,
 * 511 for 0o777) fails this test; such modes must be quoted.
 */
function plausibleNumericMode(mode: number): boolean {
  const owner = (mode >> 6) & 7;
  const group = (mode >> 3) & 7;
  const other = mode & 7;
  if (mode === 0o511) return false;
  return (group & ~owner) === 0 && (other & ~group) === 0;
}

export function formatMode(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, "0")}`;
}

type Db = "passwd" | "group";

/** Resolves a user or group name (or numeric id) through NSS, so LDAP/sssd users work too. */
async function lookupId(db: Db, value: unknown): Promise<number> {
  if (typeof value === "number" && Number.isInteger(value) && value >= 0) return value;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text);
  const res = await run(["getent", db, text]);
  const id = res.retcode === 0 ? Number(res.stdout.split(":")[2]) : Number.NaN;
  if (!Number.isInteger(id))
    throw new StateError(`${db === "passwd" ? "user" : "group"} "${text}" does not exist`);
  return id;
}

async function idName(db: Db, id: number): Promise<string> {
  const res = await run(["getent", db, String(id)]).catch(() => undefined);
  const name = res?.retcode === 0 ? res.stdout.split(":")[0] : undefined;
  return name || String(id);
}

/** Ownership and permission bits a state wants; undefined fields are left as they are. */
interface Meta {
  mode?: number;
  uid?: number;
  gid?: number;
}

async function wantedMeta(params: Params, modeKey: string | undefined = "mode"): Promise<Meta> {
  const meta: Meta = {};
  if (modeKey) {
    const mode = parseMode(params[modeKey], modeKey);
    if (mode !== undefined) meta.mode = mode;
  }
  if (params.user !== undefined && params.user !== null) meta.uid = await lookupId("passwd", params.user);
  if (params.group !== undefined && params.group !== null) meta.gid = await lookupId("group", params.group);
  return meta;
}

/** The metadata changes needed to go from `st` (undefined = new) to `want`, for reporting. */
async function metaChanges(st: Stats | undefined, want: Meta): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  if (want.mode !== undefined && (!st || (st.mode & 0o7777) !== want.mode)) {
    out.mode = st ? { old: formatMode(st.mode), new: formatMode(want.mode) } : formatMode(want.mode);
  }
  if (want.uid !== undefined && (!st || st.uid !== want.uid)) {
    const name = await idName("passwd", want.uid);
    out.user = st ? { old: await idName("passwd", st.uid), new: name } : name;
  }
  if (want.gid !== undefined && (!st || st.gid !== want.gid)) {
    const name = await idName("group", want.gid);
    out.group = st ? { old: await idName("group", st.gid), new: name } : name;
  }
  return out;
}

async function applyMeta(path: string, want: Meta, symlinkItself = false): Promise<void> {
  if (want.uid !== undefined || want.gid !== undefined) {
    await (symlinkItself ? lchown : chown)(path, want.uid ?? -1, want.gid ?? -1);
  }
  // chmod after chown: chown clears setuid/setgid bits.
  if (want.mode !== undefined && !symlinkItself) await chmod(path, want.mode);
}

/** The paths a plan changes (each once, in order), for `state.revert`. */
function undoPaths(...paths: string[]): Undo {
  return { refs: [...new Set(paths)].map((key) => ({ kind: "file" as const, key })) };
}

/** A catch handler that fails the state with what could not be done to which path. */
function cannot(what: string, path: string): (err: unknown) => never {
  return (err) => {
    throw new StateError(`Cannot ${what} ${path}: ${errnoText(err)}`);
  };
}

/** Reads a file; undefined only when it does not exist. */
function readOrUndefined(path: string): Promise<Buffer | undefined> {
  return readFile(path).catch((err) => (isENOENT(err) ? undefined : cannot("read", path)(err)));
}

function statStrict(path: string): Promise<Stats | undefined> {
  return statOrUndefined(path).catch(cannot("stat", path));
}

function lstatStrict(path: string): Promise<Stats | undefined> {
  return lstatOrUndefined(path).catch(cannot("stat", path));
}

/**
 * Fails the plan early when the parent directory is missing and makedirs is off. A dry run
 * (`test`) does not fail on it, as Salt's test mode does not: an earlier state (the package that
 * owns the directory) may create it, and the real run still fails if none does.
 */
async function checkParent(path: string, makedirs: boolean, test = false): Promise<void> {
  const parent = dirname(path);
  const st = await statStrict(parent);
  if (!st) {
    if (!makedirs && !test)
      throw new StateError(`Parent directory ${parent} does not exist (set makedirs: true)`);
    return;
  }
  if (!st.isDirectory()) throw new StateError(`Parent ${parent} exists but is not a directory`);
}

function isText(buf: Buffer): boolean {
  if (buf.includes(0)) return false;
  return Buffer.from(buf.toString("utf8"), "utf8").equals(buf);
}

/** Diff text for reports; binary data gets a one-line note instead. */
function contentDiff(path: string, before: Buffer | undefined, after: Buffer): string {
  const old = before ?? Buffer.alloc(0);
  if (!isText(old) || !isText(after)) return `Binary file ${path} differs\n`;
  return unifiedDiff(old.toString("utf8"), after.toString("utf8"), before ? path : "/dev/null", path);
}

function backupName(path: string, now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  return `${path}.${stamp}.bak`;
}

function wantsBackup(params: Params): boolean {
  const b = params.backup;
  if (b === undefined || b === null || b === false || b === "") return false;
  if (b === true || b === "minion" || b === "sibling") return true;
  throw new StateError(
    `backup must be true or "minion" (a sibling copy <name>.<timestamp>.bak), got ${String(b)}`,
  );
}

interface WriteSpec {
  path: string;
  data: Buffer;
  existing: Stats | undefined;
  want: Meta;
  backup: boolean;
  makedirs: boolean;
}

/** Writes new contents atomically, keeping the old file's mode and owner unless told otherwise. */
async function writeContents(spec: WriteSpec): Promise<void> {
  const { path, data, existing, want } = spec;
  if (spec.makedirs) await mkdir(dirname(path), { recursive: true });
  if (existing && spec.backup) await copyFile(path, backupName(path));
  const mode = want.mode ?? (existing ? existing.mode & 0o7777 : undefined);
  await writeFileAtomic(path, data, mode === undefined ? {} : { mode });
  // The rename gives the new inode our (root's) ownership; put the old owner back.
  const uid = want.uid ?? existing?.uid;
  const gid = want.gid ?? existing?.gid;
  await applyMeta(path, { uid, gid, mode } as Meta);
}

/**
 * The real file behind a symlink, so managing a link edits its target (Salt's follow_symlinks),
 * and its stat (undefined: absent). One `lstat` when the path is not a link (nearly always):
 * `realpath` alone costs a `readlink` per path component, and the stat after it one more call.
 * A symlinked parent directory needs no resolving: writes go through it anyway.
 */
async function followLinks(path: string): Promise<{ real: string; st: Stats | undefined }> {
  const lst = await lstatStrict(path);
  if (!lst?.isSymbolicLink()) return { real: path, st: lst };
  const real = await realpath(path).catch((err) => (isENOENT(err) ? path : cannot("resolve", path)(err)));
  return { real, st: await statStrict(real) };
}

function toLines(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) return value.map((x) => String(x)).join("\n");
  return String(value);
}

/** Resolves `salt://x`, relative and absolute sources to a local path. */
function sourcePath(src: string, ctx: ModuleContext): string {
  if (/^(https?|ftp|s3):\/\//i.test(src)) throw new StateError(`Remote source ${src} is not supported`);
  let rel: string | undefined;
  if (src.startsWith("salt://")) rel = src.slice("salt://".length);
  else if (src.startsWith("file://")) return normalize(src.slice("file://".length));
  else if (isAbsolute(src)) return normalize(src);
  else rel = src;
  if (!ctx.statesDir) throw new StateError(`Source ${src} is relative but no states directory is known`);
  const root = resolve(ctx.statesDir);
  const full = resolve(root, rel);
  if (full !== root && !full.startsWith(root + sep))
    throw new StateError(`Source ${src} escapes the states tree`);
  return full;
}

/** First source that exists (Salt's list-of-sources fallback): its path and the source as written. */
async function firstSource(
  sources: readonly string[],
  ctx: ModuleContext,
): Promise<{ path: string; url: string }> {
  for (const s of sources) {
    const path = sourcePath(s, ctx);
    if (await statStrict(path)) return { path, url: s };
  }
  throw new StateError(`Source not found: ${sources.join(", ")}`);
}

async function renderIf(
  template: string | undefined,
  text: string,
  params: Params,
  ctx: ModuleContext,
  source: { path: string; url: string | null },
): Promise<string> {
  if (!template) return text;
  if (template !== "jinja") throw new StateError(`template: only "jinja" is supported, got "${template}"`);
  // Salt renders file templates with the state's own arguments in the context, under the
  // defaults and the explicit context (`source` is the source as written, e.g. salt://x.tmpl).
  const extra = {
    name: params.name,
    source: source.url,
    user: params.user ?? null,
    group: params.group ?? null,
    mode: params.mode ?? null,
    attrs: params.attrs ?? null,
    saltenv: "base",
    ...((params.defaults as Record<string, unknown>) ?? {}),
    ...((params.context as Record<string, unknown>) ?? {}),
  };
  try {
    return await ctx.render(text, extra, source.path);
  } catch (err) {
    throw new StateError(`Template ${source.path} failed to render: ${errnoText(err)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Shared parameter specs.

const PATH: ParamSpec = {
  type: "string",
  doc: "Absolute path to manage.",
  required: true,
  aliases: ["path"],
};
const MODE: ParamSpec = {
  type: ["string", "integer"],
  doc: 'Permission bits in octal: "0644", "644" or 644 (digits are always read as octal).',
};
const USER: ParamSpec = { type: ["string", "integer"], doc: "Owner, by name or numeric uid." };
const GROUP: ParamSpec = { type: ["string", "integer"], doc: "Group, by name or numeric gid." };
const MAKEDIRS: ParamSpec = { type: "boolean", doc: "Create missing parent directories.", default: false };
const BACKUP: ParamSpec = {
  type: ["string", "boolean"],
  doc: 'Before changing an existing file keep a copy next to it as <name>.<timestamp>.bak (true or "minion").',
};
const SHOW_CHANGES: ParamSpec = {
  type: "boolean",
  doc: "Include a unified diff of the content change in the result.",
  default: true,
  // Salt's older spelling, still in published formulas.
  aliases: ["show_diff"],
};

// ---------------------------------------------------------------------------------------------
// In-place text edits (append, line, replace, blockreplace, comment, keyvalue) share one shape:
// read the file, compute the new text, diff, write it back atomically.

type Edit = { text: string; comment?: string } | { error: string };

interface EditOptions {
  /** What to do when the file does not exist. */
  missing: "fail" | "create" | "ok";
  makedirs?: boolean;
  params: Params;
  /** Comment when nothing changes. */
  same: string;
}

async function planEdit(path: string, opts: EditOptions, edit: (old: string) => Edit): Promise<Plan> {
  const { real, st } = await followLinks(path);
  if (st && !st.isFile()) return failed(`${path} exists but is not a regular file`);
  const buf = st ? await readOrUndefined(real) : undefined;
  if (!buf) {
    if (opts.missing === "fail") return failed(`${path} does not exist`);
    if (opts.missing === "ok") return unchanged(`${path} does not exist; nothing to do`);
    await checkParent(real, opts.makedirs ?? false);
  }
  if (buf && !isText(buf)) return failed(`${path} is not a text file`);
  const old = buf?.toString("utf8") ?? "";
  const res = edit(old);
  if ("error" in res) return failed(res.error);
  if (buf && res.text === old) return unchanged(res.comment ?? opts.same);
  const backup = wantsBackup(opts.params);
  const showChanges = bool(opts.params, "show_changes", true);
  const data = Buffer.from(res.text, "utf8");
  const plan: Plan = {
    changes: { content: buf ? "updated" : "created" },
    comment: buf ? `${path} would be updated` : `${path} would be created`,
    undo: undoPaths(real),
    apply: applying(
      async () => {
        await writeContents({
          path: real,
          data,
          existing: st,
          want: {},
          backup,
          makedirs: opts.makedirs ?? false,
        });
        return undefined;
      },
      res.comment ?? (buf ? `${path} updated` : `${path} created`),
    ),
  };
  if (showChanges) plan.diff = contentDiff(path, buf, data);
  return plan;
}

/** plan() of an edit state: the path is `name`; `options` may word its comments with it. */
function editPlan(
  params: Params,
  options: (path: string) => Omit<EditOptions, "params">,
  edit: (old: string) => Edit,
): Promise<Plan> {
  return guard(async () => {
    const path = absPath(params);
    return planEdit(path, { ...options(path), params }, edit);
  });
}

/**
 * Compiles a Python-flavoured regex (Salt trees are written for Python's `re`) into a JS RegExp:
 * `(?P<n>...)` named groups and `(?P=n)` backreferences are translated.
 */
function pyRegex(pattern: string, flags: string): RegExp {
  const src = pattern
    .replace(/\(\?P<([A-Za-z_]\w*)>/g, "(?<$1>")
    .replace(/\(\?P=([A-Za-z_]\w*)\)/g, "\\k<$1>");
  try {
    return new RegExp(src, flags);
  } catch (err) {
    throw new StateError(`Invalid regular expression ${JSON.stringify(pattern)}: ${errnoText(err)}`);
  }
}

/** Python-style replacement (`\1`, `\g<name>`) to JS (`$1`, `$<name>`). */
function pyRepl(repl: string): string {
  return repl.replace(
    /\\g<([A-Za-z_]\w*|\d+)>|\\(\d+)/g,
    (_m, g: string | undefined, n: string | undefined) => {
      if (g !== undefined) return /^\d+$/.test(g) ? `$${g}` : `$<${g}>`;
      return `$${n}`;
    },
  );
}

/** Expands `$1`, `$<name>`, `$&` and `$$` for one match (String.replace callback arguments). */
function expandRepl(repl: string, args: readonly unknown[]): string {
  const last = args[args.length - 1];
  const groups =
    typeof last === "object" && last !== null ? (last as Record<string, string | undefined>) : undefined;
  const caps = args.slice(1, groups ? -3 : -2) as Array<string | undefined>;
  return repl.replace(/\$(\$|&|\d{1,2}|<([^>]*)>)/g, (tok, what: string, name: string | undefined) => {
    if (what === "$") return "$";
    if (what === "&") return args[0] as string;
    if (name !== undefined) return groups?.[name] ?? "";
    const i = Number(what);
    return i >= 1 && i <= caps.length ? (caps[i - 1] ?? "") : tok;
  });
}

const FLAG_MAP: Record<string, string> = {
  IGNORECASE: "i",
  I: "i",
  MULTILINE: "m",
  M: "m",
  DOTALL: "s",
  S: "s",
  UNICODE: "u",
  U: "u",
};

function regexFlags(value: unknown): string {
  if (value === undefined || value === null) return "m";
  if (typeof value === "number") {
    // Python's re flag bits: IGNORECASE=2, MULTILINE=8, DOTALL=16.
    return (value & 2 ? "i" : "") + (value & 8 ? "m" : "") + (value & 16 ? "s" : "");
  }
  const names = Array.isArray(value) ? value.map(String) : String(value).split(/[|,\s]+/);
  let out = "";
  for (const n of names.filter(Boolean)) {
    const f = FLAG_MAP[n.toUpperCase()];
    if (!f) throw new StateError(`Unknown regex flag "${n}" (use IGNORECASE, MULTILINE, DOTALL)`);
    if (!out.includes(f)) out += f;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// file.managed

/** `contents_pillar` / `contents_grains`: the contents come from a settings or grains key. */
function contentsFrom(params: Params, ctx: ModuleContext): string | undefined {
  for (const [key, data] of [
    ["contents_pillar", () => ctx.settings],
    ["contents_grains", () => saltGrains(ctx.facts)],
  ] as const) {
    const path = params[key];
    if (path === undefined || path === null) continue;
    const value = colonGet(data(), String(path));
    if (value === undefined || value === null) throw new StateError(`${key}: no value at "${String(path)}"`);
    return toLines(typeof value === "object" && !Array.isArray(value) ? JSON.stringify(value) : value);
  }
  return undefined;
}

async function planManaged(params: Params, ctx: ModuleContext): Promise<Plan> {
  const path = absPath(params);
  const fromData = contentsFrom(params, ctx);
  if (fromData !== undefined && params.contents !== undefined)
    return failed("Set one of contents, contents_pillar and contents_grains");
  const contents = fromData ?? toLines(params.contents);
  const sources =
    params.source === undefined || params.source === null ? undefined : listParam(params.source);
  if (contents !== undefined && sources) return failed("Set either contents or source, not both");
  const template = str(params, "template");
  const makedirs = bool(params, "makedirs", false);
  const replace = bool(params, "replace", true);
  const create = bool(params, "create", true);
  const want = await wantedMeta(params);

  const { real, st } = await followLinks(path);
  if (st && !st.isFile()) return failed(`${path} exists but is not a regular file`);
  if (!st) {
    if (!create) return unchanged(`${path} does not exist and create is false`);
    await checkParent(real, makedirs, ctx.test);
  }

  let data: Buffer | undefined;
  if (contents !== undefined) {
    let text = await renderIf(template, contents, params, ctx, { path: `${ctx.id}:contents`, url: null });
    if (bool(params, "contents_newline", true)) text = ensureNewline(text);
    data = Buffer.from(text, "utf8");
  } else if (sources) {
    const src = await firstSource(sources, ctx);
    const raw = await readOrUndefined(src.path);
    if (!raw) return failed(`Source ${src.path} does not exist`);
    data = template
      ? Buffer.from(await renderIf(template, raw.toString("utf8"), params, ctx, src), "utf8")
      : raw;
  }

  const old = st ? ((await readOrUndefined(real)) ?? Buffer.alloc(0)) : undefined;
  const changes: Record<string, unknown> = {};
  let diff: string | undefined;
  // replace: false means "create with this content, never touch the content afterwards".
  let newData: Buffer | undefined;
  if (!st) newData = data ?? Buffer.alloc(0);
  else if (data !== undefined && replace && !old?.equals(data)) newData = data;
  if (newData) {
    changes.content = st ? "updated" : "created";
    if (bool(params, "show_changes", true)) diff = contentDiff(path, old, newData);
  }
  Object.assign(changes, await metaChanges(st, want));
  if (Object.keys(changes).length === 0) return unchanged(`File ${path} is in the correct state`);

  const backup = wantsBackup(params);
  const plan: Plan = {
    changes,
    comment: !st ? `File ${path} would be created` : `File ${path} would be updated`,
    undo: undoPaths(real),
    apply: applying(
      async () => {
        if (newData) await writeContents({ path: real, data: newData, existing: st, want, backup, makedirs });
        else await applyMeta(real, want);
        return undefined;
      },
      !st ? `File ${path} created` : `File ${path} updated`,
    ),
  };
  if (diff) plan.diff = diff;
  return plan;
}

const TEMPLATE: ParamSpec = {
  type: "string",
  doc: "Render the content as a template before comparing; only `jinja` is supported.",
  enum: ["jinja"],
};
const CONTEXT: ParamSpec = { type: "map", doc: "Variables for the template (override `defaults`)." };
const DEFAULTS: ParamSpec = { type: "map", doc: "Default variables for the template." };

const managed: StateFunction = {
  doc:
    "Ensures a file exists with the given contents (inline `contents` or a `source` file), mode and owner. " +
    "Reports a unified diff of content changes; writes are atomic.",
  primary: "name",
  footprint: onePath("name", (p) => ({ reads: localSource(p) })),
  params: {
    name: PATH,
    contents: {
      type: ["string", "list"],
      doc: "Inline file contents; a list is joined with newlines.",
      aliases: ["content"],
    },
    contents_pillar: {
      type: "string",
      doc: "Colon path of a setting (pillar) whose value is the contents, e.g. `locale:conf`.",
    },
    contents_grains: { type: "string", doc: "Colon path of a grain whose value is the contents." },
    source: {
      type: ["string", "list"],
      doc: "Source file: absolute path, path relative to the states tree, or salt://path. A list uses the first that exists.",
    },
    template: TEMPLATE,
    context: CONTEXT,
    defaults: DEFAULTS,
    mode: MODE,
    user: USER,
    group: GROUP,
    makedirs: MAKEDIRS,
    backup: BACKUP,
    replace: {
      type: "boolean",
      doc: "When false, an existing file's contents are never changed (only created).",
      default: true,
    },
    create: { type: "boolean", doc: "When false, do nothing if the file does not exist.", default: true },
    contents_newline: {
      type: "boolean",
      doc: "Make sure inline contents end with a newline.",
      default: true,
    },
    show_changes: SHOW_CHANGES,
  },
  plan: (params, ctx) => guard(() => planManaged(params, ctx)),
};

// ---------------------------------------------------------------------------------------------
// file.directory

interface Entry {
  path: string;
  rel: string;
  st: Stats;
}

/** Lists a tree (lstat, symlinks are not followed), parents before children. */
async function walk(root: string, rel = ""): Promise<Entry[]> {
  const out: Entry[] = [];
  let names: string[];
  try {
    names = (await readdir(join(root, rel))).sort();
  } catch (err) {
    throw new StateError(`Cannot list ${join(root, rel)}: ${errnoText(err)}`);
  }
  for (const n of names) {
    const r = rel ? join(rel, n) : n;
    const path = join(root, r);
    const st = await lstatStrict(path);
    if (!st) continue;
    out.push({ path, rel: r, st });
    if (st.isDirectory()) out.push(...(await walk(root, r)));
  }
  return out;
}

async function planDirectory(params: Params, ctx: ModuleContext): Promise<Plan> {
  const path = absPath(params);
  const makedirs = bool(params, "makedirs", false);
  // Salt: `mode` stands for dir_mode only when dir_mode is not given (the users formula gives
  // both, and dir_mode wins), and file_mode falls back to the directory's mode.
  const dirModeKey = params.dir_mode !== undefined && params.dir_mode !== null ? "dir_mode" : "mode";
  const dirMeta = await wantedMeta(params, dirModeKey);
  const fileMode = parseMode(params.file_mode, "file_mode") ?? dirMeta.mode;
  const recurse = listParam(params.recurse);
  for (const r of recurse) {
    if (!["user", "group", "mode", "ignore_files", "ignore_dirs"].includes(r)) {
      return failed(`recurse: unknown item "${r}" (use user, group, mode, ignore_files, ignore_dirs)`);
    }
  }
  if (bool(params, "clean", false)) {
    return failed("clean is not supported by file.directory; use file.recurse with clean: true");
  }

  const st = await lstatStrict(path);
  if (st && !st.isDirectory()) return failed(`${path} exists but is not a directory`);
  if (!st) await checkParent(path, makedirs, ctx.test);
  const changes: Record<string, unknown> = {};
  if (!st) changes.directory = "created";
  Object.assign(changes, await metaChanges(st, dirMeta));

  // Recursion: each entry below the directory gets the recursive subset of the wanted metadata.
  const fixes: Array<{ path: string; want: Meta }> = [];
  if (st && recurse.length > 0) {
    const ignoreFiles = recurse.includes("ignore_files");
    const ignoreDirs = recurse.includes("ignore_dirs");
    const recurseChanges: Record<string, unknown> = {};
    for (const e of await walk(path)) {
      if (e.st.isSymbolicLink()) continue;
      const isDir = e.st.isDirectory();
      if ((isDir && ignoreDirs) || (!isDir && ignoreFiles)) continue;
      const want: Meta = {};
      if (recurse.includes("user") && dirMeta.uid !== undefined) want.uid = dirMeta.uid;
      if (recurse.includes("group") && dirMeta.gid !== undefined) want.gid = dirMeta.gid;
      if (recurse.includes("mode")) {
        const mode = isDir ? dirMeta.mode : fileMode;
        if (mode !== undefined) want.mode = mode;
      }
      const c = await metaChanges(e.st, want);
      if (Object.keys(c).length > 0) {
        recurseChanges[e.rel] = c;
        fixes.push({ path: e.path, want });
      }
    }
    if (fixes.length > 0) changes.recurse = recurseChanges;
  }
  if (Object.keys(changes).length === 0) return unchanged(`Directory ${path} is in the correct state`);
  return {
    changes,
    comment: st ? `Directory ${path} would be updated` : `Directory ${path} would be created`,
    undo: undoPaths(path, ...fixes.map((f) => f.path)),
    apply: applying(
      async () => {
        if (!st) await mkdir(path, { recursive: makedirs, mode: dirMeta.mode ?? 0o755 });
        await applyMeta(path, dirMeta);
        for (const f of fixes) await applyMeta(f.path, f.want);
        return undefined;
      },
      st ? `Directory ${path} updated` : `Directory ${path} created`,
    ),
  };
}

const directory: StateFunction = {
  doc: "Ensures a directory exists with the given mode and owner, optionally applied recursively.",
  primary: "name",
  footprint: onePath(),
  params: {
    name: PATH,
    user: USER,
    group: GROUP,
    dir_mode: { ...MODE, doc: "Mode of the directory (and of subdirectories with recurse: [mode])." },
    mode: { ...MODE, doc: "Stands for dir_mode when dir_mode is not given (dir_mode wins, as in Salt)." },
    file_mode: {
      ...MODE,
      doc: "Mode of files below the directory, with recurse: [mode]; defaults to the directory's mode.",
    },
    makedirs: MAKEDIRS,
    recurse: {
      type: ["list", "string"],
      items: "string",
      doc: "Apply ownership/mode to everything below: any of user, group, mode, ignore_files, ignore_dirs.",
    },
    clean: {
      type: "boolean",
      doc: "Not supported here (fails if true): use file.recurse with clean to prune a tree.",
      default: false,
    },
  },
  plan: (params, ctx) => guard(() => planDirectory(params, ctx)),
};

// ---------------------------------------------------------------------------------------------
// file.absent

async function planAbsent(params: Params): Promise<Plan> {
  const path = absPath(params);
  if (path === "/") return failed("Refusing to remove /");
  const st = await lstatStrict(path);
  if (!st) return unchanged(`${path} is already absent`);
  const kind = st.isDirectory() ? "directory" : st.isSymbolicLink() ? "symlink" : "file";
  return {
    changes: { removed: path },
    comment: `Would remove ${kind} ${path}`,
    undo:
      kind === "directory" && (await readdir(path)).length > 0
        ? { cannot: "a removed directory tree is not kept" }
        : undoPaths(path),
    apply: applying(async () => {
      await rm(path, { recursive: st.isDirectory(), force: true });
      return undefined;
    }, `Removed ${kind} ${path}`),
  };
}

const absent: StateFunction = {
  doc: "Ensures a file, symlink or directory (recursively) does not exist.",
  primary: "name",
  footprint: onePath(),
  params: { name: PATH },
  plan: (params) => guard(() => planAbsent(params)),
};

// ---------------------------------------------------------------------------------------------
// file.append

function planAppend(params: Params): Promise<Plan> {
  return guard(async () => {
    const path = absPath(params);
    const items = listParam(params.text);
    if (items.length === 0) return failed("text is required");
    return planEdit(
      path,
      {
        missing: "create",
        makedirs: bool(params, "makedirs", false),
        params,
        same: `${path}: text already present`,
      },
      (old) => {
        const have = new Set(splitText(old).lines);
        let text = old;
        const added: string[] = [];
        for (const item of items) {
          const block = item.replace(/\n$/, "");
          const present = block.includes("\n") ? text.includes(block) : have.has(block);
          if (present) continue;
          text = ensureNewline(text) + block + "\n";
          for (const l of block.split("\n")) have.add(l);
          added.push(block);
        }
        return {
          text,
          comment: added.length > 0 ? `Appended ${added.length} item(s) to ${path}` : undefined,
        };
      },
    );
  });
}

const append: StateFunction = {
  doc: "Appends text to a file, only the lines (or multi-line blocks) not already present. Creates the file if missing.",
  primary: "name",
  footprint: onePath(),
  params: {
    name: PATH,
    text: {
      type: ["string", "list"],
      doc: "Line or block to ensure at the end of the file; a list appends each missing item.",
      aliases: ["content", "contents"],
      required: true,
    },
    makedirs: MAKEDIRS,
    backup: BACKUP,
    show_changes: SHOW_CHANGES,
  },
  plan: planAppend,
};

// ---------------------------------------------------------------------------------------------
// file.line

function findLine(lines: readonly string[], re: RegExp): number {
  return lines.findIndex((l) => re.test(l));
}

function lineEdit(params: Params, old: string): Edit {
  const mode = str(params, "mode") ?? "ensure";
  const content = str(params, "content");
  const matchSrc = str(params, "match");
  const afterSrc = str(params, "after");
  const beforeSrc = str(params, "before");
  const location = str(params, "location");
  const { lines, eol } = splitText(old);
  if (mode !== "delete" && content === undefined) return { error: `content is required for mode ${mode}` };
  const match =
    matchSrc !== undefined
      ? pyRegex(matchSrc, "")
      : content !== undefined
        ? pyRegex(`^\\s*${escapeRe(content.trim())}\\s*$`, "")
        : undefined;
  const after = afterSrc !== undefined ? pyRegex(afterSrc, "") : undefined;
  const before = beforeSrc !== undefined ? pyRegex(beforeSrc, "") : undefined;
  const eolOut = eol || lines.length === 0;

  switch (mode) {
    case "delete": {
      if (!match) return { error: "mode delete needs match or content" };
      const kept = lines.filter((l) => !match.test(l));
      return { text: joinText({ lines: kept, eol: eolOut }) };
    }
    case "replace": {
      if (!match) return { error: "mode replace needs match" };
      const out = lines.map((l) => (match.test(l) ? content! : l));
      return { text: joinText({ lines: out, eol: eolOut }) };
    }
    case "insert": {
      if (lines.includes(content!)) return { text: old };
      let at: number;
      if (after) {
        const i = findLine(lines, after);
        if (i < 0) return { error: `after pattern ${JSON.stringify(afterSrc)} not found` };
        at = i + 1;
      } else if (before) {
        const i = findLine(lines, before);
        if (i < 0) return { error: `before pattern ${JSON.stringify(beforeSrc)} not found` };
        at = i;
      } else if (location === "start") at = 0;
      else if (location === "end" || location === undefined) at = lines.length;
      else return { error: `location must be start or end, got "${location}"` };
      const out = [...lines.slice(0, at), content!, ...lines.slice(at)];
      return { text: joinText({ lines: out, eol: eolOut }) };
    }
    case "ensure": {
      // The line right next to the anchor must be `content`; a neighbour matching `match` is
      // replaced, otherwise the line is inserted there.
      let i: number;
      let neighbour: number;
      if (after) {
        i = findLine(lines, after);
        if (i < 0) return { error: `after pattern ${JSON.stringify(afterSrc)} not found` };
        neighbour = i + 1;
      } else if (before) {
        i = findLine(lines, before);
        if (i < 0) return { error: `before pattern ${JSON.stringify(beforeSrc)} not found` };
        neighbour = i - 1;
      } else {
        return { error: "mode ensure needs after or before" };
      }
      const cur = lines[neighbour];
      if (cur === content) return { text: old };
      const out = [...lines];
      if (cur !== undefined && neighbour >= 0 && matchSrc !== undefined && match?.test(cur))
        out[neighbour] = content!;
      else out.splice(after ? i + 1 : i, 0, content!);
      return { text: joinText({ lines: out, eol: eolOut }) };
    }
    default:
      return { error: `mode must be ensure, replace, delete or insert, got "${mode}"` };
  }
}

const line: StateFunction = {
  doc: "Edits one line of a file: ensure it next to an anchor, replace matching lines, delete them or insert it.",
  primary: "name",
  footprint: onePath(),
  params: {
    name: PATH,
    content: { type: "string", doc: "The line to put in the file (not needed for mode: delete)." },
    match: {
      type: "string",
      doc: "Regex selecting the lines to replace or delete; defaults to the content itself.",
    },
    mode: {
      type: "string",
      doc: "ensure (next to after/before), replace, delete or insert.",
      enum: ["ensure", "replace", "delete", "insert"],
      default: "ensure",
    },
    after: { type: "string", doc: "Regex of the line the content goes after." },
    before: { type: "string", doc: "Regex of the line the content goes before." },
    location: {
      type: "string",
      doc: "For insert without after/before: start or end of the file.",
      enum: ["start", "end"],
    },
    create: { type: "boolean", doc: "Create the file when it does not exist.", default: false },
    makedirs: MAKEDIRS,
    backup: BACKUP,
    show_changes: SHOW_CHANGES,
  },
  plan: (params) =>
    editPlan(
      params,
      (path) => ({
        missing: bool(params, "create", false) ? "create" : "fail",
        makedirs: bool(params, "makedirs", false),
        same: `${path}: line already in place`,
      }),
      (old) => lineEdit(params, old),
    ),
};

// ---------------------------------------------------------------------------------------------
// file.replace

function replaceEdit(params: Params, old: string): Edit {
  const pattern = str(params, "pattern");
  const repl = str(params, "repl");
  if (pattern === undefined || repl === undefined) return { error: "pattern and repl are required" };
  const count = Number(params.count ?? 0);
  if (!Number.isInteger(count) || count < 0) return { error: "count must be a non-negative integer" };
  const re = pyRegex(pattern, `${regexFlags(params.flags)}g`);
  const jsRepl = pyRepl(repl);
  let n = 0;
  const text = old.replace(re, (...args: unknown[]) => {
    n++;
    if (count > 0 && n > count) return args[0] as string;
    return expandRepl(jsRepl, args);
  });
  if (n > 0) return { text };
  const append = bool(params, "append_if_not_found", false);
  const prepend = bool(params, "prepend_if_not_found", false);
  if (!append && !prepend) return { text: old, comment: "Pattern not found; nothing to replace" };
  const content = str(params, "not_found_content") ?? repl;
  if (splitText(old).lines.includes(content.replace(/\n$/, "")) || old.includes(ensureNewline(content))) {
    return { text: old, comment: "Pattern not found but the content is already present" };
  }
  if (prepend) return { text: ensureNewline(content) + old };
  return { text: ensureNewline(old) + ensureNewline(content) };
}

const replace: StateFunction = {
  doc: "Replaces text matching a regular expression (Python syntax accepted: \\1 and (?P<name>...)).",
  primary: "name",
  footprint: onePath(),
  params: {
    name: PATH,
    pattern: { type: "string", doc: "Regular expression to search for.", required: true },
    repl: { type: "string", doc: "Replacement; \\1, \\g<name> and $1 refer to groups.", required: true },
    count: { type: "integer", doc: "Replace at most this many matches; 0 means all.", default: 0 },
    flags: {
      type: ["list", "string", "integer"],
      doc: "Regex flags by name (IGNORECASE, MULTILINE, DOTALL) or Python's numeric value; default MULTILINE.",
    },
    append_if_not_found: {
      type: "boolean",
      doc: "Append not_found_content (or repl) when the pattern is absent.",
      default: false,
    },
    prepend_if_not_found: {
      type: "boolean",
      doc: "Prepend not_found_content (or repl) when the pattern is absent.",
      default: false,
    },
    not_found_content: { type: "string", doc: "What to add when the pattern is not found (default: repl)." },
    ignore_if_missing: {
      type: "boolean",
      doc: "Succeed without changes when the file does not exist.",
      default: false,
    },
    backup: BACKUP,
    show_changes: SHOW_CHANGES,
  },
  plan: (params) =>
    editPlan(
      params,
      (path) => ({
        missing: bool(params, "ignore_if_missing", false) ? "ok" : "fail",
        same: `${path}: no changes needed`,
      }),
      (old) => replaceEdit(params, old),
    ),
};

// ---------------------------------------------------------------------------------------------
// file.blockreplace

function blockEdit(params: Params, old: string): Edit {
  const start = str(params, "marker_start") ?? "# -- start managed zone --";
  const end = str(params, "marker_end") ?? "# -- end managed zone --";
  const body = toLines(params.content) ?? "";
  const blockLines = body === "" ? [] : splitText(ensureNewline(body)).lines;
  const { lines, eol } = splitText(old);
  const s = lines.findIndex((l) => l.includes(start));
  if (s >= 0) {
    const e = lines.findIndex((l, i) => i > s && l.includes(end));
    if (e < 0) return { error: `marker_end ${JSON.stringify(end)} not found after marker_start` };
    const out = [...lines.slice(0, s + 1), ...blockLines, ...lines.slice(e)];
    return { text: joinText({ lines: out, eol: eol || lines.length === 0 }) };
  }
  const block = [start, ...blockLines, end];
  if (bool(params, "prepend_if_not_found", false))
    return { text: joinText({ lines: [...block, ...lines], eol: true }) };
  if (bool(params, "append_if_not_found", false))
    return { text: joinText({ lines: [...lines, ...block], eol: true }) };
  return {
    error: `marker_start ${JSON.stringify(start)} not found (set append_if_not_found or prepend_if_not_found)`,
  };
}

const blockreplace: StateFunction = {
  doc: "Maintains a block of text between two marker lines, leaving the rest of the file alone.",
  primary: "name",
  footprint: onePath(),
  params: {
    name: PATH,
    marker_start: {
      type: "string",
      doc: "Text of the line that opens the block.",
      default: "# -- start managed zone --",
    },
    marker_end: {
      type: "string",
      doc: "Text of the line that closes the block.",
      default: "# -- end managed zone --",
    },
    content: {
      type: ["string", "list"],
      doc: "Block contents (a list is joined with newlines).",
      default: "",
    },
    append_if_not_found: {
      type: "boolean",
      doc: "Add markers and block at the end when the markers are missing.",
      default: false,
    },
    prepend_if_not_found: {
      type: "boolean",
      doc: "Add markers and block at the start when the markers are missing.",
      default: false,
    },
    backup: BACKUP,
    show_changes: SHOW_CHANGES,
  },
  plan: (params) =>
    editPlan(
      params,
      (path) => ({ missing: "fail", same: `${path}: block already up to date` }),
      (old) => blockEdit(params, old),
    ),
};

// ---------------------------------------------------------------------------------------------
// file.symlink

async function planSymlink(params: Params): Promise<Plan> {
  const path = absPath(params);
  const target = str(params, "target");
  if (!target) return failed("target is required");
  const force = bool(params, "force", false);
  const makedirs = bool(params, "makedirs", false);
  const want = await wantedMeta(params, undefined);
  const st = await lstatStrict(path);
  let replaceKind: string | undefined;
  if (st?.isSymbolicLink()) {
    let current: string;
    try {
      current = await readlink(path);
    } catch (err) {
      return failed(`Cannot read link ${path}: ${errnoText(err)}`);
    }
    if (current === target) {
      const c = await metaChanges(st, want);
      if (Object.keys(c).length === 0) return unchanged(`Symlink ${path} already points to ${target}`);
      return {
        changes: c,
        comment: `Symlink ${path} ownership would be updated`,
        undo: undoPaths(path),
        apply: applying(async () => {
          await applyMeta(path, want, true);
          return undefined;
        }, `Symlink ${path} ownership updated`),
      };
    }
    replaceKind = "symlink";
  } else if (st) {
    if (!force) return failed(`${path} exists and is not a symlink (set force: true to replace it)`);
    replaceKind = st.isDirectory() ? "directory" : "file";
  } else {
    await checkParent(path, makedirs);
  }
  const changes: Record<string, unknown> = { new: { path, target } };
  if (replaceKind) changes.replaced = replaceKind;
  const done = replaceKind
    ? `Replaced ${replaceKind} ${path} with a symlink to ${target}`
    : `Created symlink ${path} -> ${target}`;
  return {
    changes,
    comment: replaceKind
      ? `Would replace ${replaceKind} ${path} with a symlink to ${target}`
      : `Symlink ${path} -> ${target} would be created`,
    undo:
      replaceKind === "directory"
        ? { cannot: "the directory the symlink replaced is not kept" }
        : undoPaths(path),
    apply: applying(async () => {
      if (makedirs) await mkdir(dirname(path), { recursive: true });
      if (replaceKind === "directory") await rm(path, { recursive: true, force: true });
      // Create next to the target name and rename over it, so the link is never missing.
      const tmp = join(dirname(path), `.${Math.random().toString(36).slice(2)}.zester-link`);
      await symlink(target, tmp);
      try {
        await rename(tmp, path);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      await applyMeta(path, want, true);
      return undefined;
    }, done),
  };
}

const symlinkState: StateFunction = {
  doc: "Ensures a symbolic link points to a target.",
  primary: "name",
  footprint: onePath("name", (p) => ({ reads: localSource(p, "target") })),
  params: {
    name: PATH,
    target: { type: "string", doc: "What the link points to (stored as given).", required: true },
    force: {
      type: "boolean",
      doc: "Replace a file or directory that is in the way.",
      default: false,
    },
    makedirs: MAKEDIRS,
    user: USER,
    group: GROUP,
  },
  plan: (params) => guard(() => planSymlink(params)),
};

// ---------------------------------------------------------------------------------------------
// file.touch

function timeParam(params: Params, key: string): number | undefined {
  const v = params[key];
  if (v === undefined || v === null) return undefined;
  const ms = typeof v === "number" ? v * 1000 : Date.parse(String(v));
  if (!Number.isFinite(ms)) throw new StateError(`${key} must be seconds since the epoch or an ISO date`);
  return Math.floor(ms / 1000);
}

async function planTouch(params: Params): Promise<Plan> {
  const path = absPath(params);
  const makedirs = bool(params, "makedirs", false);
  const atime = timeParam(params, "atime");
  const mtime = timeParam(params, "mtime");
  const st = await statStrict(path);
  const changes: Record<string, unknown> = {};
  if (!st) {
    await checkParent(path, makedirs);
    changes.new = path;
  }
  const curA = st ? Math.floor(st.atimeMs / 1000) : undefined;
  const curM = st ? Math.floor(st.mtimeMs / 1000) : undefined;
  if (atime !== undefined && atime !== curA) changes.atime = { old: curA, new: atime };
  if (mtime !== undefined && mtime !== curM) changes.mtime = { old: curM, new: mtime };
  if (Object.keys(changes).length === 0) return unchanged(`${path} exists`);
  return {
    changes,
    comment: st ? `Times of ${path} would be updated` : `${path} would be created`,
    // Times are not part of a pre-image: a revert removes a file touch created, nothing else.
    ...(st ? { undo: { cannot: "access and modification times are not kept" } } : { undo: undoPaths(path) }),
    apply: applying(
      async () => {
        if (!st) {
          if (makedirs) await mkdir(dirname(path), { recursive: true });
          await writeFileAtomic(path, "", { exclusive: true });
        }
        if (atime !== undefined || mtime !== undefined) {
          const now = await statStrict(path);
          await utimes(
            path,
            atime ?? (now ? now.atimeMs / 1000 : Date.now() / 1000),
            mtime ?? (now ? now.mtimeMs / 1000 : Date.now() / 1000),
          );
        }
        return undefined;
      },
      st ? `Updated times of ${path}` : `Created ${path}`,
    ),
  };
}

const touch: StateFunction = {
  doc:
    "Ensures a file exists (created empty if missing). Unlike the shell's touch, an existing file is left " +
    "alone unless atime/mtime are given, so repeated runs report no change.",
  primary: "name",
  footprint: onePath(),
  params: {
    name: PATH,
    atime: {
      type: ["integer", "string"],
      doc: "Access time to set: seconds since the epoch or an ISO date.",
    },
    mtime: {
      type: ["integer", "string"],
      doc: "Modification time to set: seconds since the epoch or an ISO date.",
    },
    makedirs: MAKEDIRS,
  },
  plan: (params) => guard(() => planTouch(params)),
};

// ---------------------------------------------------------------------------------------------
// file.copy

async function planCopy(params: Params, ctx: ModuleContext): Promise<Plan> {
  const path = absPath(params);
  const srcParam = str(params, "source");
  if (!srcParam) return failed("source is required");
  const src = sourcePath(srcParam, ctx);
  const force = bool(params, "force", false);
  const preserve = bool(params, "preserve", false);
  const makedirs = bool(params, "makedirs", false);
  const sst = await statStrict(src);
  if (!sst) return failed(`Source ${src} does not exist`);
  if (!sst.isFile()) return failed(`Source ${src} is not a regular file (use file.recurse for directories)`);
  const want = preserve ? { mode: sst.mode & 0o7777, uid: sst.uid, gid: sst.gid } : await wantedMeta(params);
  const st = await statStrict(path);
  if (st && !st.isFile()) return failed(`${path} exists but is not a regular file`);
  if (!st) await checkParent(path, makedirs, ctx.test);
  const data = await readOrUndefined(src);
  if (!data) return failed(`Source ${src} does not exist`);
  const old = st ? await readOrUndefined(path) : undefined;
  const changes: Record<string, unknown> = {};
  const write = !st || (force && !old?.equals(data));
  if (write) changes.copied = { source: src, dest: path };
  Object.assign(changes, await metaChanges(write ? undefined : st, want));
  if (Object.keys(changes).length === 0) {
    if (old?.equals(data)) return unchanged(`${path} is already a copy of ${src}`);
    return unchanged(`${path} exists and differs from ${src}; not replaced without force: true`);
  }
  const plan: Plan = {
    changes,
    comment: write ? `${src} would be copied to ${path}` : `Ownership/mode of ${path} would be updated`,
    undo: undoPaths(path),
    apply: applying(
      async () => {
        if (write) await writeContents({ path, data, existing: st, want, backup: false, makedirs });
        else await applyMeta(path, want);
        return undefined;
      },
      write ? `Copied ${src} to ${path}` : `Updated ownership/mode of ${path}`,
    ),
  };
  if (write) plan.diff = contentDiff(path, old, data);
  return plan;
}

const copy: StateFunction = {
  doc: "Copies a local file to `name`. An existing destination is replaced only with force: true.",
  primary: "name",
  footprint: onePath("name", (p) => ({ reads: localSource(p) })),
  params: {
    name: PATH,
    source: {
      type: "string",
      doc: "File to copy: absolute path, or relative / salt:// path in the states tree.",
      required: true,
    },
    force: { type: "boolean", doc: "Replace the destination when its contents differ.", default: false },
    preserve: { type: "boolean", doc: "Copy the source's mode and owner.", default: false },
    makedirs: MAKEDIRS,
    mode: MODE,
    user: USER,
    group: GROUP,
  },
  plan: (params, ctx) => guard(() => planCopy(params, ctx)),
};

// ---------------------------------------------------------------------------------------------
// file.recurse

async function planRecurse(params: Params, ctx: ModuleContext): Promise<Plan> {
  const path = absPath(params);
  const srcParam = str(params, "source");
  if (!srcParam) return failed("source is required");
  const src = sourcePath(srcParam.replace(/\/+$/, ""), ctx);
  const clean = bool(params, "clean", false);
  const includeEmpty = bool(params, "include_empty", false);
  const template = str(params, "template");
  const makedirs = bool(params, "makedirs", false);
  const dirMeta = await wantedMeta(params, "dir_mode");
  const fileMeta: Meta = { ...dirMeta };
  delete fileMeta.mode;
  const fm = parseMode(params.file_mode, "file_mode");
  if (fm !== undefined) fileMeta.mode = fm;

  const sst = await statStrict(src);
  if (!sst) return failed(`Source directory ${src} does not exist`);
  if (!sst.isDirectory()) return failed(`Source ${src} is not a directory`);
  const tst = await lstatStrict(path);
  if (tst && !tst.isDirectory()) return failed(`${path} exists but is not a directory`);
  if (!tst) await checkParent(path, makedirs, ctx.test);

  const entries = await walk(src);
  const wantedDirs = new Set<string>();
  const wantedFiles = new Set<string>();
  for (const e of entries) {
    if (e.st.isFile()) {
      wantedFiles.add(e.rel);
      for (let d = dirname(e.rel); d !== "."; d = dirname(d)) wantedDirs.add(d);
    } else if (e.st.isDirectory() && includeEmpty) {
      wantedDirs.add(e.rel);
    }
  }

  type Op =
    | { kind: "mkdir"; rel: string }
    | { kind: "write"; rel: string; data: Buffer; existing?: Stats }
    | { kind: "meta"; rel: string; want: Meta }
    | { kind: "remove"; rel: string; dir: boolean };
  const ops: Op[] = [];
  const created: string[] = [];
  const updated: string[] = [];
  const metaFixed: Record<string, unknown> = {};
  const diffs: string[] = [];

  const rootChanges = await metaChanges(tst, dirMeta);
  if (!tst) ops.push({ kind: "mkdir", rel: "" });
  if (Object.keys(rootChanges).length > 0) {
    metaFixed["."] = rootChanges;
    ops.push({ kind: "meta", rel: "", want: dirMeta });
  }
  for (const rel of [...wantedDirs].sort()) {
    const target = join(path, rel);
    const st = tst ? await lstatStrict(target) : undefined;
    if (st && !st.isDirectory()) return failed(`${target} exists but is not a directory`);
    if (!st) {
      ops.push({ kind: "mkdir", rel });
      created.push(`${rel}/`);
    }
    const c = await metaChanges(st, dirMeta);
    if (Object.keys(c).length > 0) {
      if (st) metaFixed[`${rel}/`] = c;
      ops.push({ kind: "meta", rel, want: dirMeta });
    }
  }
  for (const rel of [...wantedFiles].sort()) {
    const target = join(path, rel);
    const srcFile = join(src, rel);
    const raw = await readOrUndefined(srcFile);
    if (!raw) return failed(`Source ${srcFile} disappeared while planning`);
    // Binary files (images, archives) are copied as they are even when templating is on.
    const data =
      template && isText(raw)
        ? Buffer.from(
            await renderIf(template, raw.toString("utf8"), params, ctx, { path: srcFile, url: null }),
            "utf8",
          )
        : raw;
    const st = tst ? await lstatStrict(target) : undefined;
    if (st && !st.isFile()) return failed(`${target} exists but is not a regular file`);
    const old = st ? await readOrUndefined(target) : undefined;
    if (!st || !old?.equals(data)) {
      ops.push({ kind: "write", rel, data, existing: st });
      (st ? updated : created).push(rel);
      diffs.push(contentDiff(target, old, data));
    }
    const c = await metaChanges(st, fileMeta);
    if (Object.keys(c).length > 0) {
      if (st) metaFixed[rel] = c;
      ops.push({ kind: "meta", rel, want: fileMeta });
    }
  }
  const removed: string[] = [];
  if (clean && tst) {
    // Deepest first is not needed: removing a directory removes what is below it, so skip those.
    let removedDir: string | undefined;
    for (const e of await walk(path)) {
      if (removedDir && (e.rel + sep).startsWith(removedDir + sep)) continue;
      const keep = e.st.isDirectory() ? wantedDirs.has(e.rel) : wantedFiles.has(e.rel);
      if (keep) continue;
      removed.push(e.rel);
      ops.push({ kind: "remove", rel: e.rel, dir: e.st.isDirectory() });
      if (e.st.isDirectory()) removedDir = e.rel;
    }
  }

  const changes: Record<string, unknown> = {};
  if (created.length > 0) changes.created = created;
  if (updated.length > 0) changes.updated = updated;
  if (removed.length > 0) changes.removed = removed;
  if (Object.keys(metaFixed).length > 0) changes.metadata = metaFixed;
  if (ops.length === 0) return unchanged(`Directory ${path} matches ${src}`);
  if (Object.keys(changes).length === 0) changes.directory = "created";
  const plan: Plan = {
    changes,
    comment: `${src} -> ${path}: ${created.length} to create, ${updated.length} to update, ${removed.length} to remove`,
    undo: ops.some((op) => op.kind === "remove" && op.dir)
      ? { cannot: "clean removed directory trees, which are not kept" }
      : undoPaths(...ops.map((op) => (op.rel ? join(path, op.rel) : path))),
    apply: applying(async () => {
      for (const op of ops) {
        const target = op.rel ? join(path, op.rel) : path;
        if (op.kind === "mkdir") await mkdir(target, { recursive: true, mode: dirMeta.mode ?? 0o755 });
        else if (op.kind === "write") {
          await writeContents({
            path: target,
            data: op.data,
            existing: op.existing,
            want: fileMeta,
            backup: false,
            makedirs: true,
          });
        } else if (op.kind === "meta") await applyMeta(target, op.want);
        else await rm(target, { recursive: op.dir, force: true });
      }
      return undefined;
    }, `${src} -> ${path}: ${created.length} created, ${updated.length} updated, ${removed.length} removed`),
  };
  const diff = diffs.filter(Boolean).join("");
  if (diff && bool(params, "show_changes", true)) plan.diff = diff;
  return plan;
}

const recurse: StateFunction = {
  doc: "Mirrors a source directory into `name`: creates and updates files, optionally renders templates and removes extras (clean).",
  primary: "name",
  footprint: onePath("name", (p) => ({ reads: localSource(p) })),
  params: {
    name: { ...PATH, doc: "Target directory (absolute path)." },
    source: {
      type: "string",
      doc: "Source directory: salt://path, path relative to the states tree, or absolute path.",
      required: true,
    },
    clean: {
      type: "boolean",
      doc: "Remove files and directories in the target that are not in the source.",
      default: false,
    },
    include_empty: { type: "boolean", doc: "Also create empty source directories.", default: false },
    dir_mode: MODE,
    file_mode: MODE,
    user: USER,
    group: GROUP,
    makedirs: MAKEDIRS,
    template: TEMPLATE,
    context: CONTEXT,
    defaults: DEFAULTS,
    show_changes: SHOW_CHANGES,
  },
  plan: (params, ctx) => guard(() => planRecurse(params, ctx)),
};

// ---------------------------------------------------------------------------------------------
// file.comment / file.uncomment

function commentEdit(params: Params, old: string, uncomment: boolean): Edit {
  const regex = str(params, "regex");
  if (!regex) return { error: "regex is required" };
  const char = str(params, "char") ?? "#";
  const re = pyRegex(regex, "");
  const commented = new RegExp(`^(\\s*)${escapeRe(char)}+ ?(.*)$`);
  const { lines, eol } = splitText(old);
  let n = 0;
  const out = lines.map((l) => {
    const m = commented.exec(l);
    if (uncomment) {
      if (m && re.test(m[2]!)) {
        n++;
        return m[1]! + m[2]!;
      }
      return l;
    }
    if (!m && re.test(l)) {
      n++;
      return char + l;
    }
    return l;
  });
  return {
    text: joinText({ lines: out, eol }),
    comment: n > 0 ? `${uncomment ? "Uncommented" : "Commented"} ${n} line(s)` : undefined,
  };
}

function commentState(uncomment: boolean): StateFunction {
  return {
    doc: uncomment
      ? "Uncomments lines whose text (after the comment character) matches a regex."
      : "Comments out the lines matching a regex.",
    primary: "name",
    footprint: onePath(),
    params: {
      name: PATH,
      regex: { type: "string", doc: "Regular expression selecting the lines.", required: true },
      char: { type: "string", doc: "Comment character(s).", default: "#" },
      backup: BACKUP,
      show_changes: SHOW_CHANGES,
    },
    plan: (params) =>
      editPlan(
        params,
        (path) => ({
          missing: "fail",
          same: `${path}: no matching lines to ${uncomment ? "uncomment" : "comment"}`,
        }),
        (old) => commentEdit(params, old, uncomment),
      ),
  };
}

// ---------------------------------------------------------------------------------------------
// file.keyvalue

function keyvalueEdit(params: Params, old: string): Edit {
  const kv = params.key_values;
  if (!kv || typeof kv !== "object" || Array.isArray(kv)) return { error: "key_values must be a map" };
  const pairs = kv as Record<string, unknown>;
  const sepStr = str(params, "separator") ?? "=";
  if (sepStr === "") return { error: "separator must not be empty" };
  const uncommentChar = str(params, "uncomment");
  const { lines, eol } = splitText(old);
  const seen = new Set<string>();
  const setLine = (key: string) => `${key}${sepStr}${String(pairs[key])}`;
  const keyOf = (l: string): string | undefined => {
    const i = l.indexOf(sepStr.trim() || sepStr);
    return i > 0 ? l.slice(0, i).trim() : undefined;
  };
  const out = lines.map((l) => {
    let body = l;
    if (uncommentChar && l.trimStart().startsWith(uncommentChar)) {
      body = l.trimStart().slice(uncommentChar.length).trimStart();
      const key = keyOf(body);
      // A commented key is only revived when the file has no active line for it.
      if (key !== undefined && key in pairs && !lines.some((x) => keyOf(x) === key)) {
        if (seen.has(key)) return l;
        seen.add(key);
        return setLine(key);
      }
      return l;
    }
    const key = keyOf(body);
    if (key === undefined || !(key in pairs)) return l;
    seen.add(key);
    const want = setLine(key);
    const cur = l.slice(l.indexOf(sepStr.trim() || sepStr) + (sepStr.trim() || sepStr).length).trim();
    return cur === String(pairs[key]) ? l : want;
  });
  const missing = Object.keys(pairs).filter((k) => !seen.has(k));
  if (missing.length > 0 && bool(params, "append_if_not_found", false)) out.push(...missing.map(setLine));
  return { text: joinText({ lines: out, eol: eol || lines.length === 0 }) };
}

const keyvalue: StateFunction = {
  doc: "Sets `key<separator>value` lines in a file (config files like sshd_config or sysctl.conf).",
  primary: "name",
  footprint: onePath(),
  params: {
    name: PATH,
    key_values: { type: "map", doc: "Keys and the values they must have.", required: true },
    separator: { type: "string", doc: 'What separates key and value, e.g. "=" or " ".', default: "=" },
    uncomment: {
      type: "string",
      doc: "Comment character: a commented-out line for a key is uncommented and set when the key is not active.",
    },
    append_if_not_found: { type: "boolean", doc: "Append keys that are not in the file.", default: false },
    backup: BACKUP,
    show_changes: SHOW_CHANGES,
  },
  plan: (params) =>
    editPlan(
      params,
      (path) => ({ missing: "fail", same: `${path}: all keys already set` }),
      (old) => keyvalueEdit(params, old),
    ),
};

// ---------------------------------------------------------------------------------------------
// Execution functions.

const PATH_ARG: ParamSpec = { type: "string", doc: "Path to inspect.", required: true, aliases: ["name"] };

/** An exec function answering whether a path exists and passes `is` (symlinks are followed). */
function pathIs(doc: string, is: (st: Stats) => boolean): ExecFunction {
  return {
    doc,
    params: { path: PATH_ARG },
    positional: ["path"],
    readOnly: true,
    run: async (params) => {
      const st = await statOrUndefined(String(params.path));
      return st ? is(st) : false;
    },
  };
}

const pathPart = (doc: string, part: (p: string) => string): ExecFunction => ({
  doc,
  params: { path: PATH_ARG },
  positional: ["path"],
  readOnly: true,
  run: async (params) => part(String(params.path)),
});

const exec: Record<string, ExecFunction> = {
  dirname: pathPart("The directory part of a path (Python's os.path.dirname).", (p) =>
    p.includes("/") ? p.slice(0, p.lastIndexOf("/")) || "/" : "",
  ),
  basename: pathPart("The last part of a path (Python's os.path.basename).", (p) =>
    p.slice(p.lastIndexOf("/") + 1),
  ),
  read: {
    doc: "Returns the contents of a file as text.",
    params: { path: PATH_ARG },
    positional: ["path"],
    readOnly: true,
    run: async (params) => (await readFile(String(params.path))).toString("utf8"),
  },
  file_exists: pathIs("True when the path exists and is a regular file.", (st) => st.isFile()),
  directory_exists: pathIs("True when the path exists and is a directory.", (st) => st.isDirectory()),
  get_hash: {
    doc: "Returns the hex digest of a file's contents.",
    params: {
      path: PATH_ARG,
      form: { type: "string", doc: "Hash algorithm: sha256, sha512, sha1 or md5.", default: "sha256" },
    },
    positional: ["path", "form"],
    readOnly: true,
    run: async (params) => {
      const form = String(params.form ?? "sha256");
      if (!["sha256", "sha512", "sha1", "md5", "sha384", "sha224"].includes(form)) {
        throw new Error(`Unsupported hash form "${form}"`);
      }
      return createHash(form)
        .update(await readFile(String(params.path)))
        .digest("hex");
    },
  },
  stats: {
    doc: "Returns type, size, mode, owner and times of a path (symlinks are not followed).",
    params: { path: PATH_ARG },
    positional: ["path"],
    readOnly: true,
    run: async (params) => {
      const path = String(params.path);
      const st = await lstat(path);
      const type = st.isFile()
        ? "file"
        : st.isDirectory()
          ? "dir"
          : st.isSymbolicLink()
            ? "link"
            : st.isFIFO()
              ? "pipe"
              : st.isSocket()
                ? "socket"
                : "device";
      return {
        path,
        type,
        size: st.size,
        mode: formatMode(st.mode),
        uid: st.uid,
        gid: st.gid,
        user: await idName("passwd", st.uid),
        group: await idName("group", st.gid),
        inode: st.ino,
        atime: st.atimeMs / 1000,
        mtime: st.mtimeMs / 1000,
        ctime: st.ctimeMs / 1000,
        target: st.isSymbolicLink() ? await readlink(path) : undefined,
      };
    },
  },
};

const EDIT_REVERT =
  "Restores the file's previous bytes, mode and owner, or removes it (and the parent directories makedirs created) when the run created it.";

/** What `state.revert` restores per state (docs/revert.md). */
const REVERT_DOCS: Record<string, string> = {
  managed: `${EDIT_REVERT} Backup files the run left (backup:) are kept.`,
  directory:
    "Restores the directory's previous mode and owner (and those of entries recurse changed), or removes it when the run created it and it is empty again.",
  absent:
    "Restores a removed file (bytes, mode, owner), symlink or empty directory; cannot be reverted when it removed a directory tree (trees are not kept).",
  append: EDIT_REVERT,
  line: EDIT_REVERT,
  replace: EDIT_REVERT,
  blockreplace: EDIT_REVERT,
  symlink:
    "Restores what the path was (the previous symlink target or file) or removes the link; cannot be reverted when the link replaced a directory.",
  touch: "Removes a file touch created; cannot be reverted for an existing file (times are not kept).",
  copy: EDIT_REVERT,
  recurse:
    "Restores every file and directory it created, updated or removed (bytes, mode, owner); cannot be reverted when clean removed directory trees.",
  comment: EDIT_REVERT,
  uncomment: EDIT_REVERT,
  keyvalue: EDIT_REVERT,
};

export const family: ModuleFamily = {
  name: "file",
  doc: "Files and directories: contents, permissions, links and in-place edits of existing files.",
  states: withRevertDocs(
    {
      managed,
      directory,
      absent,
      append,
      line,
      replace,
      blockreplace,
      symlink: symlinkState,
      touch,
      copy,
      recurse,
      comment: commentState(false),
      uncomment: commentState(true),
      keyvalue,
    },
    REVERT_DOCS,
  ),
  exec,
};
