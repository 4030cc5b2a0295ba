/**
 * The daemons' log lines on stderr: `text` for people (`<ts> INFO peel web-01: ...`), `json` for
 * collectors, one object per line: `{"ts","level","component","id","msg"}`.
 */

export type LogFormat = "text" | "json";
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

export interface DaemonLogger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export function daemonLogger(
  format: LogFormat,
  component: "master" | "peel",
  id: string,
  write: (line: string) => void = (l) => process.stderr.write(l),
): DaemonLogger {
  const line = (level: "INFO" | "WARN" | "ERROR", msg: string) => {
    const ts = new Date().toISOString();
    write(
      format === "json"
        ? `${JSON.stringify({ ts, level: level.toLowerCase(), component, id, msg })}\n`
        : `${ts} ${level} ${component} ${id}: ${msg}\n`,
    );
  };
  return {
    info: (m) => line("INFO", m),
    warn: (m) => line("WARN", m),
    error: (m) => line("ERROR", m),
  };
}
