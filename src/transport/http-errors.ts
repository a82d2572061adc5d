import { toJson } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { SignedEnvelopeSchema } from "../../gen/openexec/v1/envelope_pb.js";
import { ErrorDetailSchema } from "../../gen/openexec/v1/error_pb.js";
import { reasonHeader, reasonOf, rejectionToConnectError } from "../api/connect-errors.js";
import type { Rejection, RejectionReason } from "../errors/reason.js";
import type { NodeResponse } from "../http/node-http.js";

/**
 * Reasons whose HTTP status is more precise than their Connect code's. The
 * Connect protocol fixes its own mapping (resource_exhausted is 429 there);
 * plain HTTP callers get the status HTTP has for the case.
 */
const httpStatusOverrides: Partial<Record<RejectionReason, number>> = {
  body_too_large: 413,
  method_not_allowed: 405,
  unsupported_media_type: 415,
};

/** Connect's wire name of a code, e.g. "invalid_argument". */
export function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/**
 * Answers with the JSON error shape shared by REST and pre-RPC failures:
 * {"code","reason","message"} (+ "execution_id", "receipt", "signed_receipt" for recorded denials),
 * which is also a valid Connect error body for Connect clients.
 */
export function writeRejection(
  res: NodeResponse,
  rejection: Rejection,
  extraHeaders: Record<string, string> = {},
): void {
  writeConnectError(res, rejectionToConnectError(rejection), extraHeaders);
}

/**
 * The REST rendering of an error from the chain (every refusal is a
 * ConnectError with its reason and ErrorDetail by then, src/api/connect-errors.ts):
 * the status HTTP has for it, and the error shape above. An error without a
 * reason is a bug, answered 500 without its message.
 */
export function writeConnectError(
  res: NodeResponse,
  error: ConnectError,
  extraHeaders: Record<string, string> = {},
): void {
  const reason = reasonOf(error);
  if (reason === undefined) {
    writeJson(res, 500, { code: "internal", reason: "internal", message: "internal error" }, extraHeaders);
    return;
  }
  const [detail] = error.findDetails(ErrorDetailSchema);
  const body: Record<string, unknown> = { code: codeName(error.code), reason, message: error.rawMessage };
  if (detail !== undefined && detail.executionId !== "") {
    body.execution_id = detail.executionId;
    body.receipt = detail.receipt;
    if (detail.signedReceipt !== undefined) {
      body.signed_receipt = toJson(SignedEnvelopeSchema, detail.signedReceipt, { useProtoFieldName: true });
    }
  }
  const status = httpStatusOverrides[reason as RejectionReason] ?? codeToHttpStatus(error.code);
  writeJson(res, status, body, { [reasonHeader]: reason, ...extraHeaders });
}

export function writeJson(
  res: NodeResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  res.end(text);
}

export function writeText(res: NodeResponse, status: number, text: string): void {
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  });
  res.end(text);
}
