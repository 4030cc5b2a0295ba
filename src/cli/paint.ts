/** ANSI colours for the CLI's text outputters (text, highstate, nested). */

const ANSI = {
  green: "\x1b[0;32m",
  cyan: "\x1b[0;36m",
  red: "\x1b[0;31m",
  yellow: "\x1b[0;33m",
  reset: "\x1b[0m",
} as const;
export type Color = Exclude<keyof typeof ANSI, "reset">;

export type Paint = (color: Color | undefined, text: string) => string;

export function painter(enabled: boolean): Paint {
  // Colour each line separately so pagers and line-based log collectors never see a dangling code.
  return (color, text) =>
    !enabled || color === undefined || text === ""
      ? text
      : text
          .split("\n")
          .map((l) => (l === "" ? l : `${ANSI[color]}${l}${ANSI.reset}`))
          .join("\n");
}

export function indent(text: string, prefix: string): string {
  return text
    .split("\n")
    .map((l) => (l === "" ? l : prefix + l))
    .join("\n");
}
