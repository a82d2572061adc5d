import type { DescMethod } from "@bufbuild/protobuf";
import { type Code, ConnectError, type ContextValues, createContextKey, type Interceptor } from "@connectrpc/connect";
import { ErrorDetailSchema } from "../../gen/openexec/v1/error_pb.js";
import { type ExecuteResponse, ExecutionService } from "../../gen/openexec/v1/execution_pb.js";
import { ExecutionStatus } from "../../gen/openexec/v1/receipt_pb.js";
import { reasonOf } from "../api/connect-errors.js";
import { type AccessRecord, accessRecordKey } from "./access-log.js";
import { type CallProtocol, grpcCodeName, type ServerMetrics } from "./metrics.js";

/** Set by the REST bindings: the call came in over a REST path. */
export const restCallKey = createContextKey<boolean>(false, { description: "openexec REST call" });

/**
 * The first link of the chain every way in goes through (Connect, gRPC,
 * gRPC-web and the REST bindings): it counts and times each call and fills in
 * its access-log record, after the links behind it have turned every failure
 * into a ConnectError with its reason (src/api/connect-errors.ts).
 */
export function observingInterceptor(metrics: ServerMetrics): Interceptor {
  return (next) => async (request) => {
    const protocol = protocolOf(request.header, request.contextValues.get(restCallKey));
    const record = request.contextValues.get(accessRecordKey);
    const service = request.service.typeName;
    const method = request.method.name;
    if (record !== undefined) {
      record.protocol = protocol;
      record.rpc = `${service}/${method}`;
    }
    const done = metrics.rpcStarted({ service, method, type: grpcType(request.method.methodKind), protocol });
    const execute = request.method === ExecutionService.method.execute;
    const landed = execute ? metrics.executionStarted() : undefined;
    try {
      const response = await next(request);
      if (response.stream) {
        return { ...response, message: observeStream(response.message, done, record) };
      }
      done(0);
      if (record !== undefined) record.code = "ok";
      if (execute) {
        const answer = response.message as ExecuteResponse;
        const status = answer.status === ExecutionStatus.EXECUTED ? "executed" : "failed";
        metrics.executed(answer.action, status, answer.replayed);
        if (record !== undefined) {
          record.executionId = answer.id;
          record.receipt = answer.receipt;
        }
      }
      return response;
    } catch (error) {
      failed(metrics, error, done, record);
      throw error;
    } finally {
      landed?.();
    }
  };
}

/** Hears a unary request refused before the chain (while connect-es decoded it), with the error answered. */
export type UnreachedObserver = (
  method: DescMethod,
  header: Headers,
  contextValues: ContextValues,
  error: ConnectError,
  startedAt: number,
) => void;

/**
 * Counts and logs what observingInterceptor never sees: a unary request that
 * connect-es refused while decoding its message (connect-adapter.ts), so that
 * every refusal counts under its method with its code, as the REST ones do.
 */
export function observingUnreached(metrics: ServerMetrics): UnreachedObserver {
  return (method, header, contextValues, error, startedAt) => {
    const protocol = protocolOf(header, false);
    const record = contextValues.get(accessRecordKey);
    const service = method.parent.typeName;
    if (record !== undefined) {
      record.protocol = protocol;
      record.rpc = `${service}/${method.name}`;
    }
    const done = metrics.rpcStarted(
      { service, method: method.name, type: grpcType(method.methodKind), protocol },
      startedAt,
    );
    failed(metrics, error, done, record);
  };
}

function failed(
  metrics: ServerMetrics,
  error: unknown,
  done: (code: Code | 0) => void,
  record: AccessRecord | undefined,
): void {
  const connectError = ConnectError.from(error);
  done(connectError.code);
  const reason = reasonOf(connectError);
  const [detail] = connectError.findDetails(ErrorDetailSchema);
  // A refusal with a receipt is a recorded denial.
  if (detail !== undefined && detail.executionId !== "" && reason !== undefined) metrics.denied(reason);
  if (record !== undefined) {
    record.code = codeName(connectError.code);
    if (reason !== undefined) record.reason = reason;
    if (detail !== undefined && detail.executionId !== "") {
      record.executionId = detail.executionId;
      record.receipt = detail.receipt;
    }
  }
}

async function* observeStream<T>(
  messages: AsyncIterable<T>,
  done: (code: Code | 0) => void,
  record: AccessRecord | undefined,
): AsyncIterable<T> {
  try {
    yield* messages;
    done(0);
    if (record !== undefined) record.code = "ok";
  } catch (error) {
    const code = ConnectError.from(error).code;
    done(code);
    if (record !== undefined) record.code = codeName(code);
    throw error;
  }
}

function protocolOf(header: Headers, rest: boolean): CallProtocol {
  if (rest) return "rest";
  const type = header.get("content-type") ?? "";
  if (type.startsWith("application/grpc-web")) return "grpc-web";
  if (type.startsWith("application/grpc")) return "grpc";
  return "connect";
}

/** go-grpc-prometheus's names for the method kinds. */
function grpcType(kind: DescMethod["methodKind"]): string {
  switch (kind) {
    case "unary":
      return "unary";
    case "client_streaming":
      return "client_stream";
    case "server_streaming":
      return "server_stream";
    case "bidi_streaming":
      return "bidi_stream";
  }
}

/** Connect's wire name of a code ("invalid_argument"), as the access log and REST bodies say it. */
function codeName(code: Code): string {
  return grpcCodeName(code)
    .replace(/([a-z])([A-Z])/g, "$1_$2")
    .toLowerCase();
}
