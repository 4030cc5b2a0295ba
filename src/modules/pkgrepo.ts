/**
 * The `pkgrepo` family: package repository definitions.
 *
 * apt: one file in /etc/apt/sources.list.d (one-line `.list` or deb822 `.sources`), with its
 * signing key written from `key_text` to a keyring under /etc/apt/keyrings and referenced with
 * signed-by (no network fetch of keys). yum/dnf: a .repo file in /etc/yum.repos.d.
 * The plan renders the wanted file content and compares it byte for byte with what is there.
 */
import { rm } from "node:fs/promises";
import { errText } from "../util/errors.js";
import { run } from "../util/exec.js";
import { writeFileAtomic } from "../util/files.js";
import { unifiedDiff } from "./diff.js";
import { APT_ENV, aptUpdateArgv } from "./providers/apt.js";
import { yumRepoFile } from "./providers/dnf.js";
import {
  applyFailed,
  boolParam,
  ensureNewline,
  failed,
  failure,
  listParam,
  optString,
  readTextOrUndefined,
  StateError,
  unchanged,
  withRevertDocs,
} from "./support.js";
import type {
  ApplyOutcome,
  ModuleContext,
  ModuleFamily,
  ParamSpec,
  Params,
  Plan,
  StateFunction,
} from "./types.js";

export interface AptSource {
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
  options: Record<string, string>;
}

/** Parses "deb [arch=amd64 signed-by=/k.gpg] http://x bookworm main contrib". */
export function parseOneLine(line: string): AptSource {
  const m = /^\s*(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
  if (!m) throw new StateError(`"${line}" is not a deb/deb-src source line`);
  const options: Record<string, string> = {};
  for (const kv of (m[2] ?? "").trim().split(/\s+/).filter(Boolean)) {
    const i = kv.indexOf("=");
    if (i > 0) options[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return {
    types: [m[1]!],
    uris: [m[3]!],
    suites: [m[4]!],
    components: m[5]!.split(/\s+/).filter(Boolean),
    options,
  };
}

export function formatOneLine(s: AptSource): string {
  const opts = Object.entries(s.options)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`);
  const lines: string[] = [];
  for (const type of s.types) {
    for (const uri of s.uris) {
      for (const suite of s.suites) {
        lines.push(
          [type, opts.length ? `[${opts.join(" ")}]` : "", uri, suite, ...s.components]
            .filter(Boolean)
            .join(" "),
        );
      }
    }
  }
  return `${lines.join("\n")}\n`;
}

const DEB822_NAMES: Record<string, string> = {
  arch: "Architectures",
  "signed-by": "Signed-By",
  trusted: "Trusted",
  lang: "Languages",
  target: "Targets",
};

export function formatDeb822(s: AptSource, enabled = true): string {
  const lines = [`Types: ${s.types.join(" ")}`, `URIs: ${s.uris.join(" ")}`, `Suites: ${s.suites.join(" ")}`];
  if (s.components.length) lines.push(`Components: ${s.components.join(" ")}`);
  if (!enabled) lines.push("Enabled: no");
  for (const [k, v] of Object.entries(s.options).sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`${DEB822_NAMES[k] ?? k}: ${v.replace(/,/g, " ")}`);
  }
  return `${lines.join("\n")}\n`;
}

function slug(text: string): string {
  return (
    text
      .replace(/^[a-z]+:\/\//i, "")
      .replace(/[^A-Za-z0-9]+/g, "-")
      .replace(/^-|-$/g, "")
      .slice(0, 80) || "repo"
  );
}

export type RepoKind = "apt" | "yum";

export function repoKind(params: Params, facts: Record<string, unknown>): RepoKind {
  const forced = optString(params.kind);
  if (forced === "apt" || forced === "yum") return forced;
  const pm = optString(facts.pkg_manager);
  if (pm === "dnf" || pm === "yum") return "yum";
  return "apt";
}

interface WantedFile {
  path: string;
  content: string;
  mode: number;
}

/** Everything pkgrepo.managed would write: the source/repo file and, for apt, the keyring. */
export function wantedFiles(params: Params, kind: RepoKind): WantedFile[] {
  const name = String(params.name);
  if (kind === "yum") {
    if (!/^[A-Za-z0-9._:-]+$/.test(name)) throw new StateError(`invalid yum repo id "${name}"`);
    const baseurl = optString(params.baseurl);
    const mirrorlist = optString(params.mirrorlist);
    if (!baseurl && !mirrorlist) throw new StateError("a yum repo needs baseurl or mirrorlist");
    const repo: Parameters<typeof yumRepoFile>[0] = {
      id: name,
      enabled: boolParam(params.enabled, true),
      gpgcheck: boolParam(params.gpgcheck, true),
    };
    const human = optString(params.humanname);
    if (human) repo.name = human;
    if (baseurl) repo.baseurl = baseurl;
    if (mirrorlist) repo.mirrorlist = mirrorlist;
    const gpgkey = optString(params.gpgkey);
    if (gpgkey) repo.gpgkey = gpgkey;
    return [
      {
        path: optString(params.file) ?? `/etc/yum.repos.d/${name}.repo`,
        content: yumRepoFile(repo),
        mode: 0o644,
      },
    ];
  }
  let source: AptSource;
  const line = optString(params.line) ?? (/^\s*deb(-src)?\s/.test(name) ? name : undefined);
  if (line) {
    source = parseOneLine(line);
  } else {
    const uris = listParam(params.uris);
    const suites = listParam(params.suites);
    if (uris.length === 0 || suites.length === 0) {
      throw new StateError("give a one-line source (name or line: deb ...), or uris and suites");
    }
    source = {
      types: listParam(params.types ?? "deb"),
      uris,
      suites,
      components: listParam(params.components),
      options: {},
    };
    const arch = listParam(params.architectures);
    if (arch.length) source.options.arch = arch.join(",");
  }
  const format = optString(params.format) ?? (line ? "oneline" : "deb822");
  const label = slug(line ? `${source.uris[0]}-${source.suites[0]}` : name);
  const files: WantedFile[] = [];
  const keyText = optString(params.key_text);
  let keyring = optString(params.keyring);
  if (keyText) {
    keyring ??= `/etc/apt/keyrings/${label}.${keyText.includes("BEGIN PGP") ? "asc" : "gpg"}`;
    files.push({ path: keyring, content: ensureNewline(keyText), mode: 0o644 });
  }
  if (keyring) source.options["signed-by"] = keyring;
  const file =
    optString(params.file) ?? `/etc/apt/sources.list.d/${label}.${format === "deb822" ? "sources" : "list"}`;
  const enabled = boolParam(params.enabled, true);
  const content =
    format === "deb822"
      ? formatDeb822(source, enabled)
      : enabled
        ? formatOneLine(source)
        : formatOneLine(source)
            .split("\n")
            .map((l) => (l ? `# ${l}` : l))
            .join("\n");
  files.unshift({ path: file, content, mode: 0o644 });
  return files;
}

async function planManaged(params: Params, ctx: ModuleContext): Promise<Plan> {
  let files: WantedFile[];
  const kind = repoKind(params, ctx.facts);
  const changed: { file: WantedFile; before: string | undefined }[] = [];
  try {
    files = wantedFiles(params, kind);
    for (const f of files) {
      const before = await readTextOrUndefined(f.path);
      if (before !== f.content) changed.push({ file: f, before });
    }
  } catch (err) {
    return failed(errText(err));
  }
  const name = String(params.name);
  if (changed.length === 0) return unchanged(`Repository ${name} is already configured (${files[0]!.path})`);
  const changes: Record<string, unknown> = {};
  for (const c of changed) changes[c.file.path] = c.before === undefined ? "new" : "updated";
  const refresh = kind === "apt" && boolParam(params.refresh, false);
  return {
    changes,
    comment: `Repository ${name} would be ${changed.some((c) => c.before !== undefined) ? "updated" : "added"}`,
    diff: changed.map((c) => unifiedDiff(c.before ?? "", c.file.content, c.file.path, c.file.path)).join(""),
    undo: { refs: changed.map((c) => ({ kind: "file" as const, key: c.file.path })) },
    apply: async (): Promise<ApplyOutcome> => {
      try {
        for (const c of changed) await writeFileAtomic(c.file.path, c.file.content, { mode: c.file.mode });
        if (refresh) {
          const r = await run(aptUpdateArgv(), { env: { ...APT_ENV } });
          if (r.retcode !== 0) return { result: false, changes, comment: failure("apt-get update", r) };
        }
        return { result: true, changes, comment: `Repository ${name} configured in ${files[0]!.path}` };
      } catch (err) {
        return applyFailed(errText(err));
      }
    },
  };
}

async function planAbsent(params: Params, ctx: ModuleContext): Promise<Plan> {
  let paths: string[];
  try {
    const kind = repoKind(params, ctx.facts);
    const explicit = optString(params.file);
    paths = explicit ? [explicit] : [wantedFiles(params, kind)[0]!.path];
    const keyring = optString(params.keyring);
    if (keyring) paths.push(keyring);
    const present: string[] = [];
    for (const p of paths) if ((await readTextOrUndefined(p)) !== undefined) present.push(p);
    paths = present;
  } catch (err) {
    return failed(errText(err));
  }
  if (paths.length === 0) return unchanged(`Repository ${String(params.name)} is not configured`);
  const changes = Object.fromEntries(paths.map((p) => [p, "removed"]));
  return {
    changes,
    comment: `${paths.join(", ")} would be removed`,
    undo: { refs: paths.map((key) => ({ kind: "file" as const, key })) },
    apply: async () => {
      for (const p of paths) await rm(p, { force: true });
      return { result: true, changes, comment: `${paths.join(", ")} removed` };
    },
  };
}

const COMMON: Record<string, ParamSpec> = {
  name: {
    type: "string",
    doc: "apt: a one-line source (deb [opts] uri suite components...) or a label; yum: the repo id.",
    required: true,
  },
  file: {
    type: "string",
    doc: "The file to write (default derived from the source, under sources.list.d or yum.repos.d).",
  },
  kind: { type: "string", doc: "apt or yum; default from the pkg_manager fact.", enum: ["apt", "yum"] },
  keyring: {
    type: "string",
    doc: "apt: keyring path referenced with signed-by (written from key_text when given).",
  },
};

const managed: StateFunction = {
  doc:
    "Makes sure a package repository is configured: an apt source (one-line or deb822, with an optional " +
    "signing key from key_text) or a yum .repo file.",
  primary: "name",
  footprint: () => ({ writes: ["pkg", "/etc/apt"] }),
  params: {
    ...COMMON,
    line: { type: "string", doc: "apt: the one-line source when name is only a label." },
    format: {
      type: "string",
      doc: "apt: oneline (.list) or deb822 (.sources).",
      enum: ["oneline", "deb822"],
    },
    types: { type: ["string", "list"], doc: "apt deb822: deb and/or deb-src.", default: "deb" },
    uris: { type: ["string", "list"], doc: "apt deb822: repository URIs." },
    suites: { type: ["string", "list"], doc: "apt deb822: suites (e.g. bookworm)." },
    components: { type: ["string", "list"], doc: "apt deb822: components (e.g. main)." },
    architectures: { type: ["string", "list"], doc: "apt: restrict to these architectures." },
    key_text: {
      type: "string",
      doc: "apt: the repository signing key (ASCII-armored), written to the keyring.",
    },
    enabled: { type: "boolean", doc: "Whether the repository is enabled.", default: true },
    refresh: { type: "boolean", doc: "apt: run apt-get update after a change.", default: false },
    humanname: { type: "string", doc: "yum: the display name." },
    baseurl: { type: "string", doc: "yum: the base URL." },
    mirrorlist: { type: "string", doc: "yum: the mirror list URL." },
    gpgcheck: { type: "boolean", doc: "yum: verify package signatures.", default: true },
    gpgkey: { type: "string", doc: "yum: URL or file:// path of the signing key." },
  },
  plan: planManaged,
};

const absent: StateFunction = {
  doc: "Makes sure a repository definition file (and the keyring, when given) is gone.",
  primary: "name",
  footprint: () => ({ writes: ["pkg", "/etc/apt"] }),
  params: COMMON,
  plan: planAbsent,
};

export const family: ModuleFamily = {
  name: "pkgrepo",
  doc: "Package repositories: apt sources (with signed-by keyrings) and yum/dnf .repo files.",
  states: withRevertDocs(
    { managed, absent },
    {
      managed:
        "Restores the repository and key files' previous bytes, or removes those the run created; the package lists a refresh fetched stay until the next refresh.",
      absent: "Restores the repository files the run removed.",
    },
  ),
};
