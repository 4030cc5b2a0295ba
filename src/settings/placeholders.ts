/**
 * Secret placeholders: published settings files carry `ZESTER_SECRET[<id>]` where the operator
 * wrote `!encrypted ENC[...]`; the peel swaps each for its plaintext after resolving, wherever it
 * ended up (a whole value, or inside a larger string built by a template). Masking is the way
 * back for output: plaintexts become `****` before anything is printed or published.
 */
import { createHash } from "node:crypto";
import { SecretError } from "./errors.js";
import { isPlainMap, setOwn } from "./merge.js";

/** Loose on purpose: an id the sanitizer did not produce is still recognised, and reported. */
export const PLACEHOLDER_PATTERN = /ZESTER_SECRET\[([^\]\s]*)\]/g;
export const PLACEHOLDER_PREFIX = "ZESTER_SECRET[";
export const MASK = "****";

export function placeholder(id: string): string {
  return `${PLACEHOLDER_PREFIX}${id}]`;
}

/**
 * Stable across republishes (same file and key path → same id), so cached files and a sealed
 * blob made from an earlier publish still agree. `ordinal` separates repeats of one key path
 * in one file (e.g. the two branches of an `{% if %}`).
 */
export function secretId(file: string, keyPath: string, ordinal = 0): string {
  const h = createHash("sha256").update(file).update("\0").update(keyPath);
  if (ordinal > 0) h.update("\0").update(String(ordinal));
  return h.digest("hex").slice(0, 20);
}

/** Every placeholder id in a text, in order of appearance, without duplicates. */
export function placeholderIds(text: string): string[] {
  const out = new Set<string>();
  for (const m of text.matchAll(PLACEHOLDER_PATTERN)) out.add(m[1]!);
  return [...out];
}

function joinPath(path: readonly (string | number)[]): string {
  if (path.length === 0) return "(root)";
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s === "" ? p : `.${p}`;
  return s;
}

type Path = readonly (string | number)[];

/** Rebuilds `tree` with `fn` applied to every string value and map key, with its key path. */
function mapStrings(
  tree: Record<string, unknown>,
  fn: (s: string, path: Path) => string,
): Record<string, unknown> {
  const walk = (v: unknown, path: Path): unknown => {
    if (typeof v === "string") return fn(v, path);
    if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, i]));
    if (isPlainMap(v)) {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        const key = fn(k, [...path, k]);
        setOwn(out, key, walk(x, [...path, key]));
      }
      return out;
    }
    return v;
  };
  return walk(tree, []) as Record<string, unknown>;
}

/** Key paths holding a placeholder, each with the ids it references, in tree order. */
export function placeholderPaths(tree: Record<string, unknown>): { path: string; ids: string[] }[] {
  const found: { path: string; ids: string[] }[] = [];
  mapStrings(tree, (s, path) => {
    if (s.includes(PLACEHOLDER_PREFIX)) {
      const ids = placeholderIds(s);
      if (ids.length > 0) found.push({ path: joinPath(path), ids });
    }
    return s;
  });
  return found;
}

/**
 * Replaces every placeholder in `tree` (values and keys, at any depth) with its plaintext.
 * `secrets` undefined means none were delivered. Every unresolved placeholder is reported in one
 * SecretError naming the key paths; nothing is ever replaced by an empty string.
 */
export function substituteSecrets(
  tree: Record<string, unknown>,
  secrets: Readonly<Record<string, string>> | undefined,
): Record<string, unknown> {
  const missing: { path: string; id: string }[] = [];
  const out = mapStrings(tree, (s, path) => {
    if (!s.includes(PLACEHOLDER_PREFIX)) return s;
    return s.replace(PLACEHOLDER_PATTERN, (whole, id: string) => {
      if (secrets && Object.hasOwn(secrets, id)) return secrets[id]!;
      missing.push({ path: joinPath(path), id });
      return whole;
    });
  });
  if (missing.length > 0) {
    const why =
      secrets === undefined
        ? "no sealed secrets were delivered to this peel"
        : "the master did not seal it for this peel (its top.zy match may have changed since, or the value was renamed)";
    const lines = missing.map((m) => `  ${m.path}: ${placeholder(m.id)}`);
    throw new SecretError(
      `${missing.length} settings value${missing.length === 1 ? "" : "s"} reference a secret this peel cannot open ` +
        `(${why}):\n${lines.join("\n")}`,
      [...new Set(missing.map((m) => m.path))],
    );
  }
  return out;
}

/** A function that masks every given plaintext in a string (longest first, so overlaps mask fully). */
export function secretMasker(
  secrets: Readonly<Record<string, string>> | Iterable<string>,
): (s: string) => string {
  const values =
    Symbol.iterator in Object(secrets) ? [...(secrets as Iterable<string>)] : Object.values(secrets);
  const needles = new Set<string>();
  for (const v of values) {
    if (v === "") continue;
    needles.add(v);
    // The same secret as it appears inside JSON text (quotes, newlines escaped).
    const json = JSON.stringify(v).slice(1, -1);
    if (json !== v) needles.add(json);
  }
  const list = [...needles].sort((a, b) => b.length - a.length);
  if (list.length === 0) return (s) => s;
  return (s) => {
    let out = s;
    for (const n of list) if (out.includes(n)) out = out.split(n).join(MASK);
    return out;
  };
}

/**
 * Returns a copy of `value` with every plaintext replaced by `****`, in strings, map keys and
 * nested values: for state.show_sls, logs, job returns. Non-plain objects are returned as they are.
 */
export function maskSecrets<T>(value: T, secrets: Readonly<Record<string, string>> | Iterable<string>): T {
  const mask = secretMasker(secrets);
  const walk = (v: unknown): unknown => {
    if (typeof v === "string") return mask(v);
    if (Array.isArray(v)) return v.map(walk);
    if (isPlainMap(v)) {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) setOwn(out, mask(k), walk(x));
      return out;
    }
    return v;
  };
  return walk(value) as T;
}
