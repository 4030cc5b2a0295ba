/**
 * The master's publish step: every `!encrypted ENC[...]` in the operator's tree is cut out and
 * replaced by a `ZESTER_SECRET[<id>]` placeholder, so the `settings-files` bucket (readable by
 * every peel) holds neither plaintext nor ciphertext meant for the master.
 *
 * This works on source text, before any template runs: a settings file is Jinja first and YAML
 * only after rendering, per peel. Replacements keep every line where it was, so later template
 * and YAML errors still point at the operator's lines.
 */
import type { KeyPair } from "@nats-io/nkeys";
import type { Diagnostic } from "../state/diagnostics.js";
import { excerpt } from "../state/diagnostics.js";
import { errText } from "../util/errors.js";
import { decryptValue, ENC_PREFIX } from "./crypto.js";
import { SecretError, SettingsError } from "./errors.js";
import { PLACEHOLDER_PREFIX, placeholder, secretId } from "./placeholders.js";

/** One secret cut out of the tree, with where it came from (for error messages and selection). */
export interface ExtractedSecret {
  id: string;
  file: string;
  /** Dotted key path as written in the file, e.g. `postgres.app.password`. */
  keyPath: string;
  line: number;
  col: number;
  /** The `ENC[nkey,...]` value, sealed to the master's key. */
  value: string;
}

export interface SanitizedTree {
  /** Relative path → text with placeholders: what the master publishes. */
  files: Record<string, string>;
  /** Placeholder id → the secret it stands for. */
  secrets: Record<string, ExtractedSecret>;
}

/** Source only: each scan makes its own global RegExp, whose lastIndex is state. */
const TAG_SOURCE = String.raw`(^|[\s:[{,-])!encrypted(?=\s|$)`;
const INLINE = /^\s+(["']?)ENC\[nkey,([A-Za-z0-9+/=]+)\]\1/;
const BLOCK_HEADER = /^\s*[|>][-+1-9]{0,2}\s*(#.*)?$/;
const BLOCK_BODY = /^ENC\[nkey,([A-Za-z0-9+/=]+)\](\s*#.*)?$/;
const KEY_LINE = /^(\s*)((?:-\s+)*)("[^"]*"|'[^']*'|[^\s#'"{[][^:#]*?)\s*:(?:\s|$)/;
const OWN_KEY = /^(\s*)((?:-\s+)*)("[^"]*"|'[^']*'|[^\s#'"{[][^:#]*?)\s*:\s*$/;
const NON_YAML_LINE = /^\s*(#|\{[%#{]|$)/;

function indentOf(line: string): number {
  return line.length - line.trimStart().length;
}

function unquote(key: string): string {
  return /^(["']).*\1$/.test(key) ? key.slice(1, -1) : key;
}

/** True when `col` (0-based) sits after a YAML comment marker on the line. */
function inComment(line: string, col: number): boolean {
  const m = /(^|\s)#/.exec(line);
  return m !== null && m.index + m[1]!.length < col;
}

/** The key path of a value at `line[col]`, from the indentation of the lines above it. */
function keyPathAt(lines: readonly string[], index: number, tagCol: number): string {
  const line = lines[index]!;
  const own = OWN_KEY.exec(line.slice(0, tagCol));
  const lead = own ?? KEY_LINE.exec(line);
  const parts: string[] = [];
  // In a flow collection or a bare list item the value has no key of its own: name it by column.
  if (!own) parts.push(`@${tagCol + 1}`);
  let column = indentOf(line);
  if (lead) {
    parts.push(unquote(lead[3]!.trim()));
    column = lead[1]!.length + lead[2]!.length;
  }
  for (let j = index - 1; j >= 0 && column > 0; j--) {
    const l = lines[j]!;
    if (NON_YAML_LINE.test(l)) continue;
    const m = KEY_LINE.exec(l);
    if (!m) continue;
    const keyCol = m[1]!.length + m[2]!.length;
    if (keyCol < column) {
      parts.push(unquote(m[3]!.trim()));
      column = keyCol;
    }
  }
  return parts.reverse().join(".");
}

interface FileResult {
  text: string;
  secrets: ExtractedSecret[];
}

function sanitizeFile(file: string, text: string, diags: Diagnostic[]): FileResult {
  const lines = text.split("\n");
  const secrets: ExtractedSecret[] = [];
  const ordinals = new Map<string, number>();
  const fail = (line: number, col: number, message: string) =>
    diags.push({ kind: "structure", file, line, col, message, excerpt: excerpt(text, line, col) });

  for (let i = 0; i < lines.length; i++) {
    const original = lines[i]!;
    const reserved = original.indexOf(PLACEHOLDER_PREFIX);
    if (reserved >= 0) {
      fail(
        i + 1,
        reserved + 1,
        `${PLACEHOLDER_PREFIX}...] is reserved for sanitized secrets; write !encrypted ENC[...] instead`,
      );
    }
    let out = "";
    let from = 0;
    let consumedTo = i;
    const tag = new RegExp(TAG_SOURCE, "g");
    for (let m = tag.exec(original); m !== null; m = tag.exec(original)) {
      const tagCol = m.index + m[1]!.length;
      if (inComment(original, tagCol)) break;
      const after = original.slice(tagCol + "!encrypted".length);
      const keyPath = keyPathAt(lines, i, tagCol);
      let value: string | undefined;
      let end: number;
      const inline = INLINE.exec(after);
      if (inline) {
        value = `${ENC_PREFIX}${inline[2]}]`;
        end = tagCol + "!encrypted".length + inline[0].length;
      } else if (BLOCK_HEADER.test(after)) {
        // Block content sits deeper than the key's column (`- pw: |` counts from `pw`).
        const keyIndent = /^\s*(?:-\s+)*/.exec(original)![0].length;
        let j = i + 1;
        const body: string[] = [];
        while (j < lines.length && (lines[j]!.trim() === "" || indentOf(lines[j]!) > keyIndent)) {
          body.push(lines[j]!.trim());
          j++;
        }
        // Trailing blank lines belong to the document, not to the block.
        while (j > i + 1 && lines[j - 1]!.trim() === "") j--;
        const joined = body.join("");
        const b = BLOCK_BODY.exec(joined);
        if (!b) {
          fail(i + 2, keyIndent + 1, "an !encrypted block must hold exactly one ENC[nkey,<base64>] value");
          break;
        }
        value = `${ENC_PREFIX}${b[1]}]`;
        end = original.length;
        consumedTo = j - 1;
      } else {
        fail(
          i + 1,
          tagCol + 1,
          "!encrypted must be followed by ENC[nkey,<base64>] (make one with `zester settings encrypt`)",
        );
        break;
      }
      const n = ordinals.get(keyPath) ?? 0;
      ordinals.set(keyPath, n + 1);
      const id = secretId(file, keyPath, n);
      secrets.push({ id, file, keyPath, line: i + 1, col: tagCol + 1, value });
      // Double-quoted: a bracket in a plain scalar would break inside a YAML flow collection.
      out += `${original.slice(from, tagCol)}"${placeholder(id)}"`;
      from = end;
      tag.lastIndex = end;
      if (consumedTo !== i) break;
    }
    out += original.slice(from);
    const stray = out.indexOf(ENC_PREFIX);
    if (stray >= 0 && !inComment(out, stray)) {
      fail(i + 1, stray + 1, "an encrypted value needs the !encrypted tag in front of it");
    }
    lines[i] = out;
    // Block lines are emptied, not removed, so line numbers stay the operator's.
    for (let k = i + 1; k <= consumedTo; k++) lines[k] = "";
    i = consumedTo;
  }
  return { text: lines.join("\n"), secrets };
}

/**
 * Sanitizes a whole tree (relative path → text). Throws SettingsError listing every malformed
 * `!encrypted` use with file:line:column.
 */
export function sanitizeSettingsTree(tree: Readonly<Record<string, string>>): SanitizedTree {
  const diags: Diagnostic[] = [];
  const files: Record<string, string> = {};
  const secrets: Record<string, ExtractedSecret> = {};
  for (const [file, text] of Object.entries(tree)) {
    const r = sanitizeFile(file, text, diags);
    files[file] = r.text;
    for (const s of r.secrets) secrets[s.id] = s;
  }
  if (diags.length > 0) throw new SettingsError(diags);
  return { files, secrets };
}

/**
 * Opens every extracted secret with the master's curve key: id → plaintext. All failures are
 * reported together, each with its file, line and key path.
 */
export function openExtractedSecrets(
  masterCurve: KeyPair,
  secrets: Readonly<Record<string, ExtractedSecret>>,
): Record<string, string> {
  const out: Record<string, string> = {};
  const failures: string[] = [];
  const paths: string[] = [];
  for (const [id, s] of Object.entries(secrets)) {
    try {
      out[id] = decryptValue(masterCurve, s.value);
    } catch (err) {
      failures.push(`  ${s.file}:${s.line}:${s.col} ${s.keyPath}: ${errText(err)}`);
      paths.push(s.keyPath);
    }
  }
  if (failures.length > 0) {
    throw new SecretError(
      `${failures.length} encrypted settings value${failures.length === 1 ? "" : "s"} cannot be opened:\n${failures.join("\n")}`,
      paths,
    );
  }
  return out;
}

/** The ids of the secrets that came from the given files. */
export function secretIdsInFiles(
  secrets: Readonly<Record<string, ExtractedSecret>>,
  files: Iterable<string>,
): string[] {
  const wanted = new Set(files);
  return Object.values(secrets)
    .filter((s) => wanted.has(s.file))
    .map((s) => s.id);
}
