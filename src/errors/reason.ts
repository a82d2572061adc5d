import { Code } from "@connectrpc/connect";
import type { EncodedReceipt } from "../receipts/receipt.js";

/**
 * Every way a request can be refused or an execution can end badly, as a
 * stable code. Clients switch on these (docs/ERRORS.md), never on messages.
 * Each rejection reason maps to exactly one Connect code, here and nowhere else.
 */
export const rejectionCodes = {
  // The request itself is malformed (400).
  body_malformed: Code.InvalidArgument,
  body_too_deep: Code.InvalidArgument,
  duplicate_key: Code.InvalidArgument,
  reserved_key: Code.InvalidArgument,
  field_invalid: Code.InvalidArgument,
  action_invalid: Code.InvalidArgument,
  nonce_invalid: Code.InvalidArgument,
  payload_invalid: Code.InvalidArgument,
  action_input_invalid: Code.InvalidArgument,
  // Transparency log questions (400, 404).
  log_range_invalid: Code.InvalidArgument,
  execution_not_found: Code.NotFound,
  checkpoint_not_found: Code.NotFound,
  // The Host header names no name this server answers to (403; DNS rebinding).
  host_not_allowed: Code.PermissionDenied,
  // A CORS preflight from a web origin not in OPENEXEC_CORS_ORIGINS (403).
  origin_not_allowed: Code.PermissionDenied,
  // Routing and media type over HTTP (404, 405, 415).
  route_not_found: Code.NotFound,
  // A log tile or entry bundle this log does not have (yet), or entry bundles not served (404).
  tile_not_found: Code.NotFound,
  method_not_allowed: Code.Unimplemented,
  unsupported_media_type: Code.InvalidArgument,
  // Too large (413 over REST, resource_exhausted over RPC).
  body_too_large: Code.ResourceExhausted,
  // The action is not registered (404).
  unknown_action: Code.NotFound,
  // Refused by configuration or governance (403).
  action_not_allowed: Code.PermissionDenied,
  approval_missing: Code.PermissionDenied,
  approval_malformed: Code.PermissionDenied,
  approval_key_unknown: Code.PermissionDenied,
  approval_signature_invalid: Code.PermissionDenied,
  approval_tenant_mismatch: Code.PermissionDenied,
  approval_audience_mismatch: Code.PermissionDenied,
  approval_action_mismatch: Code.PermissionDenied,
  approval_payload_mismatch: Code.PermissionDenied,
  approval_nonce_mismatch: Code.PermissionDenied,
  approval_not_yet_valid: Code.PermissionDenied,
  approval_expired: Code.PermissionDenied,
  approval_lifetime_too_long: Code.PermissionDenied,
  approval_reused: Code.PermissionDenied,
  // The nonce is spent (409).
  nonce_reused: Code.AlreadyExists,
  interrupted: Code.AlreadyExists,
  // The nonce's execution is still running (on another replica) after the bounded wait:
  // a conflict with a request in progress (409, as for an idempotency key in use), retry later.
  in_progress: Code.Aborted,
  // Try again later (503).
  store_unavailable: Code.Unavailable,
  draining: Code.Unavailable,
  // The operator froze this action, or every action (openexec freeze): recorded as a denial; retry after unfreeze.
  frozen: Code.Unavailable,
  // No checkpoint covers the receipt yet (checkpoints are signed every second): retry (503).
  checkpoint_pending: Code.Unavailable,
} as const satisfies Record<string, Code>;

export type RejectionReason = keyof typeof rejectionCodes;

/** Why an execution that reached its handler did not produce a result. */
export type FailureReason = "handler_error" | "handler_timeout" | "result_invalid" | "counter_overflow";

/** A refusal: a reason code plus a message fit to show the caller. */
export class Rejection extends Error {
  override readonly name = "Rejection";
  readonly code: Code;

  constructor(
    readonly reason: RejectionReason,
    message: string,
    /** For a recorded denial: the attempt's id and its receipt. */
    readonly attempt?: { readonly executionId: string; readonly receipt: EncodedReceipt },
  ) {
    super(message);
    this.code = rejectionCodes[reason];
  }
}

export function isRejection(value: unknown): value is Rejection {
  return value instanceof Rejection;
}
