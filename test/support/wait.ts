/** Waiting on things that happen in the background: an emitter's next event, or a polled condition. */

/** The next `name` event of `emitter`, or a rejection after `timeoutMs`. */
export function nextEvent<T>(
  emitter: { once(name: string, listener: (v: T) => void): unknown },
  name: string,
  timeoutMs = 10_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no "${name}" event within ${timeoutMs} ms`)), timeoutMs);
    emitter.once(name, (v: T) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

/** What a polled function returns for "not yet". */
type NotYet = undefined | null | false;

export interface WaitOptions {
  /** Give up after this many ms; default 15 s. */
  ms?: number;
  /** Pause between tries; default 50 ms. */
  intervalMs?: number;
  /** Take a throw from the polled function as "not yet" instead of failing at once. */
  ignoreErrors?: boolean;
  /** Read when the wait gives up and appended to its message, e.g. a daemon's log. */
  context?: () => string;
}

/**
 * Calls `fn` until it returns something other than undefined, null or false, and resolves with
 * that; rejects with "timed out waiting for <what>" once `ms` has passed.
 */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | NotYet> | T | NotYet,
  opts: WaitOptions = {},
): Promise<T> {
  const deadline = Date.now() + (opts.ms ?? 15_000);
  for (;;) {
    const v = opts.ignoreErrors
      ? await Promise.resolve()
          .then(fn)
          .catch(() => undefined)
      : await fn();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) {
      const context = opts.context ? `\n${opts.context()}` : "";
      throw new Error(`timed out waiting for ${what}${context}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}
