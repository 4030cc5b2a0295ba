/**
 * The `archive` family: unpacking tar and zip archives into a directory.
 *
 * The plan fetches the archive (a local path, or an http(s) URL downloaded to a private temp file),
 * verifies source_hash, lists every entry and refuses anything that would land outside the target
 * (`..`, absolute paths, links pointing out, device files) before a single byte is written. The
 * archive counts as extracted when every entry already exists under the target.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, open, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { errText } from "../util/errors.js";
import { type ExecOptions, run } from "../util/exec.js";
import { statOrUndefined } from "../util/files.js";
import { localSource, onePath } from "./footprints.js";
import {
  applyFailed,
  boolParam,
  failed,
  failure,
  lstatOrUndefined,
  optString,
  StateError,
  unchanged,
  withRevertDocs,
} from "./support.js";
import type { ModuleContext, ModuleFamily, Params, Plan, StateFunction } from "./types.js";

export type ArchiveFormat = "tar" | "zip";

export interface ArchiveEntry {
  name: string;
  type: "file" | "dir" | "symlink" | "hardlink" | "other";
  /** Link target for symlinks and hardlinks. */
  link?: string;
}

/** Format from the first bytes: zip's PK header, else the compressions tar reads (gz, xz, bz2, zstd) or ustar. */
export function detectFormat(head: Uint8Array): ArchiveFormat | undefined {
  const b = (i: number) => head[i] ?? -1;
  if (b(0) === 0x50 && b(1) === 0x4b && (b(2) === 3 || b(2) === 5)) return "zip";
  if (b(0) === 0x1f && b(1) === 0x8b) return "tar";
  if (b(0) === 0xfd && b(1) === 0x37 && b(2) === 0x7a && b(3) === 0x58 && b(4) === 0x5a) return "tar";
  if (b(0) === 0x42 && b(1) === 0x5a && b(2) === 0x68) return "tar";
  if (b(0) === 0x28 && b(1) === 0xb5 && b(2) === 0x2f && b(3) === 0xfd) return "tar";
  if (Buffer.from(head.subarray(257, 262)).toString("latin1") === "ustar") return "tar";
  return undefined;
}

/** Undoes tar's --quoting-style=escape (\\n, \\t, \\\\, octal \\ooo). */
function unescapeTar(s: string): string {
  return s.replace(/\\([0-7]{3}|.)/g, (_m, c: string) => {
    if (/^[0-7]{3}$/.test(c)) return String.fromCharCode(Number.parseInt(c, 8));
    return ({ n: "\n", t: "\t", r: "\r", "\\": "\\", " ": " " } as Record<string, string>)[c] ?? c;
  });
}

/** Parses `tar -tvf --quoting-style=escape` (GNU tar) lines. */
export function parseTarList(text: string): ArchiveEntry[] {
  const out: ArchiveEntry[] = [];
  const re = /^(\S)\S{9}\s+\S+\s+\S+\s+\d{4}-\d\d-\d\d\s+\d\d:\d\d(?::\d\d)?\s(.*)$/;
  for (const line of text.split("\n")) {
    if (!line) continue;
    const m = re.exec(line);
    if (!m) throw new StateError(`cannot parse tar listing line: ${line}`);
    const kind = m[1]!;
    const rest = m[2]!;
    if (kind === "l") {
      const i = rest.indexOf(" -> ");
      out.push({
        name: unescapeTar(rest.slice(0, i)),
        type: "symlink",
        link: unescapeTar(rest.slice(i + 4)),
      });
    } else if (kind === "h") {
      const i = rest.indexOf(" link to ");
      out.push({
        name: unescapeTar(rest.slice(0, i)),
        type: "hardlink",
        link: unescapeTar(rest.slice(i + 9)),
      });
    } else {
      const type = kind === "d" ? "dir" : kind === "-" ? "file" : "other";
      out.push({ name: unescapeTar(rest), type });
    }
  }
  return out;
}

/**
 * Checks every entry: nothing absolute, nothing climbing out with `..`, links only to places
 * inside the target, no device files. Returns the reasons, empty when the archive is safe.
 */
export function unsafeEntries(entries: readonly ArchiveEntry[]): string[] {
  const bad: string[] = [];
  const inside = (p: string) => {
    const n = posix.normalize(p);
    return !posix.isAbsolute(p) && n !== ".." && !n.startsWith("../");
  };
  for (const e of entries) {
    if (!inside(e.name)) bad.push(`${e.name}: path outside the target`);
    else if (e.type === "other") bad.push(`${e.name}: special file (device or fifo)`);
    else if (
      e.type === "symlink" &&
      (e.link === undefined || !inside(posix.join(posix.dirname(e.name), e.link)) || posix.isAbsolute(e.link))
    ) {
      bad.push(`${e.name}: symlink to ${e.link} points outside the target`);
    } else if (e.type === "hardlink" && (e.link === undefined || !inside(e.link))) {
      bad.push(`${e.name}: hard link to ${e.link} points outside the target`);
    }
  }
  // A later entry written through a symlink the archive itself created could land anywhere.
  const links = new Set(
    entries.filter((e) => e.type === "symlink").map((e) => stripSlash(posix.normalize(e.name))),
  );
  for (const e of entries) {
    const parts = stripSlash(posix.normalize(e.name)).split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      if (links.has(parent)) {
        bad.push(`${e.name}: written through the archive's symlink ${parent}`);
        break;
      }
    }
  }
  return bad;
}

function stripSlash(p: string): string {
  return p.endsWith("/") ? p.slice(0, -1) : p;
}

/**
 * Directories already under the target that are symlinks leading outside it: tar and unzip would
 * follow them. Returns the offending paths.
 */
async function escapingParents(target: string, entries: readonly ArchiveEntry[]): Promise<string[]> {
  const root = await realpath(target);
  const parents = new Set<string>();
  for (const e of entries) {
    const parts = stripSlash(posix.normalize(e.name)).split("/");
    for (let i = 1; i < parts.length; i++) parents.add(parts.slice(0, i).join("/"));
  }
  const bad: string[] = [];
  for (const rel of parents) {
    const p = join(target, rel);
    const st = await lstatOrUndefined(p);
    if (!st?.isSymbolicLink()) continue;
    const real = await realpath(p).catch(() => undefined);
    if (real === undefined || (real !== root && !real.startsWith(`${root}/`))) bad.push(p);
  }
  return bad;
}

/** The single top-level directory every entry lives in, or undefined. */
export function topLevel(entries: readonly ArchiveEntry[]): string | undefined {
  const tops = new Set(
    entries.map((e) => posix.normalize(e.name).split("/")[0]).filter((t) => t && t !== "."),
  );
  if (tops.size !== 1) return undefined;
  const top = [...tops][0]!;
  const dirLike = entries.every((e) => posix.normalize(e.name) !== top || e.type === "dir");
  return dirLike ? top : undefined;
}

async function listTar(file: string, opts: ExecOptions): Promise<ArchiveEntry[]> {
  const r = await run(["tar", "--quoting-style=escape", "-tvf", file], {
    ...opts,
    env: { LC_ALL: "C", TZ: "UTC" },
  });
  if (r.retcode !== 0) throw new StateError(failure("Listing the archive", r));
  return parseTarList(r.stdout);
}

/** zip wildcards in an entry name are escaped so `unzip -p` reads exactly that entry. */
function zipLiteral(name: string): string {
  return name.replace(/[[\]*?\\]/g, (c) => `[${c}]`);
}

async function listZip(file: string, opts: ExecOptions): Promise<ArchiveEntry[]> {
  const names = await run(["zipinfo", "-1", file], opts);
  if (names.retcode !== 0) throw new StateError(failure("Listing the archive", names));
  const long = await run(["zipinfo", "-s", file], opts);
  if (long.retcode !== 0) throw new StateError(failure("Listing the archive", long));
  const perms = long.stdout
    .split("\n")
    .filter((l) => /^[-dlbcps?][-rwxsStT?]{9}\s/.test(l))
    .map((l) => l[0]!);
  const list = names.stdout.split("\n").filter((l) => l !== "");
  if (perms.length !== list.length) throw new StateError("cannot read the zip listing");
  const out: ArchiveEntry[] = [];
  for (const [i, name] of list.entries()) {
    const p = perms[i]!;
    if (p === "l") {
      const t = await run(["unzip", "-p", file, zipLiteral(name)], opts);
      out.push({ name, type: "symlink", link: t.stdout });
    } else if (p === "d" || name.endsWith("/")) out.push({ name, type: "dir" });
    else if (p === "-" || p === "?") out.push({ name, type: "file" });
    else out.push({ name, type: "other" });
  }
  return out;
}

/** source_hash: "sha256=hex", "sha512:hex", or a bare hex digest (algorithm from its length). */
export function parseSourceHash(value: string): { algo: string; hex: string } {
  const m = /^(md5|sha1|sha224|sha256|sha384|sha512)[=:]([0-9a-fA-F]+)$/.exec(value.trim());
  if (m) return { algo: m[1]!, hex: m[2]!.toLowerCase() };
  const hex = value.trim().toLowerCase();
  const byLen: Record<number, string> = {
    32: "md5",
    40: "sha1",
    56: "sha224",
    64: "sha256",
    96: "sha384",
    128: "sha512",
  };
  if (/^[0-9a-f]+$/.test(hex) && byLen[hex.length]) return { algo: byLen[hex.length]!, hex };
  throw new StateError(`source_hash "${value}" is not algo=hex or a hex digest`);
}

async function hashFile(path: string, algo: string): Promise<string> {
  const h = createHash(algo);
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

interface Fetched {
  file: string;
  /** Temp directory to remove afterwards (downloads only). */
  tmp?: string;
}

async function fetchSource(source: string, signal?: AbortSignal): Promise<Fetched> {
  if (/^https?:\/\//i.test(source)) {
    const tmp = await mkdtemp(join(tmpdir(), "zester-archive-"));
    try {
      const res = await fetch(source, signal ? { signal } : {});
      if (!res.ok || !res.body) throw new StateError(`Downloading ${source} failed: HTTP ${res.status}`);
      const file = join(tmp, "archive");
      // Streamed to disk: release archives can be larger than we want to hold in memory.
      await pipeline(
        Readable.fromWeb(res.body as WebReadableStream),
        createWriteStream(file, { mode: 0o600 }),
      );
      return { file, tmp };
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      if (err instanceof StateError) throw err;
      throw new StateError(`Downloading ${source} failed: ${errText(err)}`);
    }
  }
  const path = source.startsWith("file://") ? source.slice("file://".length) : source;
  if (!path.startsWith("/"))
    throw new StateError(`source ${source} must be an absolute path or an http(s) URL`);
  const st = await statOrUndefined(path);
  if (!st) throw new StateError(`source ${path} does not exist`);
  if (!st.isFile()) throw new StateError(`source ${path} is not a regular file`);
  return { file: path };
}

async function readHead(file: string): Promise<Uint8Array> {
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return (await lstatOrUndefined(path)) !== undefined;
}

async function chownEntries(target: string, names: string[], owner: string, opts: ExecOptions) {
  const paths = [...new Set(names.map((n) => join(target, posix.normalize(n))))];
  for (let i = 0; i < paths.length; i += 500) {
    const r = await run(["chown", "-h", owner, "--", ...paths.slice(i, i + 500)], opts);
    if (r.retcode !== 0) throw new StateError(failure(`chown ${owner}`, r));
  }
}

async function planExtracted(params: Params, ctx: ModuleContext): Promise<Plan> {
  const target = resolve(String(params.name));
  const source = optString(params.source);
  const opts: ExecOptions = { timeoutMs: 600_000 };
  if (ctx.signal) opts.signal = ctx.signal;
  let fetched: Fetched | undefined;
  const cleanup = async () => {
    if (fetched?.tmp) await rm(fetched.tmp, { recursive: true, force: true });
  };
  try {
    if (!source) throw new StateError("source is required");
    const ifMissing = optString(params.if_missing);
    if (ifMissing && (await exists(ifMissing))) {
      return unchanged(`${ifMissing} exists; ${source} not extracted`);
    }
    const user = optString(params.user);
    const group = optString(params.group);
    for (const [k, v] of [
      ["user", user],
      ["group", group],
    ] as const) {
      if (v && !(await run(["getent", k === "user" ? "passwd" : "group", v])).stdout) {
        throw new StateError(`${k} ${v} does not exist`);
      }
    }
    fetched = await fetchSource(source, ctx.signal);
    const hashSpec = optString(params.source_hash);
    if (hashSpec) {
      const want = parseSourceHash(hashSpec);
      const got = await hashFile(fetched.file, want.algo);
      if (got !== want.hex) {
        throw new StateError(
          `source_hash mismatch for ${source}: expected ${want.algo} ${want.hex}, got ${got}`,
        );
      }
    }
    const explicit = optString(params.archive_format) as ArchiveFormat | undefined;
    const format = explicit ?? detectFormat(await readHead(fetched.file));
    if (!format) throw new StateError(`cannot tell the format of ${source}; set archive_format: tar or zip`);
    const entries = format === "zip" ? await listZip(fetched.file, opts) : await listTar(fetched.file, opts);
    if (entries.length === 0) throw new StateError(`${source} is empty`);
    const bad = unsafeEntries(entries);
    if (bad.length > 0) {
      throw new StateError(
        `Refusing to extract ${source}: ${bad.slice(0, 5).join("; ")}${bad.length > 5 ? ` (and ${bad.length - 5} more)` : ""}`,
      );
    }
    if (boolParam(params.enforce_toplevel, true) && !topLevel(entries)) {
      throw new StateError(
        `${source} does not have a single top-level directory; set enforce_toplevel: false to extract it anyway`,
      );
    }
    const tst = await statOrUndefined(target);
    if (tst && !tst.isDirectory()) throw new StateError(`${target} exists and is not a directory`);
    if (tst) {
      const through = await escapingParents(target, entries);
      if (through.length > 0) {
        throw new StateError(
          `Refusing to extract ${source}: ${through.join(", ")} is a symlink leading outside ${target}`,
        );
      }
    }
    const missing: string[] = [];
    for (const e of entries) if (!(await exists(join(target, posix.normalize(e.name))))) missing.push(e.name);
    if (missing.length === 0) {
      await cleanup();
      return unchanged(`${source} is already extracted in ${target}`);
    }
    const file = fetched.file;
    const changes = { extracted: missing.slice(0, 50), count: missing.length };
    // A dry run never reaches apply(): drop the download now.
    if (ctx.test) await cleanup();
    return {
      changes,
      comment: `${missing.length} entr${missing.length === 1 ? "y" : "ies"} of ${source} would be extracted to ${target}`,
      apply: async () => {
        try {
          await mkdir(target, { recursive: true });
          const argv =
            format === "zip"
              ? ["unzip", "-q", "-o", file, "-d", target]
              : ["tar", "--no-same-owner", "--no-overwrite-dir", "-xf", file, "-C", target];
          const r = await run(argv, opts);
          if (r.retcode !== 0) return applyFailed(failure("Extracting", r));
          if (user || group) {
            await chownEntries(
              target,
              entries.map((e) => e.name),
              `${user ?? ""}${group ? `:${group}` : ""}`,
              opts,
            );
          }
          return { result: true, changes, comment: `${source} extracted to ${target}` };
        } catch (err) {
          return applyFailed(errText(err));
        } finally {
          await cleanup();
        }
      },
    };
  } catch (err) {
    await cleanup();
    return failed(errText(err));
  }
}

const extracted: StateFunction = {
  doc:
    "Makes sure an archive (tar.gz/xz/bz2/zst or zip, from a local path or an http(s) URL) is extracted " +
    "into a directory. source_hash is verified before extraction; entries escaping the target are refused.",
  primary: "name",
  footprint: onePath("name", (p) => ({ reads: localSource(p) })),
  params: {
    name: { type: "string", doc: "The directory to extract into.", required: true, aliases: ["target"] },
    source: {
      type: "string",
      doc: "Archive location: absolute path, file:// or http(s):// URL.",
      required: true,
    },
    source_hash: {
      type: "string",
      doc: "Expected digest: sha256=<hex> (any md5/sha* algorithm) or a bare hex digest.",
    },
    archive_format: {
      type: "string",
      doc: "tar or zip; detected from the file when omitted.",
      enum: ["tar", "zip"],
    },
    if_missing: { type: "string", doc: "Skip extraction when this path exists." },
    enforce_toplevel: {
      type: "boolean",
      doc: "Require every entry to live under one top-level directory (as Salt does).",
      default: true,
    },
    user: { type: "string", doc: "Owner of the extracted files." },
    group: { type: "string", doc: "Group of the extracted files." },
  },
  plan: planExtracted,
};

export const family: ModuleFamily = {
  name: "archive",
  doc: "Extract tar and zip archives safely.",
  states: withRevertDocs(
    { extracted },
    { extracted: "cannot be reverted: the extracted tree is not kept (remove it with file.absent)." },
  ),
};
