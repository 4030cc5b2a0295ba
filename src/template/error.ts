/** A template failed to render; line/col are 1-based positions in `source`, the file at fault. */
export class TemplateError extends Error {
  override name = "TemplateError";
  constructor(
    message: string,
    /** The file where the error is (an imported or included file when it is there). */
    readonly source: string,
    readonly line: number,
    readonly col: number,
    /** That file's text, for an excerpt. */
    readonly text?: string,
  ) {
    super(message);
  }
}
