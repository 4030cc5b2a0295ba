/** Salt's nested look-up on Python values. */
import { iterate, str } from "./values.js";

/** `a:b:0` look-up through dicts and lists (salt.utils.data.traverse_dict_and_list). */
export function traverse(data: unknown, key: unknown, dflt: unknown, delimiter = ":"): unknown {
  const parts = typeof key === "string" ? key.split(delimiter) : iterate(key).map(str);
  let ptr = data;
  for (const each of parts) {
    if (Array.isArray(ptr)) {
      const list: unknown[] = ptr;
      const idx = /^-?\d+$/.test(each.trim()) ? Number(each) : Number.NaN;
      let found = false;
      for (const embedded of list) {
        if (embedded instanceof Map) {
          const k = Number.isNaN(idx) ? each : idx;
          if (embedded.has(k)) {
            ptr = embedded.get(k);
            found = true;
            break;
          }
        }
      }
      if (found) continue;
      if (Number.isNaN(idx)) return dflt;
      const i = idx < 0 ? list.length + idx : idx;
      if (i < 0 || i >= list.length) return dflt;
      ptr = list[i];
    } else if (ptr instanceof Map) {
      if (!ptr.has(each)) return dflt;
      ptr = ptr.get(each);
    } else {
      return dflt;
    }
  }
  return ptr;
}
