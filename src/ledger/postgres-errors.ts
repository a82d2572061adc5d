/**
 * How a PostgreSQL failure is answered. The database (or the way to it) not
 * serving is unavailability: 503 `store_unavailable`, retried by the client,
 * recovered without a restart. A statement the server refuses for any other
 * reason (a constraint, a type, a syntax) is a bug in OpenExec.
 */
import pg from "pg";

/** SQLSTATE classes and codes that say the database cannot serve now, not that the statement is wrong. */
const unavailableClasses = new Set([
  "08", // connection exception
  "53", // insufficient resources: too many connections, disk full, out of memory
  "57", // operator intervention: shutdown, cannot connect now, statement timeout (57014)
  "58", // system error: I/O
  "XX", // internal error: data corrupted, index corrupted
  "40", // transaction rollback: serialization failure, deadlock (retried first)
]);
const unavailableCodes = new Set([
  "25006", // read_only_sql_transaction: a standby after failover
  "25P03", // idle_in_transaction_session_timeout
  "55P03", // lock_not_available (lock_timeout)
  "55000", // object_not_in_prerequisite_state: e.g. recovery in progress
]);

/** A transaction the server rolled back to resolve a conflict: run it again, whole. */
export function isRetryableConflict(error: unknown): boolean {
  const code = sqlState(error) ?? sqlState((error as { cause?: unknown } | undefined)?.cause);
  return code === "40001" || code === "40P01";
}

/**
 * True when the database did not serve (connection refused, reset or lost,
 * a timeout, a restart, no free connection slot, I/O), false when the server
 * answered and refused the statement itself.
 */
export function isPostgresUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = sqlState(error);
  if (code === undefined) {
    // No SQLSTATE: the server never answered (socket errors, pg's own connection
    // and timeout errors). A programming error has a JavaScript error name instead.
    return !(error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError);
  }
  return unavailableCodes.has(code) || unavailableClasses.has(code.slice(0, 2));
}

/** The SQLSTATE of an error the server sent (pg's DatabaseError), if any; socket errors have none. */
export function sqlState(error: unknown): string | undefined {
  if (!(error instanceof pg.DatabaseError)) return undefined;
  return typeof error.code === "string" ? error.code : undefined;
}
