/** A mistake in how a command was called: printed without a stack trace, exit code 1. */
export class UsageError extends Error {
  override name = "UsageError";
  /** The command the message is about (`zester peel`), printed as its prefix instead of the binary's. */
  constructor(
    message: string,
    readonly program?: string,
  ) {
    super(message);
  }
}
