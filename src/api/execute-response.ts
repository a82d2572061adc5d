import { create, fromBinary, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { NullValue, type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { type SignedEnvelope, SignedEnvelopeSchema } from "../../gen/openexec/v1/envelope_pb.js";
import { type ExecuteResponse, ExecuteResponseSchema } from "../../gen/openexec/v1/execution_pb.js";
import { Authorization, ExecutionStatus, ReceiptSchema } from "../../gen/openexec/v1/receipt_pb.js";
import type { ExecuteOutcome } from "../execution/executor.js";
import { authorizationOf, type EncodedReceipt, receiptPayloadType } from "../receipts/receipt.js";

/** The Execute answer for an outcome, identical for first runs and replays but for `replayed`. */
export function toExecuteResponse(outcome: ExecuteOutcome): ExecuteResponse {
  const { execution } = outcome;
  const status = execution.status === "executed" ? ExecutionStatus.EXECUTED : ExecutionStatus.FAILED;
  const authorization = authorizationOf(status, execution.approvalDigest);
  return create(ExecuteResponseSchema, {
    id: execution.executionId,
    action: execution.action,
    result: execution.status === "executed" ? jsonToValue(execution.result) : nullValue(),
    // Every answered execution was authorised: demo mode approves every
    // registered, allowed action (as the original answers), clawshield mode only
    // a verified approval. `authorization` says which.
    approved: authorization !== Authorization.UNSPECIFIED,
    receipt: execution.receipt.digest.toString("hex"),
    replayed: outcome.replayed,
    status,
    reason: execution.status === "failed" ? execution.reason : "",
    signedReceipt: signedReceiptOf(execution.receipt),
    authorization,
  });
}

/** A JSON value as google.protobuf.Value. Depth is bounded by the limits checked upstream. */
function jsonToValue(json: JsonValue): Value {
  return fromJson(ValueSchema, json);
}

function nullValue(): Value {
  return create(ValueSchema, { kind: { case: "nullValue", value: NullValue.NULL_VALUE } });
}

/** The receipt as a DSSE-shaped envelope: its bytes and, when signed, the executor's signature. */
export function signedReceiptOf(receipt: EncodedReceipt): SignedEnvelope {
  const keyId = fromBinary(ReceiptSchema, receipt.body).receiptKeyId;
  return create(SignedEnvelopeSchema, {
    payload: receipt.body,
    payloadType: receiptPayloadType,
    signatures: receipt.signature.length === 0 ? [] : [{ keyId, sig: receipt.signature }],
  });
}
