/**
 * How the ledger fails, as types callers switch on. Storage that cannot serve
 * (I/O, a full disk, a lost connection, a file gone) is answered 503
 * `store_unavailable` and retried; a broken invariant is a bug: answered as
 * INTERNAL and logged with its cause, never disguised as unavailability.
 */

/** The storage cannot serve now (I/O, corruption, lost connection): answered as UNAVAILABLE. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}

/** The tables whose rows are type-checked as they are read back (ledger-rows.ts). */
export type StoredTable = "executions" | "denials" | "log_leaves" | "checkpoints" | "counters" | "freezes";

/**
 * A stored value of the wrong type (the ledger was edited outside OpenExec:
 * TEXT where bytes belong, a string where an integer does). The row cannot be
 * served (answered as UNAVAILABLE, like other corruption); audit names it. The
 * message names the table, row and column, never the value.
 */
export class StoredColumnError extends StoreUnavailableError {
  readonly table: StoredTable;
  readonly rowId: string;
  readonly column: string;
  /** What is wrong, e.g. `column receipt_signature holds string, not bytes`. */
  readonly problem: string;

  constructor(table: StoredTable, rowId: string, column: string, problem: string) {
    super(`${table} row ${rowId === "" ? "(unreadable id)" : rowId}: column ${column} ${problem}`);
    this.table = table;
    this.rowId = rowId;
    this.column = column;
    this.problem = `column ${column} ${problem}`;
  }
}

export function isStoredColumnError(error: unknown): error is StoredColumnError {
  return error instanceof StoredColumnError;
}

/** The ledger broke one of its own invariants (a finished row without a receipt, an unknown outcome). */
export class LedgerBugError extends Error {
  override readonly name = "LedgerBugError";
}

/**
 * The abort reason of a handler's signal when this process no longer holds
 * its execution's lease: the lease ran out before a renewal confirmed it (the
 * process was paused, or could not reach the database), or a renewal found
 * the execution no longer pending and this process's (another replica
 * recorded it interrupted). Whatever the handler would do next is no longer
 * this process's to do.
 */
export class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
}

/** The ledger was created by a server configured otherwise (receipt key, log origin, mode, tenant): refused at start. */
export class LedgerIdentityError extends Error {
  override readonly name = "LedgerIdentityError";
}

/** Another process holds the ledger file (a server, or audit/export). */
export class LedgerInUseError extends Error {
  override readonly name = "LedgerInUseError";
}

/** The ledger's schema is not the one this build reads. */
export class SchemaTooNewError extends Error {
  override readonly name = "SchemaTooNewError";
}

/** A failure of the storage (not of the request): answered as UNAVAILABLE everywhere. */
export function isStoreFailure(error: unknown): error is StoreUnavailableError {
  return error instanceof StoreUnavailableError;
}

/** A SQLite error that says the storage, not the write, is at fault (I/O, full, read-only, corrupt, ...). */
export function isStorageFault(error: unknown): boolean {
  if (!(error instanceof Error) || error.name !== "SqliteError") return false;
  const code = (error as Error & { code?: unknown }).code;
  return (
    typeof code === "string" && /^SQLITE_(IOERR|FULL|READONLY|CANTOPEN|CORRUPT|NOTADB|PERM|BUSY|LOCKED)/.test(code)
  );
}
