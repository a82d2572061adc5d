/**
 * What a ledger serves, beyond what it signs with: the mode its executions
 * were authorised in, the tenant they belong to and the approval key ids it
 * was last started with. Recorded by the first server (or the first one after
 * the schema step that added them: an older ledger adopts that server's
 * values), then checked at every start: a server whose mode or tenant differs
 * is refused, so that a demo-mode replica and a clawshield replica never share
 * one ledger and log. The approval key ids are recorded for information only
 * (docs/DEPLOYMENT.md, "Ledger identity"): rotating keys changes them.
 */
import { LedgerIdentityError } from "./errors.js";

export interface ServedIdentity {
  readonly mode: "demo" | "clawshield";
  readonly tenantId: string;
  /** The approval key ids of the key ring (none in demo mode). */
  readonly approvalKeyIds: readonly string[];
}

/** The identity columns as stored (NULL until a server records them). */
export interface StoredIdentityColumns {
  readonly mode: unknown;
  readonly tenant_id: unknown;
}

/** The approval key ids as stored: a sorted JSON array. */
export function approvalKeyIdsColumn(identity: ServedIdentity): string {
  return JSON.stringify([...identity.approvalKeyIds].sort());
}

/** Throws LedgerIdentityError naming the first difference between the ledger's identity and this server's. */
export function checkServedIdentity(stored: StoredIdentityColumns, served: ServedIdentity): void {
  if (typeof stored.mode !== "string" || typeof stored.tenant_id !== "string") {
    throw new LedgerIdentityError("the ledger's identity row has no mode or tenant: it was edited outside OpenExec");
  }
  if (stored.mode !== served.mode) {
    throw new LedgerIdentityError(
      `the ledger was created in ${stored.mode} mode; this server is in ${served.mode} mode: ` +
        "every server of a ledger must run with the same OPENEXEC_MODE",
    );
  }
  if (stored.tenant_id !== served.tenantId) {
    throw new LedgerIdentityError(
      `the ledger was created for tenant "${stored.tenant_id}"; this server's tenant is "${served.tenantId}": ` +
        "every server of a ledger must run with the same CLAWSHIELD_TENANT_ID",
    );
  }
}
