import type { ApprovalUse } from "../ledger/store.js";

/** What an approval is checked against: the request as received. */
export interface ApprovalSubject {
  readonly tenantId: string;
  readonly action: string;
  readonly nonce: string;
  /** SHA-256 of the canonical encoding of the request payload. */
  readonly payloadDigest: Buffer;
  /** The serialised SignedEnvelope from the request; empty when absent. */
  readonly artifact: Uint8Array;
}

export type ApprovalDecision =
  /** Demo mode: no approval is asked for. */
  | { readonly approved: false }
  /** A verified approval; its id is consumed with the nonce reservation. */
  | { readonly approved: true; readonly use: ApprovalUse };

/**
 * Decides whether a request carries the authority to run. Throws a Rejection
 * with an approval_* reason when it does not. Pure and offline: no I/O.
 */
export interface ApprovalGate {
  check(subject: ApprovalSubject, now: Date): ApprovalDecision;
}

/** Demo mode: every allowed action runs without an approval. */
export const demoApprovalGate: ApprovalGate = {
  check: () => ({ approved: false }),
};
