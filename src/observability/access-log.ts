import { createContextKey } from "@connectrpc/connect";
import type { NodeRequest, RequestListener } from "../http/node-http.js";
import type { Logger } from "../log/logger.js";
import { parseTraceparent } from "./traceparent.js";

/**
 * What one request's access-log line says, filled in as the request goes:
 * the transport knows the path and status, the RPC chain the method, code,
 * reason, execution id and receipt digest. Never a payload, result, artifact
 * or key.
 */
export interface AccessRecord {
  protocol?: string;
  rpc?: string;
  code?: string;
  reason?: string;
  executionId?: string;
  receipt?: string;
}

const records = new WeakMap<NodeRequest, AccessRecord>();

/** The record of `req`, for the layers that fill it in (undefined when access logging is off). */
export function accessRecordOf(req: NodeRequest): AccessRecord | undefined {
  return records.get(req);
}

/** The access record in an RPC's context values (set by the transports). */
export const accessRecordKey = createContextKey<AccessRecord | undefined>(undefined, {
  description: "openexec access record",
});

/**
 * Wraps the server's request listener: one JSON line per request at info
 * level once its answer is sent (or the client went away): protocol, method
 * and path, RPC, HTTP status, Connect code, reason, duration, execution id and
 * receipt digest, and the W3C trace id when a valid `traceparent` header is sent.
 */
export function withAccessLog(logger: Logger, listener: RequestListener): RequestListener {
  return (req, res) => {
    const started = performance.now();
    const record: AccessRecord = {};
    records.set(req, record);
    res.once("close", () => {
      const reason = record.reason ?? headerText(res.getHeader("openexec-reason"));
      logger.info(
        {
          protocol: record.protocol ?? httpProtocolOf(req),
          http_method: req.method,
          path: (req.url ?? "/").split("?", 1)[0],
          ...(record.rpc === undefined ? {} : { rpc: record.rpc }),
          status: res.statusCode,
          ...(record.code === undefined ? {} : { code: record.code }),
          ...(reason === undefined ? {} : { reason }),
          duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
          ...(record.executionId === undefined ? {} : { execution_id: record.executionId }),
          ...(record.receipt === undefined ? {} : { receipt: record.receipt }),
          ...traceOf(req),
          ...(res.writableFinished ? {} : { aborted: true }),
        },
        "request",
      );
    });
    listener(req, res);
  };
}

/** The protocol of a request no RPC handled (REST paths fill theirs in): from its content type. */
function httpProtocolOf(req: NodeRequest): string {
  const type = req.headers["content-type"] ?? "";
  if (type.startsWith("application/grpc-web")) return "grpc-web";
  if (type.startsWith("application/grpc")) return "grpc";
  if (req.headers["connect-protocol-version"] !== undefined) return "connect";
  return "http";
}

/** The trace id of a valid W3C `traceparent` header (traceparent.ts), if one was sent; an invalid one is ignored. */
function traceOf(req: NodeRequest): { trace_id?: string } {
  const header = req.headers.traceparent;
  const parsed = parseTraceparent(typeof header === "string" ? header : undefined);
  return parsed === undefined ? {} : { trace_id: parsed.traceId };
}

function headerText(value: number | string | string[] | undefined): string | undefined {
  return typeof value === "string" ? value : undefined;
}
