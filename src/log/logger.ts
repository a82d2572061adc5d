import { pino } from "pino";

export type Logger = pino.Logger;

export const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof logLevels)[number];

/**
 * JSON lines on stderr. Callers log ids, names, digests and reason codes only:
 * never payloads, results, approvals or keys (SECURITY.md, "Logs").
 */
export function createLogger(level: LogLevel): Logger {
  return pino(
    {
      level,
      base: { service: "openexec" },
      // What log pipelines (Loki, Elastic, Cloud Logging) read without a parser of pino's own.
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: 2, sync: false }),
  );
}

/** A logger that drops everything, for tests and one-shot commands. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
