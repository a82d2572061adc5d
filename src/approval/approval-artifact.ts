import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { type Approval, ApprovalSchema } from "../../gen/openexec/v1/approval_pb.js";
import { type SignedEnvelope, SignedEnvelopeSchema } from "../../gen/openexec/v1/envelope_pb.js";

/** The DSSE payload type of a serialised openexec.v1.Approval. */
export const approvalPayloadType = "application/vnd.openexec.approval.v1+proto";

/** Approval ids: unique per tenant, chosen by the governance service. */
export const approvalIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/** An artifact that decoded cleanly: the envelope and the approval inside it. */
export interface DecodedArtifact {
  readonly envelope: SignedEnvelope;
  readonly approval: Approval;
}

/**
 * Decodes an approval artifact strictly: an envelope with the approval payload
 * type and exactly one signature, and an approval with every required field,
 * neither carrying fields this version does not know. Returns a description of
 * the first problem instead of throwing; nothing here is trusted yet.
 */
export function decodeArtifact(bytes: Uint8Array): DecodedArtifact | string {
  const envelope = decodeKnownFields(SignedEnvelopeSchema, bytes);
  if (envelope === undefined) return "the artifact is not a SignedEnvelope";
  if (envelope.payloadType !== approvalPayloadType) return `payload_type must be "${approvalPayloadType}"`;
  if (envelope.signatures.length !== 1) return "the envelope must carry exactly one signature";
  if (envelope.signatures.some((signature) => hasUnknownFields(signature))) {
    return "the signature entry carries fields this version does not know";
  }
  // The envelope is not signed, but it is the artifact: one artifact, one
  // encoding, so that a changed byte (a field's wire type, order, a padded
  // varint) is refused, not read as something else.
  if (!equalBytes(toBinary(SignedEnvelopeSchema, envelope), bytes)) {
    return "the envelope is not canonically encoded (fields in number order, each once, with their wire types)";
  }
  const approval = decodeKnownFields(ApprovalSchema, envelope.payload);
  if (approval === undefined) return "the envelope payload is not an Approval";
  if (hasUnknownFields(approval.issuedAt) || hasUnknownFields(approval.notAfter)) {
    return "a timestamp carries fields this version does not know";
  }
  // One approval, one encoding: bytes that decode to the same approval but are
  // not its canonical encoding (repeated fields, reordered or padded varints)
  // could be read differently by another verifier.
  if (!equalBytes(toBinary(ApprovalSchema, approval), envelope.payload)) {
    return "the approval is not canonically encoded (fields in number order, each once)";
  }
  if (!approvalIdPattern.test(approval.approvalId))
    return "approval_id must be 1-128 characters of A-Z a-z 0-9 . _ : -";
  if (approval.payloadDigest.length !== 32) return "payload_digest must be 32 bytes";
  if (approval.issuedAt === undefined || approval.notAfter === undefined) return "issued_at and not_after are required";
  if (!validTimestamp(approval.issuedAt) || !validTimestamp(approval.notAfter)) {
    return "issued_at and not_after must be valid Timestamps (0001-01-01 to 9999-12-31, nanos 0-999999999)";
  }
  if (approval.keyId === "" || approval.keyId !== envelope.signatures[0]?.keyId) {
    return "the approval's key_id must name the key that signed it";
  }
  return { envelope, approval };
}

/** google.protobuf.Timestamp's own range (timestamp.proto). */
const minSeconds = -62135596800n;
const maxSeconds = 253402300799n;

function validTimestamp(timestamp: Timestamp): boolean {
  return (
    timestamp.seconds >= minSeconds &&
    timestamp.seconds <= maxSeconds &&
    timestamp.nanos >= 0 &&
    timestamp.nanos <= 999_999_999
  );
}

function decodeKnownFields<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): MessageShape<Desc> | undefined {
  try {
    const message = fromBinary(schema, bytes, { readUnknownFields: true });
    // Unknown fields would be signed but never checked: refuse them.
    return hasUnknownFields(message) ? undefined : message;
  } catch {
    return undefined;
  }
}

function hasUnknownFields(message: object | undefined): boolean {
  const unknown = (message as { $unknown?: unknown[] } | undefined)?.$unknown;
  return unknown !== undefined && unknown.length > 0;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
