/** `a:b:c` look-up through nested maps (and list indexes), Salt's traverse_dict, on plain data. */

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

export function colonGet(data: unknown, path: string, fallback?: unknown, delimiter = ":"): unknown {
  if (isPlainObject(data) && Object.hasOwn(data, path)) return data[path];
  let cur: unknown = data;
  for (const part of path.split(delimiter)) {
    if (Array.isArray(cur)) {
      const i = Number(part);
      if (!Number.isInteger(i) || i < 0 || i >= cur.length) return fallback;
      cur = cur[i];
    } else if (isPlainObject(cur) && Object.hasOwn(cur, part)) {
      cur = cur[part];
    } else {
      return fallback;
    }
  }
  return cur === undefined ? fallback : cur;
}
