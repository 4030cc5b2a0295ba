/**
 * Settings merge rule: maps merge key by key, recursively; anything else (lists, scalars, a map
 * meeting a non-map) is replaced by the later value. Lists replace rather than append so a later,
 * more specific file can shrink a list, which appending could never do.
 */

export function isPlainMap(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Assignment that treats `__proto__` as an ordinary key: settings come from files, not code. */
export function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Returns a new tree; neither input is modified. */
export function deepMerge(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(base)) setOwn(out, k, v);
  for (const [k, v] of Object.entries(over)) {
    const prev = Object.hasOwn(out, k) ? out[k] : undefined;
    setOwn(out, k, isPlainMap(prev) && isPlainMap(v) ? deepMerge(prev, v) : v);
  }
  return out;
}
