/**
 * Jinja2's `lipsum(n=5, html=True, min=20, max=100)` global: `n` paragraphs of placeholder Latin,
 * each of `min` to `max - 1` words drawn at random (never the same word twice in a row), the first
 * word and each one after a full stop capitalised, commas and full stops sprinkled in as Jinja2
 * places them, every paragraph ending with a full stop. With `html` each paragraph is wrapped in
 * `<p>...</p>` and they are joined by one newline, else by a blank line. The output is random, as
 * in Jinja2; the vocabulary is Zester's own.
 */
import { param } from "./filters.js";
import { truthy } from "./values.js";

const WORDS = (
  "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore " +
  "et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip " +
  "ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla " +
  "pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim " +
  "id est laborum curabitur pretium tincidunt lacus nunc pulvinar sapien vitae risus porta vel"
).split(" ");

/** Python's randrange(lo, hi): an integer in [lo, hi). */
function randrange(lo: number, hi: number): number {
  if (hi <= lo) throw new RangeError(`empty range for randrange() (${lo}, ${hi})`);
  return lo + Math.floor(Math.random() * (hi - lo));
}

function paragraph(min: number, max: number): string {
  const words: string[] = [];
  let capital = true;
  let lastComma = 0;
  let lastStop = 0;
  let last = "";
  const count = randrange(min, max);
  for (let idx = 0; idx < count; idx++) {
    let word: string;
    do word = WORDS[Math.floor(Math.random() * WORDS.length)]!;
    while (word === last);
    last = word;
    if (capital) {
      word = word[0]!.toUpperCase() + word.slice(1);
      capital = false;
    }
    if (idx - randrange(3, 8) > lastComma) {
      lastComma = idx;
      lastStop += 2;
      word += ",";
    }
    if (idx - randrange(10, 20) > lastStop) {
      lastComma = lastStop = idx;
      word += ".";
      capital = true;
    }
    words.push(word);
  }
  const text = words.join(" ");
  if (text.endsWith(",")) return `${text.slice(0, -1)}.`;
  return text.endsWith(".") ? text : `${text}.`;
}

export function lipsum(args: unknown[], kwargs: Map<string, unknown>): string {
  const n = Number(param(args, kwargs, 0, "n", 5));
  const html = truthy(param(args, kwargs, 1, "html", true));
  const min = Number(param(args, kwargs, 2, "min", 20));
  const max = Number(param(args, kwargs, 3, "max", 100));
  const paragraphs = Array.from({ length: Math.max(0, n) }, () => paragraph(min, max));
  return html ? paragraphs.map((p) => `<p>${p}</p>`).join("\n") : paragraphs.join("\n\n");
}
