import { Ledger, unsignedIssuer } from "./ledger.js";
import type { ReceiptIssuer } from "./recorder.js";
import { openSqliteStorage, openSqliteStorageReadOnly, type SqliteOpenOptions } from "./sqlite-storage.js";

export { LedgerInUseError, SchemaTooNewError } from "./errors.js";
export type { ReceiptIssuer } from "./recorder.js";

/** How long a reservation is this process's without renewal (renewed every third of it while its handler runs). */
export const defaultLeaseMs = 30_000;

/**
 * The ledger in one SQLite file (WAL, synchronous=FULL, exclusive locking):
 * one server process owns a file and holds it locked while it runs.
 */
export const SqliteLedgerStore = {
  /** Opens (creating and migrating) a ledger to serve from. Without an issuer, receipts are unsigned. */
  open(
    path: string,
    issuer: ReceiptIssuer = unsignedIssuer,
    options: SqliteOpenOptions & { readonly leaseMs?: number } = {},
  ): Ledger {
    return new Ledger(openSqliteStorage(path, options), {
      issuer,
      leaseMs: options.leaseMs ?? defaultLeaseMs,
      exclusive: true,
    });
  },

  /** Opens an existing ledger for reading (audit, export), once no server holds it. */
  openReadOnly(path: string): Ledger {
    return new Ledger(openSqliteStorageReadOnly(path), {
      issuer: unsignedIssuer,
      leaseMs: defaultLeaseMs,
      exclusive: true,
    });
  },
};
