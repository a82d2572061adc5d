import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { ErrorDetailSchema } from "../../gen/openexec/v1/error_pb.js";
import { isRejection, Rejection } from "../errors/reason.js";
import { isStoreFailure } from "../ledger/store.js";
import { signedReceiptOf } from "./execute-response.js";

/** Response header (Connect unary) or trailer (gRPC) naming the reason code. */
export const reasonHeader = "openexec-reason";

/** The Connect error a Rejection is answered with, on every protocol. */
export function rejectionToConnectError(rejection: Rejection): ConnectError {
  return new ConnectError(rejection.message, rejection.code, { [reasonHeader]: rejection.reason }, [
    {
      desc: ErrorDetailSchema,
      value: create(ErrorDetailSchema, {
        reason: rejection.reason,
        executionId: rejection.attempt?.executionId ?? "",
        receipt: rejection.attempt?.receipt.digest.toString("hex") ?? "",
        ...(rejection.attempt === undefined ? {} : { signedReceipt: signedReceiptOf(rejection.attempt.receipt) }),
      }),
    },
  ]);
}

/**
 * Handlers throw Rejections; this turns them into ConnectErrors at the edge.
 * Anything else that escapes is a bug: it is answered as INTERNAL without its
 * message, so nothing of a payload or the server leaks.
 */
export function toConnectError(error: unknown): ConnectError {
  if (isRejection(error)) return rejectionToConnectError(error);
  if (isStoreFailure(error)) {
    return rejectionToConnectError(new Rejection("store_unavailable", "the ledger is unavailable; retry later"));
  }
  if (error instanceof ConnectError) {
    // connect-es reports undecodable protobuf as INTERNAL ("parse binary: ..."),
    // but it is the client's malformed input.
    if (error.code === Code.Internal && error.rawMessage.startsWith("parse binary:")) {
      return new ConnectError(`malformed request: ${error.rawMessage}`, Code.InvalidArgument);
    }
    return error;
  }
  return new ConnectError("internal error", Code.Internal);
}

/** The reason code carried by a ConnectError from this server, if any. */
export function reasonOf(error: ConnectError): string | undefined {
  const [detail] = error.findDetails(ErrorDetailSchema);
  return detail?.reason ?? error.metadata.get(reasonHeader) ?? undefined;
}

/** Turns whatever a handler throws into the ConnectError the client should see. */
export const rejectionInterceptor: Interceptor = (next) => async (request) => {
  try {
    return await next(request);
  } catch (error) {
    throw toConnectError(error);
  }
};
