/**
 * Python-flavoured views of plain data for templates. Salt authors write `pillar.get('a:b', x)`,
 * `d.items()`, `d.keys()`; nunjucks only sees JavaScript objects, so data handed to a template is
 * wrapped in read-only proxies that answer those method names without copying the data.
 */

const DICT_METHODS = new Set(["items", "keys", "values", "get", "has_key"]);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** `a:b:c` look-up through nested maps (and list indexes), Salt's traverse_dict. */
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

/** Wraps values lazily; one cache per render keeps identity stable for `is sameas` and loops. */
export class TemplateData {
  private readonly cache = new WeakMap<object, unknown>();

  wrap(value: unknown): unknown {
    if (value === null || typeof value !== "object") return value;
    const hit = this.cache.get(value);
    if (hit !== undefined) return hit;
    let proxy: unknown;
    if (Array.isArray(value)) {
      proxy = new Proxy(value, {
        get: (target, prop, receiver) => {
          const v = Reflect.get(target, prop, receiver);
          return typeof prop === "string" && /^\d+$/.test(prop) ? this.wrap(v) : v;
        },
      });
    } else if (isPlainObject(value)) {
      const obj = value;
      proxy = new Proxy(obj, {
        get: (target, prop, receiver) => {
          if (typeof prop !== "string") return Reflect.get(target, prop, receiver);
          if (Object.hasOwn(target, prop)) return this.wrap(target[prop]);
          if (DICT_METHODS.has(prop)) return this.method(obj, prop);
          return undefined;
        },
      });
    } else {
      return value;
    }
    this.cache.set(value, proxy);
    return proxy;
  }

  private method(obj: Record<string, unknown>, name: string): (...args: unknown[]) => unknown {
    switch (name) {
      case "items":
        return () => Object.entries(obj).map(([k, v]) => [k, this.wrap(v)]);
      case "keys":
        return () => Object.keys(obj);
      case "values":
        return () => Object.values(obj).map((v) => this.wrap(v));
      case "has_key":
        return (k: unknown) => Object.hasOwn(obj, String(k));
      default:
        return (key: unknown, fallback?: unknown) => {
          const k = String(key);
          if (Object.hasOwn(obj, k)) return this.wrap(obj[k]);
          return this.wrap(k.includes(":") ? colonGet(obj, k, fallback) : fallback);
        };
    }
  }
}
