import { pino } from "pino";

export type Logger = pino.Logger;

export const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof logLevels)[number];

/**
 * JSON lines on stderr. Callers log ids, names, digests and reason codes only:
 * never payloads, results, approvals or keys (SECURITY.md, "Logs").
 */
export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { service: "openexec" } }, pino.destination({ fd: 2, sync: false }));
}

/** A logger that drops everything, for tests and one-shot commands. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
