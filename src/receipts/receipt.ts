import { createHash, verify } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Authorization, ExecutionStatus, ReceiptSchema } from "../../gen/openexec/v1/receipt_pb.js";
import { preAuthEncoding } from "../signing/dsse.js";
import { isStrictSignatureShape, type VerificationKey } from "../signing/ed25519-keys.js";

/** The DSSE payload type of a serialised openexec.v1.Receipt. */
export const receiptPayloadType = "application/vnd.openexec.receipt.v1+proto";

/** The facts a receipt attests, before it is encoded. */
export interface ReceiptFacts {
  readonly executionId: string;
  readonly tenantId: string;
  readonly action: string;
  readonly nonce: string;
  readonly payloadDigest: Uint8Array;
  readonly approvalDigest: Uint8Array | undefined;
  readonly resultDigest: Uint8Array | undefined;
  readonly status: Exclude<ExecutionStatus, ExecutionStatus.UNSPECIFIED>;
  readonly reason: string | undefined;
  readonly logicalTime: Date;
  /** The receipt's leaf index in the transparency log. */
  readonly logIndex: number;
  /** The transparency log's origin (its checkpoint key name). */
  readonly logOrigin: string;
}

/** A receipt as stored and served: its exact bytes, their digest and signature. */
export interface EncodedReceipt {
  /** The binary openexec.v1.Receipt. */
  readonly body: Uint8Array;
  /** SHA-256 of `body`; its hex form is the `receipt` string. */
  readonly digest: Buffer;
  /** Ed25519 over PAE(receiptPayloadType, body) by the key named in the receipt; empty when unsigned. */
  readonly signature: Uint8Array;
}

/** Signs receipts: the executor's receipt key. */
export interface ReceiptSigner {
  readonly keyId: string;
  sign(message: Uint8Array): Uint8Array;
}

/** Encodes a receipt once and signs those bytes; every later check works on them. */
export function encodeReceipt(facts: ReceiptFacts, signer: ReceiptSigner | undefined): EncodedReceipt {
  const body = toBinary(
    ReceiptSchema,
    create(ReceiptSchema, {
      executionId: facts.executionId,
      tenantId: facts.tenantId,
      action: facts.action,
      nonce: facts.nonce,
      payloadDigest: facts.payloadDigest,
      approvalDigest: facts.approvalDigest ?? new Uint8Array(0),
      resultDigest: facts.resultDigest ?? new Uint8Array(0),
      status: facts.status,
      reason: facts.reason ?? "",
      logicalTime: timestampFromMs(facts.logicalTime.getTime()),
      logIndex: BigInt(facts.logIndex),
      logOrigin: facts.logOrigin,
      receiptKeyId: signer?.keyId ?? "",
      authorization: authorizationOf(facts.status, facts.approvalDigest),
    }),
  );
  const signature = signer === undefined ? new Uint8Array(0) : signer.sign(preAuthEncoding(receiptPayloadType, body));
  return { body, digest: sha256(body), signature };
}

/**
 * How an attempt was authorised, from what the ledger records of it: a denial
 * by nothing; an execution by the signed approval it consumed, or else by demo
 * mode (which approves every registered, allowed action and ignores artifacts).
 */
export function authorizationOf(status: ExecutionStatus, approvalDigest: Uint8Array | undefined): Authorization {
  if (status === ExecutionStatus.DENIED || status === ExecutionStatus.UNSPECIFIED) {
    return Authorization.UNSPECIFIED;
  }
  return approvalDigest !== undefined && approvalDigest.length > 0 ? Authorization.SIGNED_APPROVAL : Authorization.DEMO;
}

export function sha256(bytes: Uint8Array): Buffer {
  return createHash("sha256").update(bytes).digest();
}

/**
 * True when `signature` is the strict (RFC 8032, canonical S) Ed25519 signature
 * of `key` over PAE(receiptPayloadType, body): how every verifier of receipts
 * checks them, on the server, in audit and offline.
 */
export function verifyReceiptSignature(key: VerificationKey, body: Uint8Array, signature: Uint8Array): boolean {
  return (
    isStrictSignatureShape(signature) && verify(null, preAuthEncoding(receiptPayloadType, body), key.key, signature)
  );
}
