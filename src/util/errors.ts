/**
 * Turning thrown values into text for comments, logs and CLI output. Anything can be thrown in
 * JavaScript, so these never assume an Error.
 */

/** The message of an Error, or the thrown value as a string. */
export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Like errText, but a system error that names a path (fs, spawn) always leads with its code, so
 * "ENOENT: ..." reads the same whichever call produced it.
 */
export function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code && e.path) return `${e.code}: ${e.message.replace(/^[A-Z]+: /, "")}`;
  return errText(err);
}
