/**
 * The daemons' log lines on stderr: `text` for people (`<ts> INFO peel web-01: ...`), `json` for
 * collectors, one object per line: `{"ts","level","component","id","msg"}`.
 */
import type { OptionTable } from "../config/options.js";

export type LogFormat = "text" | "json";
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

/** The health listener and log format options, the same in both daemons but for the example port. */
export function daemonHealthLogOptions(examplePort: number) {
  return {
    health_listen: {
      kind: "string",
      valueName: "ADDR",
      group: "Health and logs",
      help: `serve /healthz, /readyz and Prometheus /metrics over HTTP on HOST:PORT (we use 127.0.0.1:${examplePort}); off when unset`,
    },
    log_format: {
      kind: "string",
      choices: LOG_FORMATS,
      default: "text",
      valueName: "FMT",
      group: "Health and logs",
      help: "stderr log lines: text, or json (one object per line)",
    },
  } as const satisfies OptionTable;
}

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
