/** A mistake in how a command was called: printed without a stack trace, exit code 1. */
export class UsageError extends Error {
  override name = "UsageError";
}
