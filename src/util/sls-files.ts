/**
 * How a dotted name (`web.nginx`) finds its file in a states or settings tree. Salt's trees use
 * `.sls`, Zester's `.zy`; both load with the same rules and a tree may mix them. `web.nginx` is
 * `web/nginx.<ext>`, else `web/nginx/init.<ext>`. The same name with both extensions at one level
 * is an error: silently preferring one would let a stale copy shadow the file being edited.
 */

export const SLS_EXTENSIONS = [".sls", ".zy"] as const;

/** `a.b` → look-up levels in order: `[a/b.sls, a/b.zy]`, then `[a/b/init.sls, a/b/init.zy]`. */
export function refLevels(ref: string): string[][] {
  const base = ref.split(".").join("/");
  return [base, `${base}/init`].map((stem) => SLS_EXTENSIONS.map((ext) => `${stem}${ext}`));
}

/** `a/b/init.sls`, `init.zy`: a package's own file, against which `.x` includes resolve. */
export function isInitFile(file: string): boolean {
  const name = file.slice(file.lastIndexOf("/") + 1);
  return SLS_EXTENSIONS.some((ext) => name === `init${ext}`);
}

/** For "not found" messages: `a/b.sls, a/b.zy, a/b/init.sls or a/b/init.zy`. */
export function lookedFor(ref: string): string {
  const all = refLevels(ref).flat();
  return `${all.slice(0, -1).join(", ")} or ${all[all.length - 1]}`;
}

/** Both `x.sls` and `x.zy` (or both init files) exist for one name. */
export class AmbiguousRefError extends Error {
  override name = "AmbiguousRefError";
  constructor(
    readonly ref: string,
    readonly files: readonly string[],
  ) {
    super(`"${ref}" is both ${files.join(" and ")}: keep one of them`);
  }
}

/**
 * Finds `ref` through `read` (undefined = absent). Every candidate of a level is read, so a
 * conflict is always reported; levels after the first hit are not probed. Throws AmbiguousRefError.
 */
export async function findRef<T>(
  ref: string,
  read: (file: string) => Promise<T | undefined>,
): Promise<{ file: string; value: T } | undefined> {
  for (const level of refLevels(ref)) {
    const got = await Promise.all(level.map(read));
    const hits = level.flatMap((file, i) => (got[i] === undefined ? [] : [{ file, value: got[i] as T }]));
    if (hits.length > 1)
      throw new AmbiguousRefError(
        ref,
        hits.map((h) => h.file),
      );
    if (hits.length === 1) return hits[0];
  }
  return undefined;
}
