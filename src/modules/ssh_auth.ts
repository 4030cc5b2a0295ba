/**
 * The `ssh_auth` family: public keys in a user's authorized_keys file.
 *
 * plan() reads the user's passwd entry and the key file once and computes the file's new text: a
 * key is found by its base64 body, so changing its options or comment rewrites that one line in
 * place. apply() creates ~/.ssh (0700) and the file (0600) owned by the user when they are missing
 * and writes the text atomically.
 */
import { chown, mkdir } from "node:fs/promises";
import { dirname, isAbsolute, join, normalize } from "node:path";
import { statOrUndefined } from "../util/files.js";
import { unifiedDiff } from "./diff.js";
import {
  applying,
  guard,
  joinText,
  lstatOrUndefined,
  readTextOrUndefined,
  replaceFile,
  reqStr,
  StateError,
  splitText,
  str,
  strList,
  unchanged,
  withRevertDocs,
} from "./support.js";
import { type PasswdEntry, readAccounts } from "./system/accounts.js";
import type { ExecFunction, ModuleFamily, ParamSpec, Params, Plan, StateFunction } from "./types.js";

export interface AuthorizedKey {
  options?: string;
  enc: string;
  key: string;
  comment?: string;
}

const KEY_TYPE_RE = /^(?:ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+$/;
const KEY_BODY_RE = /^[A-Za-z0-9+/]+={0,3}$/;

/** The first field of a line, where quoted option values may contain spaces. */
function firstField(text: string): [string, string] {
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\\" && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && /\s/.test(c)) return [text.slice(0, i), text.slice(i).trimStart()];
  }
  return [text, ""];
}

/** Parses one authorized_keys line; undefined for blanks, comments and lines that are not keys. */
export function parseKeyLine(line: string): AuthorizedKey | undefined {
  const text = line.trim();
  if (text === "" || text.startsWith("#")) return undefined;
  let [first, rest] = firstField(text);
  let options: string | undefined;
  if (!KEY_TYPE_RE.test(first)) {
    options = first;
    [first, rest] = firstField(rest);
    if (!KEY_TYPE_RE.test(first)) return undefined;
  }
  const [key, comment] = firstField(rest);
  if (!KEY_BODY_RE.test(key)) return undefined;
  const out: AuthorizedKey = { enc: first, key };
  if (options !== undefined) out.options = options;
  if (comment !== "") out.comment = comment;
  return out;
}

function formatKey(k: AuthorizedKey): string {
  return `${k.options ? `${k.options} ` : ""}${k.enc} ${k.key}${k.comment ? ` ${k.comment}` : ""}`;
}

/** A short, readable label for a key in changes and comments. */
function label(k: AuthorizedKey): string {
  return `${k.enc} ...${k.key.slice(-12)}${k.comment ? ` ${k.comment}` : ""}`;
}

/** The key a state wants: `name` is a bare key body or a whole authorized_keys line. */
function wantedKey(params: Params): AuthorizedKey {
  const name = reqStr(params, "name").trim();
  if (/[\r\n]/.test(name)) throw new StateError("name must be one key (a single line)");
  let k: AuthorizedKey;
  if (/\s/.test(name)) {
    const parsed = parseKeyLine(name);
    if (!parsed)
      throw new StateError(`name is not an authorized_keys line: ${JSON.stringify(name.slice(0, 60))}`);
    k = parsed;
  } else {
    if (!KEY_BODY_RE.test(name)) {
      throw new StateError("name is not a public key: expected the base64 key body or a whole key line");
    }
    k = { enc: str(params, "enc") ?? "ssh-rsa", key: name };
  }
  const enc = str(params, "enc");
  if (enc !== undefined && !/\s/.test(name)) k.enc = enc;
  if (!KEY_TYPE_RE.test(k.enc))
    throw new StateError(`enc: "${k.enc}" is not an SSH key type (e.g. ssh-ed25519)`);
  const comment = str(params, "comment");
  if (comment !== undefined) {
    if (/[\r\n]/.test(comment)) throw new StateError("comment must be a single line");
    if (comment === "") delete k.comment;
    else k.comment = comment;
  }
  const options = strList(params, "options");
  if (options !== undefined) {
    if (options.some((o) => /[\r\n]/.test(o))) throw new StateError("options must not contain newlines");
    if (options.length === 0) delete k.options;
    else k.options = options.join(",");
  }
  return k;
}

interface Target {
  user: PasswdEntry;
  file: string;
}

async function target(params: Params): Promise<Target> {
  const name = reqStr(params, "user");
  const user = (await readAccounts()).users.get(name);
  if (!user) throw new StateError(`user "${name}" does not exist`);
  const config = (str(params, "config") ?? ".ssh/authorized_keys")
    .replaceAll("%h", user.home)
    .replaceAll("%u", name);
  const file = normalize(isAbsolute(config) ? config : join(user.home, config));
  // Root writes this file for the user: a symlink planted by the user could point anywhere.
  for (const p of [dirname(file), file]) {
    if ((await lstatOrUndefined(p))?.isSymbolicLink()) {
      throw new StateError(`${p} is a symbolic link; refusing to manage keys through it`);
    }
  }
  return { user, file };
}

function writePlan(
  t: Target,
  before: string | undefined,
  text: string,
  changes: Record<string, unknown>,
  what: string,
): Plan {
  return {
    changes,
    comment: `${t.file}: ${what}`,
    diff: unifiedDiff(before ?? "", text, t.file, t.file),
    undo: { refs: [{ kind: "file", key: t.file }] },
    apply: applying(async () => {
      const dir = dirname(t.file);
      if (!(await statOrUndefined(dir))) {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        await chown(dir, t.user.uid, t.user.gid);
      }
      await replaceFile(t.file, text, 0o600);
      if (before === undefined) await chown(t.file, t.user.uid, t.user.gid);
      return { comment: `${t.file}: ${what.replace("would be", "was")}` };
    }),
  };
}

async function planPresent(params: Params): Promise<Plan> {
  const want = wantedKey(params);
  const t = await target(params);
  const before = await readTextOrUndefined(t.file);
  const text = splitText(before ?? "");
  const line = formatKey(want);
  const same = text.lines.findIndex((l) => parseKeyLine(l)?.key === want.key);
  if (same >= 0 && text.lines[same]!.trim() === line) {
    return unchanged(`Key ${label(want)} is already authorized for ${t.user.name}`);
  }
  const lines = [...text.lines];
  let after: string;
  let changes: Record<string, unknown>;
  if (same >= 0) {
    changes = { user: t.user.name, key: label(want), old: lines[same], new: line };
    lines[same] = line;
    after = joinText({ lines, eol: text.eol });
  } else {
    changes = { user: t.user.name, key: label(want), added: true };
    after = joinText({ lines: [...lines, line], eol: true });
  }
  const verb = same >= 0 ? "updated" : "added";
  return writePlan(t, before, after, changes, `key ${label(want)} would be ${verb}`);
}

async function planAbsent(params: Params): Promise<Plan> {
  const want = wantedKey(params);
  const t = await target(params);
  const before = await readTextOrUndefined(t.file);
  const text = splitText(before ?? "");
  const kept = text.lines.filter((l) => parseKeyLine(l)?.key !== want.key);
  if (kept.length === text.lines.length)
    return unchanged(`Key ${label(want)} is not authorized for ${t.user.name}`);
  const after = joinText({ lines: kept, eol: text.eol });
  return writePlan(
    t,
    before,
    after,
    { user: t.user.name, key: label(want), removed: true },
    `key ${label(want)} would be removed`,
  );
}

const common: Record<string, ParamSpec> = {
  name: {
    type: "string",
    doc: "The public key: its base64 body, or a whole authorized_keys line (options, type, key, comment).",
    required: true,
    aliases: ["key"],
  },
  user: { type: "string", doc: "Whose authorized_keys file.", required: true },
  enc: {
    type: "string",
    doc: "Key type when name is a bare key body (ssh-ed25519, ssh-rsa, ...).",
    default: "ssh-rsa",
  },
  config: {
    type: "string",
    doc: "The key file, relative to the user's home unless absolute; %h and %u are expanded.",
    default: ".ssh/authorized_keys",
  },
};

const present: StateFunction = {
  doc:
    "Ensures a public key is in a user's authorized_keys. A key already there with other options or " +
    "comment is rewritten in place; ~/.ssh (0700) and the file (0600) are created owned by the user.",
  primary: "name",
  footprint: (p) => ({ writes: [`ssh_auth:${String(p.user ?? "root")}`], reads: ["*"] }),
  params: {
    ...common,
    comment: { type: "string", doc: "Comment after the key (default: the one in name, if any)." },
    options: {
      type: ["list", "string"],
      items: "string",
      doc: 'Key options, e.g. ["no-pty", "from=\\"10.0.0.0/8\\""].',
    },
  },
  plan: (params) => guard(() => planPresent(params)),
};

const absent: StateFunction = {
  doc: "Ensures a public key (matched by its base64 body) is not in a user's authorized_keys.",
  primary: "name",
  footprint: (p) => ({ writes: [`ssh_auth:${String(p.user ?? "root")}`], reads: ["*"] }),
  params: common,
  plan: (params) => guard(() => planAbsent(params)),
};

const exec: Record<string, ExecFunction> = {
  auth_keys: {
    doc: "Returns the keys in a user's authorized_keys file (type, key, comment, options).",
    params: { user: common.user!, config: common.config! },
    positional: ["user"],
    readOnly: true,
    run: async (params) => {
      const t = await target(params);
      const text = (await readTextOrUndefined(t.file)) ?? "";
      return text
        .split("\n")
        .map(parseKeyLine)
        .filter((k) => k !== undefined);
    },
  },
};

const SSH_REVERT =
  "Restores the authorized_keys file's previous bytes, mode and owner, or removes it (and the .ssh directory) when the run created them.";

export const family: ModuleFamily = {
  name: "ssh_auth",
  doc: "Public keys in users' authorized_keys files.",
  states: withRevertDocs(
    { present, absent },
    {
      present: SSH_REVERT,
      absent: SSH_REVERT,
    },
  ),
  exec,
};
