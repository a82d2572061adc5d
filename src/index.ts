// The package's public API for clients: agents and governance services.
export { type ApprovalRequest, type SignedApproval, signApproval } from "./client/sign-approval.js";
export { canonicalJsonBytes } from "./json/canonical-json.js";
export {
  evidenceFromBundle,
  type OfflineReceiptEvidence,
  type OfflineVerdict,
  verifyReceiptOffline,
} from "./receipts/verify-offline.js";
