import { Ledger, unsignedIssuer } from "./ledger.js";
import type { ServedIdentity } from "./ledger-identity.js";
import {
  type LedgerIdentity,
  openPostgresStorage,
  openPostgresStorageReadOnly,
  type PostgresConnectionOptions,
} from "./postgres-storage.js";
import type { ReceiptIssuer } from "./recorder.js";
import { defaultLeaseMs } from "./sqlite-store.js";

export { LedgerIdentityError, type PostgresConnectionOptions } from "./postgres-storage.js";

/**
 * The ledger in PostgreSQL, shared by any number of replicas: each replica
 * holds leases on the reservations it runs, and any of them interrupts the
 * reservations whose lease ran out (a replica that died), never another
 * live replica's.
 */
export const PostgresLedgerStore = {
  /**
   * Opens (creating and migrating) a ledger to serve from, signing as `issuer`;
   * refused when the ledger was created with another receipt key, log origin,
   * or (given `served`) mode or tenant.
   */
  async open(
    options: PostgresConnectionOptions,
    issuer: ReceiptIssuer & { readonly keyId: string },
    leaseMs: number = defaultLeaseMs,
    served?: ServedIdentity,
  ): Promise<Ledger> {
    const identity: LedgerIdentity = { logOrigin: issuer.logOrigin, receiptKeyId: issuer.keyId, served };
    const storage = await openPostgresStorage(options, identity);
    return new Ledger(storage, { issuer, leaseMs, exclusive: false });
  },

  /** Opens an existing ledger to read (audit, export); servers may keep running meanwhile. */
  async openReadOnly(options: PostgresConnectionOptions): Promise<Ledger> {
    const storage = await openPostgresStorageReadOnly(options);
    return new Ledger(storage, { issuer: unsignedIssuer, leaseMs: defaultLeaseMs, exclusive: false });
  },
};
