import { create, type JsonObject, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { signAsync } from "@noble/ed25519";
import { ApprovalSchema } from "../../gen/openexec/v1/approval_pb.js";
import { SignedEnvelopeSchema } from "../../gen/openexec/v1/envelope_pb.js";
import { approvalPayloadType } from "../approval/approval-artifact.js";
import { canonicalJsonBytes } from "../json/canonical-json.js";
import { preAuthEncoding } from "../signing/dsse.js";

/** What a governance service approves. */
export interface ApprovalRequest {
  /** The signing key's 32-byte Ed25519 seed (the private key). */
  readonly privateKey: Uint8Array;
  /** The id under which the executor's key ring knows the matching public key. */
  readonly keyId: string;
  readonly tenantId: string;
  readonly action: string;
  /** The exact payload the agent will send; its canonical digest is what is approved. */
  readonly payload: JsonObject;
  readonly nonce: string;
  /** How long the approval stays valid, in seconds (the executor caps it; default 3600). */
  readonly lifetimeSeconds: number;
  /** Unique per tenant; a random UUID when omitted. */
  readonly approvalId?: string;
  /** The executor id allowed to run it; any executor of the tenant when omitted. */
  readonly audience?: string;
  /** Issue time; now when omitted. */
  readonly issuedAt?: Date;
}

export interface SignedApproval {
  readonly approvalId: string;
  /** The serialised SignedEnvelope: the `approval_artifact` bytes. */
  readonly artifact: Uint8Array;
  /** `artifact` in base64, as `approval_artifact` travels in JSON. */
  readonly artifactBase64: string;
}

/**
 * Builds and signs an approval artifact (docs/APPROVALS.md). Portable: runs in
 * Node.js and browsers (WebCrypto for SHA-256 and SHA-512, @noble/ed25519 for
 * the signature), so agents and governance services in TypeScript can mint
 * approvals the executor verifies.
 */
export async function signApproval(request: ApprovalRequest): Promise<SignedApproval> {
  if (request.privateKey.length !== 32) throw new Error("privateKey must be a 32-byte Ed25519 seed");
  const issuedAtMs = (request.issuedAt ?? new Date()).getTime();
  const approvalId = request.approvalId ?? globalThis.crypto.randomUUID();
  const payloadDigest = new Uint8Array(
    await globalThis.crypto.subtle.digest("SHA-256", canonicalJsonBytes(request.payload)),
  );
  const approval = toBinary(
    ApprovalSchema,
    create(ApprovalSchema, {
      approvalId,
      tenantId: request.tenantId,
      action: request.action,
      payloadDigest,
      nonce: request.nonce,
      issuedAt: timestampFromMs(issuedAtMs),
      notAfter: timestampFromMs(issuedAtMs + request.lifetimeSeconds * 1000),
      keyId: request.keyId,
      audience: request.audience ?? "",
    }),
  );
  const sig = await signAsync(preAuthEncoding(approvalPayloadType, approval), request.privateKey);
  const artifact = toBinary(
    SignedEnvelopeSchema,
    create(SignedEnvelopeSchema, {
      payload: approval,
      payloadType: approvalPayloadType,
      signatures: [{ keyId: request.keyId, sig }],
    }),
  );
  return { approvalId, artifact, artifactBase64: toBase64(artifact) };
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
