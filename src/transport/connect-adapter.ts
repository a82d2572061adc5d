import type { DescMethod } from "@bufbuild/protobuf";
import { base64Decode } from "@bufbuild/protobuf/wire";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ConnectRouterOptions,
  type ContextValues,
  createConnectRouter,
  createContextValues,
} from "@connectrpc/connect";
import {
  type Compression,
  createAsyncIterable,
  readAllBytes,
  type UniversalHandler,
  type UniversalServerRequest,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorFromJsonBytes, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import {
  decodingRefusalKey,
  handlerReachedKey,
  protocolErrorAsRejection,
  reasonHeader,
} from "../api/connect-errors.js";
import type { UnaryCaller } from "../api/unary-caller.js";
import { Rejection } from "../errors/reason.js";
import type { NodeRequest, NodeResponse, RequestListener } from "../http/node-http.js";
import type { Logger } from "../log/logger.js";
import { accessRecordKey, accessRecordOf } from "../observability/access-log.js";
import type { UnreachedObserver } from "../observability/rpc-observer.js";
import { carriesEnvelopes, withCheckedEnvelopeFlags } from "./envelope-flags.js";
import { writeRejection } from "./http-errors.js";
import { clientWentAway } from "./http-server.js";
import { createLeanUnary } from "./lean-unary.js";
import { binaryRefusal, strictJsonOptions } from "./strict-decoding.js";

export interface ConnectListenerOptions extends ConnectRouterOptions {
  readonly routes: (router: ConnectRouter) => void;
  /** Answers paths that are no RPC. */
  readonly fallback: RequestListener;
  readonly logger: Logger;
  /** OPENEXEC_MAX_JSON_DEPTH: JSON request messages may nest two levels deeper (as REST bodies). */
  readonly maxJsonDepth?: number;
  /**
   * The unary methods through the interceptor chain, for the lean unary path
   * (lean-unary.ts); without it (OPENEXEC_LEAN_UNARY=off) connect-es answers every request.
   */
  readonly call?: UnaryCaller;
  /**
   * Observes a unary request connect-es refused while decoding it, before the
   * interceptor chain (metrics, access log), with the error as answered.
   */
  readonly unreached?: UnreachedObserver;
  /** Counts the requests the lean unary path took (metrics). */
  readonly leanTaken?: (outcome: "answered" | "handed_over") => void;
}

const compressions: readonly Compression[] = [compressionGzip, compressionBrotli];

/**
 * Serves the RPC services over Connect, gRPC and gRPC-web, like connect-node's
 * own adapter, with corrections for a server that must never answer a
 * client's mistake with a 5xx or read a message other than it was sent:
 * - every request message is decoded strictly (strict-decoding.ts): JSON by
 *   the same rules as REST bodies, binary with wire types, map keys and
 *   Value numbers checked before protobuf-es decodes it;
 * - a request connect cannot even read (e.g. HTTP/1.0 without Host) gets a 400
 *   instead of an exception;
 * - a gRPC or gRPC-web frame flagged other than 0 or 1 is refused, never read
 *   as an uncompressed message (envelope-flags.ts);
 * - whatever the protocol layer cannot decode, which connect-es reports as
 *   INTERNAL ("parse binary") or as INVALID_ARGUMENT without a reason, is
 *   answered as INVALID_ARGUMENT with a reason, an ErrorDetail and
 *   `openexec-reason`, on every protocol.
 */
export function createConnectListener(options: ConnectListenerOptions): RequestListener {
  const router = createConnectRouter({ acceptCompression: [...compressions], ...options });
  const maxJsonDepth = options.maxJsonDepth ?? 32;
  options.routes(strictRouter(router, maxJsonDepth));
  const handlers = new Map(router.handlers.map((handler) => [handler.requestPath, handler]));
  const readMaxBytes = options.readMaxBytes ?? 0xffffffff;
  const lean =
    options.call === undefined
      ? undefined
      : createLeanUnary({
          call: options.call,
          compressions,
          readMaxBytes,
          jsonOptions: (method) => strictJsonOptions(method.input, maxJsonDepth),
          logger: options.logger,
          ...(options.shutdownSignal === undefined ? {} : { shutdownSignal: options.shutdownSignal }),
          ...(options.leanTaken === undefined ? {} : { taken: options.leanTaken }),
        });

  /** connect-es answers; `body` is the request body when the lean path has already read some of it. */
  const viaConnect = (
    req: NodeRequest,
    res: NodeResponse,
    handler: UniversalHandler,
    body?: AsyncIterable<Uint8Array>,
  ): void => {
    const started = performance.now();
    const contextValues = createContextValues();
    contextValues.set(accessRecordKey, accessRecordOf(req));
    let universalRequest: UniversalServerRequest;
    try {
      // connect-node takes an already-read body in place of a parsed JSON one; a stream of bytes is read as such.
      universalRequest = universalRequestFromNodeRequest(req, res, body as never, contextValues);
    } catch {
      writeRejection(res, new Rejection("body_malformed", "the request cannot be read (is the Host header missing?)"));
      return;
    }
    const unary = handler.method.methodKind === "unary";
    (unary
      ? precheckBinary(handler.method, universalRequest, contextValues, readMaxBytes)
      : Promise.resolve(universalRequest)
    )
      .then((request) => handler(checkedEnvelopes(request)))
      .then((response) => {
        if (!unary) return response;
        const reached = contextValues.get(handlerReachedKey);
        return refusalsWithReasons(response, contextValues.get(decodingRefusalKey), reached, (error) => {
          // The chain never saw a request refused while connect-es decoded it: count and log it here,
          // with what connect-es answered (whether or not the client is still there to read it).
          if (!reached) options.unreached?.(handler.method, universalRequest.header, contextValues, error, started);
        });
      })
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

  return (req, res) => {
    const handler = handlers.get((req.url ?? "").split("?", 1)[0] ?? "");
    if (handler === undefined) {
      options.fallback(req, res);
      return;
    }
    if (lean?.(req, res, handler.method, (body) => viaConnect(req, res, handler, body)) === true) return;
    viaConnect(req, res, handler);
  };
}

/** A gRPC or gRPC-web request whose body refuses frames flagged other than 0 or 1 (envelope-flags.ts). */
function checkedEnvelopes(request: UniversalServerRequest): UniversalServerRequest {
  const body = request.body;
  if (!carriesEnvelopes(request.header.get("content-type"))) return request;
  if (typeof body !== "object" || body === null || !(Symbol.asyncIterator in body)) return request;
  return { ...request, body: withCheckedEnvelopeFlags(body as AsyncIterable<Uint8Array>) };
}

/**
 * Registers every method on its own, with JSON options that know its input
 * type (strict-decoding.ts), instead of one set of options for all.
 */
export function strictRouter(router: ConnectRouter, maxJsonDepth: number): ConnectRouter {
  const register = (method: DescMethod, impl: unknown, options: Partial<ConnectRouterOptions> | undefined) => {
    router.rpc(method, impl as never, { ...options, jsonOptions: strictJsonOptions(method.input, maxJsonDepth) });
  };
  const strict: ConnectRouter = {
    get handlers() {
      return router.handlers;
    },
    service(service, implementation, options) {
      for (const method of service.methods) {
        const fn = (implementation as Record<string, unknown>)[method.localName];
        const message = `${service.typeName}.${method.name} is not implemented`;
        register(
          method,
          typeof fn === "function"
            ? fn.bind(implementation)
            : () => {
                throw new ConnectError(message, Code.Unimplemented);
              },
          options,
        );
      }
      return strict;
    },
    rpc(method, impl, options) {
      register(method, impl, options);
      return strict;
    },
  };
  return strict;
}

/**
 * Reads a unary request's binary message(s) as connect-es will (unframed,
 * decompressed; Connect GET from the query) and records a refusal for the
 * interceptor, which answers it before the handler runs. The request goes on
 * with exactly the bytes it came with; anything odd is left to connect-es.
 */
async function precheckBinary(
  method: DescMethod,
  request: UniversalServerRequest,
  contextValues: ContextValues,
  readMaxBytes: number,
): Promise<UniversalServerRequest> {
  const contentType = (request.header.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  const url = new URL(request.url, "http://localhost");
  const get = request.method === "GET";
  const binary = get
    ? url.searchParams.get("encoding") === "proto"
    : [
        "application/proto",
        "application/grpc",
        "application/grpc+proto",
        "application/grpc-web",
        "application/grpc-web+proto",
      ].includes(contentType);
  if (!binary) return request;
  let raw: Uint8Array | undefined;
  let rest: AsyncIterable<Uint8Array> | undefined;
  if (!get && typeof request.body === "object" && request.body !== null && Symbol.asyncIterator in request.body) {
    ({ raw, rest } = await readUpTo(request.body as AsyncIterable<Uint8Array>, readMaxBytes + 5));
  }
  const messages = rest === undefined ? await messagesOf(get, contentType, url, request.header, raw, readMaxBytes) : [];
  const refusal = messages?.map((message) => binaryRefusal(method.input, message)).find((r) => r !== undefined);
  if (refusal !== undefined) contextValues.set(decodingRefusalKey, refusal);
  if (get || raw === undefined) return request;
  const again = raw;
  const remaining = rest;
  return {
    ...request,
    body: (async function* () {
      yield again;
      if (remaining !== undefined) yield* remaining;
    })(),
  };
}

/** The body's bytes, or (beyond `cap`) what was read so far and the rest of the stream. */
async function readUpTo(
  body: AsyncIterable<Uint8Array>,
  cap: number,
): Promise<{ raw: Uint8Array; rest: AsyncIterable<Uint8Array> | undefined }> {
  const iterator = body[Symbol.asyncIterator]();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const next = await iterator.next();
    if (next.done === true) return { raw: Buffer.concat(chunks), rest: undefined };
    chunks.push(next.value);
    size += next.value.length;
    if (size > cap) {
      return { raw: Buffer.concat(chunks), rest: { [Symbol.asyncIterator]: () => iterator } };
    }
  }
}

/** The request message(s) in the body or query; undefined when they cannot be read (connect-es will say why). */
async function messagesOf(
  get: boolean,
  contentType: string,
  url: URL,
  header: Headers,
  raw: Uint8Array | undefined,
  readMaxBytes: number,
): Promise<Uint8Array[] | undefined> {
  try {
    if (get) {
      const text = url.searchParams.get("message") ?? "";
      const bytes = url.searchParams.get("base64") === "1" ? base64Decode(text) : new TextEncoder().encode(text);
      return [await decompress(url.searchParams.get("compression"), bytes, readMaxBytes)];
    }
    if (raw === undefined) return undefined;
    if (contentType === "application/proto") {
      return [await decompress(header.get("content-encoding"), raw, readMaxBytes)];
    }
    const messages: Uint8Array[] = [];
    for (let offset = 0; offset < raw.length; ) {
      if (offset + 5 > raw.length) return undefined;
      const flags = raw[offset] ?? 0;
      const length = new DataView(raw.buffer, raw.byteOffset + offset + 1, 4).getUint32(0);
      const data = raw.subarray(offset + 5, offset + 5 + length);
      if (data.length !== length) return undefined;
      if ((flags & 0x80) === 0) {
        messages.push((flags & 0x01) === 0 ? data : await decompress(header.get("grpc-encoding"), data, readMaxBytes));
      }
      offset += 5 + length;
    }
    return messages;
  } catch {
    return undefined;
  }
}

async function decompress(name: string | null, bytes: Uint8Array, readMaxBytes: number): Promise<Uint8Array> {
  if (name === null || name === "" || name === "identity") return bytes;
  const compression = compressions.find((c) => c.name === name);
  if (compression === undefined) throw new Error("unsupported compression");
  return compression.decompress(bytes, readMaxBytes);
}

/**
 * Gives protocol-layer decoding errors their reason, in whichever protocol
 * carried them (protocolErrorAsRejection); `known` is a refusal found before
 * decoding. `answered` hears the error answered, as the client will see it.
 */
async function refusalsWithReasons(
  response: UniversalServerResponse,
  known: Rejection | undefined,
  handlerReached: boolean,
  answered: (error: ConnectError) => void,
): Promise<UniversalServerResponse> {
  const contentType = response.header?.get("content-type") ?? "";
  const fix = (headers: Headers | undefined) => {
    if (headers === undefined) return false;
    const error = findTrailerError(headers);
    const fixed = error === undefined ? undefined : protocolErrorAsRejection(error, known, handlerReached);
    if (error !== undefined) answered(fixed ?? error);
    if (fixed === undefined) return false;
    headers.delete("grpc-status-details-bin");
    setTrailerStatus(headers, fixed);
    return true;
  };
  // gRPC and gRPC-web trailers-only answers carry the status in the headers.
  fix(response.header);
  if (contentType.startsWith("application/grpc-web")) {
    if (response.body === undefined) return response;
    return {
      ...response,
      body: createAsyncIterable([fixGrpcWebTrailerFrame(await readAllBytes(response.body, Infinity), fix)]),
    };
  }
  if (contentType.startsWith("application/grpc")) {
    const { body, trailer } = response;
    if (body === undefined) return response;
    return {
      ...response,
      body: (async function* () {
        yield* body;
        fix(trailer);
      })(),
    };
  }
  // The Connect protocol: a unary error is a JSON body with an HTTP status.
  if (response.status === 200 || response.body === undefined) return response;
  let bytes = await readAllBytes(response.body, Infinity);
  const encoding = response.header?.get("content-encoding");
  const compression = compressions.find((c) => c.name === encoding);
  let fixed: ConnectError | undefined;
  try {
    const plain = compression === undefined ? bytes : await compression.decompress(bytes, Infinity);
    const error = errorFromJsonBytes(plain, undefined, new ConnectError("", Code.Internal));
    // A reason in the header means the error came from OpenExec, not the protocol layer.
    if (response.header?.get(reasonHeader) === null) fixed = protocolErrorAsRejection(error, known, handlerReached);
    answered(fixed ?? error);
  } catch {
    fixed = undefined;
  }
  if (fixed === undefined) return { ...response, body: createAsyncIterable([bytes]) };
  bytes = errorToJsonBytes(fixed, {});
  const header = new Headers(response.header);
  header.delete("content-encoding");
  header.set("content-length", String(bytes.length));
  fixed.metadata.forEach((value, name) => {
    header.set(name, value);
  });
  return { ...response, status: codeToHttpStatus(fixed.code), header, body: createAsyncIterable([bytes]) };
}

/** gRPC-web puts trailers in a final frame (flag 0x80) of "name: value\r\n" lines. */
function fixGrpcWebTrailerFrame(body: Uint8Array, fix: (headers: Headers) => boolean): Uint8Array {
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
      if (!fix(headers)) return body;
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
