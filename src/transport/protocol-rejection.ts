import { type ConnectRouter, createConnectRouter } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  endStreamFlag,
  endStreamToJson,
  errorToJsonBytes,
} from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { rejectionToConnectError } from "../api/connect-errors.js";
import { Rejection } from "../errors/reason.js";
import type { NodeRequest, NodeResponse } from "../http/node-http.js";
import { writeRejection } from "./http-errors.js";

/** The RPC protocol a request speaks, told apart by its headers as connect-es does. */
export type RpcProtocol = "grpc" | "grpc-web" | "connect-unary" | "connect-stream";

/**
 * gRPC: application/grpc[+…]; gRPC-web: application/grpc-web[-text][+…];
 * Connect streaming: application/connect+…; Connect unary: application/json or
 * application/proto with a Connect-Protocol-Version header or on an RPC path,
 * or a Connect GET (`?connect=v1`). Anything else is plain HTTP.
 */
export function rpcProtocolOf(req: NodeRequest, onRpcPath: boolean): RpcProtocol | undefined {
  const type = (req.headers["content-type"] ?? "").split(";", 1)[0]?.trim().toLowerCase() ?? "";
  if (type.startsWith("application/grpc-web")) return "grpc-web";
  if (type.startsWith("application/grpc")) return "grpc";
  if (type.startsWith("application/connect+")) return "connect-stream";
  if (type === "application/json" || type === "application/proto") {
    if (onRpcPath || req.headers["connect-protocol-version"] !== undefined) return "connect-unary";
  }
  if (req.method === "GET" && /[?&]connect=v1(?:&|$)/.test(req.url ?? "")) return "connect-unary";
  return undefined;
}

/**
 * Refusals that happen before an RPC runs (Host check, unknown route, wrong
 * method), answered in the protocol of the request, so that every client sees
 * the code, the message and the reason:
 * - gRPC and gRPC-web: HTTP 200, trailers-only (grpc-status, grpc-message,
 *   grpc-status-details-bin with the ErrorDetail, openexec-reason);
 * - Connect unary: the Connect error JSON with the Connect HTTP status and the
 *   openexec-reason header; Connect streaming: HTTP 200 and an end-stream message;
 * - everything else: the REST JSON error (writeRejection).
 */
export class ProtocolRejections {
  /** RPC path → the HTTP methods it accepts. */
  readonly #rpcMethods: ReadonlyMap<string, readonly string[]>;

  constructor(routes: (router: ConnectRouter) => void) {
    // A router of our own, only to read the paths and methods connect serves.
    const router = createConnectRouter();
    routes(router);
    this.#rpcMethods = new Map(router.handlers.map((handler) => [handler.requestPath, handler.allowedMethods]));
  }

  isRpcPath(path: string): boolean {
    return this.#rpcMethods.has(path);
  }

  /**
   * Answers a method an RPC path does not accept (`OPTIONS` included; a CORS
   * preflight only reaches this when cors.ts leaves it: OPENEXEC_CORS_ORIGINS
   * unset) as the REST paths do: 405 method_not_allowed with Allow. Returns
   * false, answering nothing, when the method is accepted.
   */
  refuseWrongMethod(req: NodeRequest, res: NodeResponse, path: string): boolean {
    const allowed = this.#rpcMethods.get(path);
    if (allowed === undefined || allowed.includes(req.method ?? "")) return false;
    const allow = allowed.join(", ");
    writeRejection(res, new Rejection("method_not_allowed", `${path} accepts ${allow}`), { allow });
    return true;
  }

  /** Answers `rejection` in the request's protocol (REST JSON when it speaks none). */
  refuse(req: NodeRequest, res: NodeResponse, rejection: Rejection): void {
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    writeProtocolRejection(req, res, rejection, this.isRpcPath(path));
  }
}

export function writeProtocolRejection(
  req: NodeRequest,
  res: NodeResponse,
  rejection: Rejection,
  onRpcPath: boolean,
): void {
  const protocol = rpcProtocolOf(req, onRpcPath);
  if (protocol === undefined || res.headersSent) {
    writeRejection(res, rejection);
    return;
  }
  const error = rejectionToConnectError(rejection);
  const requestType = req.headers["content-type"] ?? "";
  const headers = new Headers({ "cache-control": "no-store", "x-content-type-options": "nosniff" });
  let status = 200;
  let body: Uint8Array = new Uint8Array(0);
  switch (protocol) {
    case "grpc":
    case "grpc-web":
      // Trailers-only: the status travels in the one HEADERS frame (HTTP/2) or the headers (gRPC-web).
      headers.set("content-type", requestType);
      setTrailerStatus(headers, error);
      break;
    case "connect-unary":
      status = codeToHttpStatus(error.code);
      headers.set("content-type", "application/json");
      error.metadata.forEach((value, key) => {
        headers.set(key, value);
      });
      body = errorToJsonBytes(error, {});
      break;
    case "connect-stream":
      headers.set("content-type", requestType);
      body = encodeEnvelope(
        endStreamFlag,
        new TextEncoder().encode(JSON.stringify(endStreamToJson(new Headers(), error, {}))),
      );
      break;
  }
  if (body.length > 0) headers.set("content-length", String(body.length));
  for (const [name, value] of headers) res.setHeader(name, value);
  res.statusCode = status;
  // end() before the headers go out: over HTTP/2 the headers then carry END_STREAM (a true trailers-only answer).
  if (body.length === 0) res.end();
  else res.end(Buffer.from(body));
}
