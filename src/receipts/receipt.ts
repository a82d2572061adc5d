import { createHash } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type ExecutionStatus, ReceiptSchema } from "../../gen/openexec/v1/receipt_pb.js";

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
}

/** A receipt as stored and served: its exact bytes and their digest. */
export interface EncodedReceipt {
  /** The binary openexec.v1.Receipt. */
  readonly body: Uint8Array;
  /** SHA-256 of `body`; its hex form is the `receipt` string. */
  readonly digest: Buffer;
}

/** Encodes a receipt once; every later check works on these bytes. */
export function encodeReceipt(facts: ReceiptFacts): EncodedReceipt {
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
    }),
  );
  return { body, digest: sha256(body) };
}

export function sha256(bytes: Uint8Array): Buffer {
  return createHash("sha256").update(bytes).digest();
}
