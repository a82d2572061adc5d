import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
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
  if (error instanceof ConnectError) return protocolErrorAsRejection(error) ?? error;
  return new ConnectError("internal error", Code.Internal);
}

/** The reason code carried by a ConnectError from this server, if any. */
export function reasonOf(error: ConnectError): string | undefined {
  const [detail] = error.findDetails(ErrorDetailSchema);
  return detail?.reason ?? error.metadata.get(reasonHeader) ?? undefined;
}

/**
 * A request the protocol layer (connect-es, protobuf-es) could not decode is
 * the client's malformed input, never a server fault: connect-es reports
 * undecodable binary as INTERNAL "parse binary: ...", and other decoding
 * problems as INVALID_ARGUMENT without a reason. Both become INVALID_ARGUMENT
 * body_malformed (or `known`, a refusal found before decoding), with an
 * ErrorDetail and `openexec-reason`, like every refusal; so does INTERNAL
 * raised before the handler was reached (`handlerReached` false).
 * Undefined: the error is not one of those.
 */
export function protocolErrorAsRejection(
  error: ConnectError,
  known?: Rejection,
  handlerReached = true,
): ConnectError | undefined {
  if (reasonOf(error) !== undefined) return undefined;
  if (known !== undefined) return rejectionToConnectError(known);
  if (
    error.code === Code.InvalidArgument ||
    (error.code === Code.Internal && error.rawMessage.startsWith(parseBinary))
  ) {
    return rejectionToConnectError(new Rejection("body_malformed", `malformed request: ${error.rawMessage}`));
  }
  // Before the handler, connect-es only reads and decodes the request: an
  // unexpected exception there (e.g. a Connect GET message= that is not base64)
  // is about the request, not the server.
  if (!handlerReached && error.code === Code.Internal) {
    return rejectionToConnectError(
      new Rejection("body_malformed", "malformed request: the request message cannot be decoded"),
    );
  }
  return undefined;
}

const parseBinary = "parse binary:";

/** Set by connect-adapter.ts when a request message is refused before protobuf-es decodes it. */
export const decodingRefusalKey = createContextKey<Rejection | undefined>(undefined, {
  description: "openexec decoding refusal",
});

/** Set by the interceptor: the request was decoded and reached OpenExec's code. */
export const handlerReachedKey = createContextKey<boolean>(false, { description: "openexec handler reached" });

/**
 * Turns whatever a handler throws into the ConnectError the client should see,
 * including errors raised while a stream is read or written (a request message
 * that does not decode, a Rejection thrown by a streaming handler).
 */
export const rejectionInterceptor: Interceptor = (next) => async (request) => {
  request.contextValues.set(handlerReachedKey, true);
  const refused = request.contextValues.get(decodingRefusalKey);
  if (refused !== undefined) throw rejectionToConnectError(refused);
  try {
    const response = await next(
      request.stream ? { ...request, message: mapStreamErrors(request.message, requestStreamError) } : request,
    );
    return response.stream ? { ...response, message: mapStreamErrors(response.message, toConnectError) } : response;
  } catch (error) {
    throw toConnectError(error);
  }
};

async function* mapStreamErrors<T>(
  messages: AsyncIterable<T>,
  map: (error: unknown) => ConnectError,
): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    throw map(error);
  }
}

/** Reading a request stream only reads and decodes what the client sent: its failures are the client's. */
function requestStreamError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return protocolErrorAsRejection(error, undefined, false) ?? error;
  return toConnectError(error);
}
