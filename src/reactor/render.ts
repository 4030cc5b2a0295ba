/**
 * Renders a reaction file with the project's Jinja (TemplateRenderer) and the event as context:
 * `event` (tag, data, origin, peel, depth, id, ts, match_key), plus Salt's reactor names `tag` and
 * `data` so Salt reaction files render unchanged (for a peel's event, Salt's `data` carries the
 * sender as `id` and the payload under `data` as well as at the top).
 */
import { eventPeel, matchKey, type ZesterEvent } from "../events/event.js";
import { TemplateError, TemplateRenderer } from "../template/render.js";
import { ReactorFileError } from "./errors.js";

export function reactionContext(ev: ZesterEvent): Record<string, unknown> {
  const peel = eventPeel(ev);
  const event = {
    id: ev.id,
    tag: ev.tag,
    data: ev.data,
    origin: ev.origin,
    peel: peel ?? null,
    depth: ev.depth,
    ts: ev.ts,
    match_key: matchKey(ev),
  };
  const saltData =
    peel !== undefined
      ? { ...ev.data, id: peel, data: ev.data, _stamp: ev.ts }
      : { ...ev.data, _stamp: ev.ts };
  return { event, tag: ev.tag, data: saltData };
}

/** The rendered text of `path` in `files`; a template error becomes a ReactorFileError at its place. */
export async function renderReaction(
  files: Readonly<Record<string, string>>,
  path: string,
  ev: ZesterEvent,
): Promise<string> {
  const text = files[path];
  if (text === undefined)
    throw new ReactorFileError([{ file: path, line: 1, col: 1, message: "reaction file is missing" }]);
  try {
    return await new TemplateRenderer({ templates: files }).render(text, reactionContext(ev), path);
  } catch (err) {
    if (err instanceof TemplateError) {
      throw new ReactorFileError([
        { file: err.source || path, line: err.line, col: err.col, message: err.message },
      ]);
    }
    throw err;
  }
}
