import { type ConnectRouter, type ConnectRouterOptions, createConnectRouter } from "@connectrpc/connect";
import { createAsyncIterable, readAllBytes, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import { Rejection } from "../errors/reason.js";
import type { Logger } from "../log/logger.js";
import { writeRejection } from "./http-errors.js";
import { clientWentAway, type RequestListener } from "./http-server.js";

export interface ConnectListenerOptions extends ConnectRouterOptions {
  readonly routes: (router: ConnectRouter) => void;
  /** Answers paths that are no RPC. */
  readonly fallback: RequestListener;
  readonly logger: Logger;
}

/**
 * Serves the RPC services over Connect, gRPC and gRPC-web, like connect-node's
 * own adapter, with two corrections for a server that must never answer a
 * client's mistake with a 5xx:
 * - a request connect cannot even read (e.g. HTTP/1.0 without Host) gets a 400
 *   instead of an exception;
 * - undecodable protobuf, which connect-es reports as INTERNAL ("parse binary"),
 *   is answered as INVALID_ARGUMENT on every protocol.
 */
export function createConnectListener(options: ConnectListenerOptions): RequestListener {
  const router = createConnectRouter({ acceptCompression: [compressionGzip, compressionBrotli], ...options });
  options.routes(router);
  const handlers = new Map(router.handlers.map((handler) => [handler.requestPath, handler]));
  return (req, res) => {
    const handler = handlers.get((req.url ?? "").split("?", 1)[0] ?? "");
    if (handler === undefined) {
      options.fallback(req, res);
      return;
    }
    let universalRequest: ReturnType<typeof universalRequestFromNodeRequest>;
    try {
      universalRequest = universalRequestFromNodeRequest(req, res, undefined, undefined);
    } catch {
      writeRejection(res, new Rejection("body_malformed", "the request cannot be read (is the Host header missing?)"));
      return;
    }
    handler(universalRequest)
      .then((response) => (handler.method.methodKind === "unary" ? undecodableAsInvalid(response) : response))
      .then((response) =>
        universalResponseToNodeResponse(response, res as Parameters<typeof universalResponseToNodeResponse>[1]),
      )
      .catch((error: unknown) => {
        const fields = {
          rpc: `${handler.service.typeName}/${handler.method.name}`,
          err: error instanceof Error ? error.name : "",
        };
        // A client that aborts (e.g. mid-upload) is no server fault: it must not be able to flood the log.
        if (clientWentAway(req, res)) options.logger.debug(fields, "client closed the request");
        else options.logger.warn(fields, "rpc response failed");
        // The answer could not be written (usually the client went away): nothing to tell anyone.
        res.destroy();
      });
  };
}

const parseBinary = "parse binary:";
const internal = "13";
const invalidArgument = "3";

/** Rewrites connect's INTERNAL "parse binary" error, in whichever protocol carried it. */
async function undecodableAsInvalid(response: UniversalServerResponse): Promise<UniversalServerResponse> {
  const contentType = response.header?.get("content-type") ?? "";
  // gRPC and gRPC-web trailers-only answers carry the status in the headers.
  fixGrpcStatus(response.header);
  if (contentType.startsWith("application/grpc-web")) {
    if (response.body === undefined) return response;
    return {
      ...response,
      body: createAsyncIterable([fixGrpcWebTrailerFrame(await readAllBytes(response.body, Infinity))]),
    };
  }
  if (contentType.startsWith("application/grpc")) {
    const { body, trailer } = response;
    if (body === undefined) return response;
    return {
      ...response,
      body: (async function* () {
        yield* body;
        fixGrpcStatus(trailer);
      })(),
    };
  }
  // The Connect protocol: a unary error is a JSON body with an HTTP status.
  if (response.status !== 500 || response.body === undefined) return response;
  const bytes = await readAllBytes(response.body, Infinity);
  let error: { code?: unknown; message?: unknown };
  try {
    error = JSON.parse(new TextDecoder().decode(bytes)) as typeof error;
  } catch {
    return { ...response, body: createAsyncIterable([bytes]) };
  }
  if (error.code !== "internal" || typeof error.message !== "string" || !error.message.startsWith(parseBinary)) {
    return { ...response, body: createAsyncIterable([bytes]) };
  }
  const fixed = new TextEncoder().encode(
    JSON.stringify({ code: "invalid_argument", message: `malformed request: ${error.message}` }),
  );
  response.header?.delete("content-length");
  return { ...response, status: 400, body: createAsyncIterable([fixed]) };
}

function fixGrpcStatus(headers: Headers | undefined): void {
  if (headers?.get("grpc-status") !== internal) return;
  const message = decodeURIComponent(headers.get("grpc-message") ?? "");
  if (!message.startsWith(parseBinary)) return;
  headers.set("grpc-status", invalidArgument);
  headers.set("grpc-message", encodeURIComponent(`malformed request: ${message}`));
}

/** gRPC-web puts trailers in a final frame (flag 0x80) of "name: value\r\n" lines. */
function fixGrpcWebTrailerFrame(body: Uint8Array): Uint8Array {
  let offset = 0;
  while (offset + 5 <= body.length) {
    const flags = body[offset] ?? 0;
    const length = new DataView(body.buffer, body.byteOffset + offset + 1, 4).getUint32(0);
    const end = offset + 5 + length;
    if ((flags & 0x80) === 0x80 && end <= body.length) {
      const headers = new Headers();
      for (const line of new TextDecoder().decode(body.subarray(offset + 5, end)).split("\r\n")) {
        const colon = line.indexOf(":");
        if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      }
      if (headers.get("grpc-status") !== internal) return body;
      fixGrpcStatus(headers);
      let text = "";
      headers.forEach((value, name) => {
        text += `${name}: ${value}\r\n`;
      });
      const trailer = new TextEncoder().encode(text);
      const out = new Uint8Array(offset + 5 + trailer.length);
      out.set(body.subarray(0, offset));
      out[offset] = flags;
      new DataView(out.buffer).setUint32(offset + 1, trailer.length);
      out.set(trailer, offset + 5);
      return out;
    }
    offset = end;
  }
  return body;
}
