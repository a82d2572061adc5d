import { createHash, timingSafeEqual, verify } from "node:crypto";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Rejection } from "../errors/reason.js";
import type { ApprovalUse } from "../ledger/store.js";
import { preAuthEncoding } from "../signing/dsse.js";
import { isStrictSignatureShape, type VerificationKey } from "../signing/ed25519-keys.js";
import { decodeArtifact } from "./approval-artifact.js";

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

/** What clawshield mode checks approvals against. */
export interface ApprovalPolicy {
  /** Trusted governance keys by key id (the key ring). */
  readonly keys: ReadonlyMap<string, VerificationKey>;
  /** CLAWSHIELD_TENANT_ID. */
  readonly tenantId: string;
  /** This executor's id (OPENEXEC_EXECUTOR_ID), matched against an approval's audience. */
  readonly executorId: string | undefined;
  /** Tolerated clock difference with the governance service. */
  readonly clockSkewMs: number;
  /** Longest not_after - issued_at accepted. */
  readonly maxLifetimeMs: number;
}

/**
 * Verifies an approval artifact against the request it came with. Every check
 * runs in this order and each failure has its own reason (all 403):
 *  1. present and well-formed            approval_missing, approval_malformed
 *  2. signed by a known key              approval_key_unknown
 *  3. signature valid (strict RFC 8032)  approval_signature_invalid
 *  4. for this tenant                    approval_tenant_mismatch
 *  5. for this executor, if it says      approval_audience_mismatch
 *  6. for this action                    approval_action_mismatch
 *  7. for this exact payload             approval_payload_mismatch
 *  8. for this nonce                     approval_nonce_mismatch
 *  9. valid now, and not too long-lived  approval_not_yet_valid, approval_expired, approval_lifetime_too_long
 * Single use (approval_reused) is enforced when the nonce is reserved, in the
 * same transaction. Nothing is decoded into trust before the signature holds.
 */
export async function verifyApproval(
  subject: ApprovalSubject,
  policy: ApprovalPolicy,
  now: Date,
): Promise<ApprovalUse> {
  const deny = (reason: ConstructorParameters<typeof Rejection>[0], message: string): never => {
    throw new Rejection(reason, message);
  };
  // 1. Present and well-formed.
  if (subject.artifact.length === 0) deny("approval_missing", "clawshield mode requires an approval_artifact");
  const decoded = decodeArtifact(subject.artifact);
  if (typeof decoded === "string") return deny("approval_malformed", decoded);
  const { envelope, approval } = decoded;
  const signature = envelope.signatures[0];
  if (signature === undefined) return deny("approval_malformed", "the envelope carries no signature");

  // 2. A known key.
  const key = policy.keys.get(signature.keyId);
  if (key === undefined) return deny("approval_key_unknown", `no trusted key has id "${signature.keyId}"`);

  // 3. The signature, over PAE(payload_type, payload): the exact bytes received.
  const signed = preAuthEncoding(envelope.payloadType, envelope.payload);
  if (!(await verifyEd25519(key, signed, signature.sig))) {
    deny("approval_signature_invalid", "the approval signature does not verify");
  }

  // 4-8. What the approval is for, against what is asked.
  if (approval.tenantId !== policy.tenantId) deny("approval_tenant_mismatch", "the approval is for another tenant");
  if (approval.audience !== "" && approval.audience !== policy.executorId) {
    deny("approval_audience_mismatch", "the approval is for another executor");
  }
  if (approval.action !== subject.action) deny("approval_action_mismatch", "the approval is for another action");
  if (!timingSafeEqual(approval.payloadDigest, subject.payloadDigest)) {
    deny("approval_payload_mismatch", "the approval is for another payload");
  }
  if (approval.nonce !== subject.nonce) deny("approval_nonce_mismatch", "the approval is for another nonce");

  // 9. Time.
  const issuedAt = timestampMs(approval.issuedAt as NonNullable<typeof approval.issuedAt>);
  const notAfter = timestampMs(approval.notAfter as NonNullable<typeof approval.notAfter>);
  const nowMs = now.getTime();
  if (nowMs < issuedAt - policy.clockSkewMs) deny("approval_not_yet_valid", "the approval is not valid yet");
  if (nowMs > notAfter + policy.clockSkewMs) deny("approval_expired", "the approval has expired");
  if (notAfter - issuedAt > policy.maxLifetimeMs || notAfter < issuedAt) {
    deny("approval_lifetime_too_long", `approvals may live at most ${policy.maxLifetimeMs / 1000} s`);
  }

  return {
    approvalId: approval.approvalId,
    // The signed approval bytes, not the envelope around them: re-encoding the
    // envelope leaves the signature valid, and must not change the digest.
    digest: createHash("sha256").update(envelope.payload).digest(),
  };
}

/**
 * Strict RFC 8032 verification: a 64-byte signature whose S is canonical
 * (S < L, so no malleable twin verifies), checked by OpenSSL off the event loop.
 * Small-order public keys were refused when the key ring was loaded.
 */
export function verifyEd25519(key: VerificationKey, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (!isStrictSignatureShape(signature)) return Promise.resolve(false);
  return new Promise((resolve) => {
    verify(null, message, key.key, signature, (error, valid) => resolve(error === null && valid));
  });
}
