import type { ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";
import { toJson } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { SignedEnvelopeSchema } from "../../gen/openexec/v1/envelope_pb.js";
import { reasonHeader } from "../api/connect-errors.js";
import { signedReceiptOf } from "../api/execute-response.js";
import type { Rejection, RejectionReason } from "../errors/reason.js";

export type NodeResponse = ServerResponse | Http2ServerResponse;

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

/** The HTTP status of a rejection on the REST paths and for pre-RPC HTTP errors. */
export function httpStatusOf(rejection: Rejection): number {
  return httpStatusOverrides[rejection.reason] ?? codeToHttpStatus(rejection.code);
}

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
  const body: Record<string, unknown> = {
    code: codeName(rejection.code),
    reason: rejection.reason,
    message: rejection.message,
  };
  if (rejection.attempt !== undefined) {
    const { executionId, receipt } = rejection.attempt;
    body.execution_id = executionId;
    body.receipt = receipt.digest.toString("hex");
    body.signed_receipt = toJson(SignedEnvelopeSchema, signedReceiptOf(receipt), { useProtoFieldName: true });
  }
  writeJson(res, httpStatusOf(rejection), body, { [reasonHeader]: rejection.reason, ...extraHeaders });
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
