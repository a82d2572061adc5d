import type { ApprovalUse } from "../ledger/store.js";
import { type ApprovalPolicy, type ApprovalSubject, verifyApproval } from "./verify-approval.js";

/** OPENEXEC_MODE: which gate runs, demoApprovalGate or clawshieldApprovalGate. */
export type ExecMode = "demo" | "clawshield";

export type ApprovalDecision =
  /** Demo mode: no approval is asked for. */
  | { readonly approved: false }
  /** A verified approval; its id is consumed with the nonce reservation. */
  | { readonly approved: true; readonly use: ApprovalUse };

/**
 * Decides whether a request carries the authority to run. Throws a Rejection
 * with an approval_* reason when it does not. Offline: no network, no store.
 */
export interface ApprovalGate {
  check(subject: ApprovalSubject, now: Date): Promise<ApprovalDecision>;
}

/** Demo mode: every allowed action runs without an approval; an artifact, if sent, is ignored. */
export const demoApprovalGate: ApprovalGate = {
  check: async () => ({ approved: false }),
};

/** Clawshield mode: nothing runs without a verified approval. */
export function clawshieldApprovalGate(policy: ApprovalPolicy): ApprovalGate {
  return {
    check: async (subject, now) => ({ approved: true, use: await verifyApproval(subject, policy, now) }),
  };
}
