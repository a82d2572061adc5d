import type { DescMessage, DescMethod, DescMethodUnary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouterOptions, createContextValues } from "@connectrpc/connect";
import {
  type Compression,
  compressionNegotiate,
  createMethodSerializationLookup,
  type MethodSerializationLookup,
  validateUniversalHandlerOptions,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  errorToJsonBytes,
  parseContentType as parseConnectContentType,
  parseTimeout as parseConnectTimeout,
  trailerMux,
} from "@connectrpc/connect/protocol-connect";
import {
  parseContentType as parseGrpcContentType,
  parseTimeout as parseGrpcTimeout,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import { callContextOf } from "../api/call-context.js";
import { handlerReachedKey, protocolErrorAsRejection, reasonOf } from "../api/connect-errors.js";
import type { UnaryCaller } from "../api/unary-caller.js";
import type { NodeRequest, NodeResponse } from "../http/node-http.js";
import type { Logger } from "../log/logger.js";
import { accessRecordKey, accessRecordOf } from "../observability/access-log.js";
import { clientWentAway } from "./http-server.js";
import { webHeadersOf } from "./request-body.js";
import { binaryRefusal } from "./strict-decoding.js";

/** Hands a request the lean path took but will not answer to connect-es, with the body bytes it already read. */
export type FallThrough = (body: AsyncIterable<Uint8Array>) => void;

export interface LeanUnaryOptions {
  readonly call: UnaryCaller;
  /** The compressions connect-es is given (the same ones are negotiated here). */
  readonly compressions: readonly Compression[];
  /** connect-es's readMaxBytes (OPENEXEC_MAX_BODY_BYTES). */
  readonly readMaxBytes: number;
  /** The strict JSON options connect-es decodes each method's messages with (strict-decoding.ts). */
  readonly jsonOptions: (method: DescMethod) => NonNullable<ConnectRouterOptions["jsonOptions"]>;
  readonly logger: Logger;
  /** The server's shutdown: a handler's signal fires with it, as under connect-es. */
  readonly shutdownSignal?: AbortSignal;
  /** Counts each request taken: answered here, or handed over to connect-es. */
  readonly taken?: (outcome: "answered" | "handed_over") => void;
}

/** The three unary encodings the lean path answers; everything else is connect-es's. */
type Wire = "connect-json" | "connect-proto" | "grpc";

/**
 * The lean unary path (issue 10): answers the hot unary requests, Connect JSON
 * and binary over HTTP/1.1 or h2c and gRPC over h2c, without connect-es's
 * per-call machinery (two linked AbortControllers and a DOMException, the
 * universal request and response wrappers, async-iterable pipelines), through
 * the same interceptor chain (src/api/unary-caller.ts), with the same bytes on
 * the wire: the same serializers, error encodings and header rules as
 * connect-es's handlers, called in the same order.
 *
 * It takes a request only when it is the plain case: POST, a unary method, an
 * uncompressed body within the limit, a deadline header that parses, a
 * message that decodes strictly without refusal. Anything else (compressed or
 * GET requests, gRPC-web, gRPC over HTTP/1.1 or with JSON, streams, bodies too
 * large, malformed or refused messages, bad deadlines) goes to connect-es, if
 * need be with the bytes already read, so that every answer but the plain
 * one is connect-es's own. `OPENEXEC_LEAN_UNARY=off` sends everything there.
 */
export function createLeanUnary(options: LeanUnaryOptions) {
  const limits = validateUniversalHandlerOptions({ readMaxBytes: options.readMaxBytes });
  const lookups = new Map<DescMethod, MethodSerializationLookup<DescMessage, DescMessage>>();
  const serializationOf = (method: DescMethod): MethodSerializationLookup<DescMessage, DescMessage> => {
    let lookup = lookups.get(method);
    if (lookup === undefined) {
      lookup = createMethodSerializationLookup(method, undefined, options.jsonOptions(method), limits);
      lookups.set(method, lookup);
    }
    return lookup;
  };

  /**
   * Takes the request (true) or leaves it to connect-es untouched (false). A
   * request it takes is answered here or handed to `fallThrough`.
   */
  return function serve(req: NodeRequest, res: NodeResponse, method: DescMethod, fallThrough: FallThrough): boolean {
    const arrived = Date.now();
    if (method.methodKind !== "unary" || req.method !== "POST") return false;
    // connect-es refuses a request whose authority makes no URL (HTTP/1.0 without Host, a Host
    // with spaces): connect-adapter.ts answers it. The URL is built as connect-node builds it.
    const url = urlOf(req);
    if (url === undefined) return false;
    const wire = wireOf(req);
    if (wire === undefined) return false;
    const grpc = wire === "grpc";
    const timeout = grpc
      ? parseGrpcTimeout(headerOf(req, "grpc-timeout"), Number.MAX_SAFE_INTEGER)
      : parseConnectTimeout(headerOf(req, "connect-timeout-ms"), Number.MAX_SAFE_INTEGER);
    if (timeout.error !== undefined) return false;
    const declared = grpc ? undefined : contentLengthOf(req);
    if (declared === null || (declared !== undefined && declared > options.readMaxBytes)) return false;
    // gRPC frames the message: five bytes more than the message may be read.
    const cap = options.readMaxBytes + (grpc ? 5 : 0);
    readBodyUpTo(req, cap)
      .then((body) => {
        if (body.rest !== undefined) {
          options.taken?.("handed_over");
          fallThrough(replay(body.chunks, body.rest));
          return;
        }
        const bytes = body.chunks.length === 1 ? (body.chunks[0] as Buffer) : Buffer.concat(body.chunks);
        const message = grpc
          ? unframe(bytes, options.readMaxBytes)
          : declared === bytes.length || declared === undefined
            ? bytes
            : undefined;
        const decoded = message === undefined ? undefined : decode(method, wire, message);
        if (decoded === undefined) {
          options.taken?.("handed_over");
          fallThrough(replay([bytes], undefined));
          return;
        }
        options.taken?.("answered");
        // The deadline runs from the request's arrival, as connect-es's does.
        const timeoutMs = timeout.timeoutMs === undefined ? undefined : timeout.timeoutMs - (Date.now() - arrived);
        return answer(req, res, method as DescMethodUnary, wire, url, decoded, timeoutMs);
      })
      .catch((error: unknown) => writeFailed(req, res, method, error));
    return true;
  };

  /** The request message, or undefined when connect-es must answer (it does not decode, or is refused). */
  function decode(method: DescMethod, wire: Wire, bytes: Uint8Array): unknown {
    try {
      if (wire !== "connect-json" && binaryRefusal(method.input, bytes) !== undefined) return undefined;
      return serializationOf(method)
        .getI(wire !== "connect-json")
        .parse(bytes);
    } catch {
      return undefined;
    }
  }

  /**
   * Calls the method through the chain and writes its answer as connect-es's
   * handlers do: the response headers start as theirs (content type, gRPC's
   * encoding and `grpc-status: 0` trailer), the handler adds to them, errors
   * and compression are applied to them in the same order.
   */
  async function answer(
    req: NodeRequest,
    res: NodeResponse,
    method: DescMethodUnary,
    wire: Wire,
    url: string,
    message: unknown,
    timeoutMs: number | undefined,
  ): Promise<void> {
    const grpc = wire === "grpc";
    const binary = wire !== "connect-json";
    const header = webHeadersOf(req);
    const compression = compressionNegotiate(
      [...options.compressions],
      null,
      header.get(grpc ? "grpc-accept-encoding" : "accept-encoding"),
      grpc ? "grpc-accept-encoding" : "accept-encoding",
    ).response;
    const contextValues = createContextValues();
    contextValues.set(accessRecordKey, accessRecordOf(req));
    const responseHeader: Record<string, string> = grpc
      ? {
          "content-type": "application/grpc+proto",
          ...(compression === null ? {} : { "grpc-encoding": compression.name }),
        }
      : { "content-type": binary ? "application/proto" : "application/json" };
    let output: Uint8Array | undefined;
    let error: ConnectError | undefined;
    try {
      const response = await options.call(method, message as never, {
        requestMethod: "POST",
        url,
        header,
        contextValues,
        protocolName: grpc ? "grpc" : "connect",
        responseHeader,
        ...(grpc ? { responseTrailer: { "grpc-status": "0" } } : {}),
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
        ...(options.shutdownSignal === undefined ? {} : { shutdownSignal: options.shutdownSignal }),
        onClientGone: (listener) => {
          if (res.destroyed) {
            queueMicrotask(listener);
            return () => undefined;
          }
          res.once("close", listener);
          return () => res.off("close", listener);
        },
      });
      output = serializationOf(method).getO(binary).serialize(response.message);
    } catch (thrown) {
      error = asReasonedError(thrown, contextValues.get(handlerReachedKey));
    }
    const context = callContextOf(contextValues);
    const headers = context?.responseHeader ?? new Headers(responseHeader);
    const trailers = context?.responseTrailer ?? new Headers(grpc ? { "grpc-status": "0" } : {});
    if (grpc) {
      await writeGrpc(res, headers, trailers, compression, output, error);
      return;
    }
    let status = 200;
    let body: Uint8Array;
    if (error === undefined && output !== undefined) {
      body = output;
    } else {
      const failure = error ?? new ConnectError("internal error", Code.Internal);
      status = codeToHttpStatus(failure.code);
      headers.set("content-type", "application/json");
      failure.metadata.forEach((value, name) => {
        headers.set(name, value);
      });
      body = errorToJsonBytes(failure, options.jsonOptions(method));
    }
    if (compression !== null && body.byteLength >= limits.compressMinBytes) {
      body = await compression.compress(body);
      headers.set("content-encoding", compression.name);
    }
    const muxed = trailerMux(headers, trailers);
    muxed.set("content-length", body.byteLength.toString(10));
    res.writeHead(status, nodeHeaders(muxed));
    res.end(body);
  }

  /** gRPC: headers once the message is ready, the message, then the status in trailers. */
  async function writeGrpc(
    res: NodeResponse,
    headers: Headers,
    trailers: Headers,
    compression: Compression | null,
    output: Uint8Array | undefined,
    error: ConnectError | undefined,
  ): Promise<void> {
    if (error !== undefined || output === undefined) {
      setTrailerStatus(trailers, error ?? new ConnectError("internal error", Code.Internal));
      res.writeHead(200, nodeHeaders(headers));
      res.addTrailers(nodeHeaders(trailers));
      res.end();
      return;
    }
    const bytes = await frame(output, compression, limits.compressMinBytes);
    res.writeHead(200, nodeHeaders(headers));
    (res as { write(chunk: Uint8Array): boolean }).write(bytes);
    res.addTrailers(nodeHeaders(trailers));
    res.end();
  }

  function writeFailed(req: NodeRequest, res: NodeResponse, method: DescMethod, error: unknown): void {
    const fields = { rpc: `${method.parent.typeName}/${method.name}`, err: error instanceof Error ? error.name : "" };
    // A client that aborts (e.g. mid-upload) is no server fault: it must not be able to flood the log.
    if (clientWentAway(req, res)) options.logger.debug(fields, "client closed the request");
    else options.logger.warn(fields, "rpc response failed");
    res.destroy();
  }
}

/** Which lean encoding a request uses, from its headers alone; undefined: connect-es's. */
function wireOf(req: NodeRequest): Wire | undefined {
  const contentType = req.headers["content-type"];
  if (contentType === undefined) return undefined;
  if (req.httpVersionMajor === 2 && contentType.toLowerCase().startsWith("application/grpc")) {
    // gRPC-web and gRPC with JSON do not parse here as binary gRPC.
    if (parseGrpcContentType(contentType)?.binary !== true) return undefined;
    return identity(req.headers["grpc-encoding"]) ? "grpc" : undefined;
  }
  const type = parseConnectContentType(contentType);
  if (type === undefined || type.stream || !identity(req.headers["content-encoding"])) return undefined;
  return type.binary ? "connect-proto" : "connect-json";
}

/** The request's URL as connect-node makes it (undefined when it makes none: connect-es refuses those). */
function urlOf(req: NodeRequest): string | undefined {
  const authority = "authority" in req ? req.authority : req.headers.host;
  if (authority === undefined) return undefined;
  try {
    return new URL(req.url ?? "", `http://${authority}`).toString();
  } catch {
    return undefined;
  }
}

function identity(encoding: string | string[] | undefined): boolean {
  return encoding === undefined || encoding === "identity";
}

function headerOf(req: NodeRequest, name: string): string | null {
  const value = req.headers[name];
  return typeof value === "string" ? value : null;
}

/** The declared Content-Length: undefined when none is declared, null when it is not a plain number. */
function contentLengthOf(req: NodeRequest): number | undefined | null {
  const value = req.headers["content-length"];
  if (value === undefined) return undefined;
  return /^\d{1,15}$/.test(value) ? Number(value) : null;
}

/**
 * The one uncompressed message of a gRPC body, or undefined when it holds
 * anything else: a frame flagged other than 0 (compressed, or the malformed
 * flags connect-adapter.ts refuses, see envelope-flags.ts) is connect-es's.
 */
function unframe(body: Uint8Array, readMaxBytes: number): Uint8Array | undefined {
  if (body.length < 5 || body[0] !== 0) return undefined;
  const length = new DataView(body.buffer, body.byteOffset + 1, 4).getUint32(0);
  if (length > readMaxBytes || length !== body.length - 5) return undefined;
  return body.subarray(5);
}

async function frame(message: Uint8Array, compression: Compression | null, compressMinBytes: number) {
  let flags = 0;
  let data = message;
  if (compression !== null && message.byteLength >= compressMinBytes) {
    data = await compression.compress(message);
    flags = 0x01;
  }
  const framed = Buffer.allocUnsafe(5 + data.byteLength);
  framed[0] = flags;
  framed.writeUInt32BE(data.byteLength, 1);
  framed.set(data, 5);
  return framed;
}

/** Headers as node's writeHead takes them, as connect-node passes them (set-cookie as a list). */
function nodeHeaders(headers: Headers): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null);
  headers.forEach((value, name) => {
    out[name] = name === "set-cookie" ? headers.getSetCookie() : value;
  });
  return out;
}

/**
 * The ConnectError connect-es would answer with: a thrown ConnectError as it
 * is, anything else INTERNAL, and a protocol error without a reason given
 * one as connect-adapter.ts does for connect-es's answers.
 */
function asReasonedError(thrown: unknown, handlerReached: boolean): ConnectError {
  const error = thrown instanceof ConnectError ? thrown : new ConnectError("internal error", Code.Internal);
  if (reasonOf(error) !== undefined) return error;
  return protocolErrorAsRejection(error, undefined, handlerReached) ?? error;
}

interface ReadBody {
  readonly chunks: Buffer[];
  /** Set when the body went past the cap: the rest of it, unread. */
  readonly rest: AsyncIterable<Uint8Array> | undefined;
}

/** Reads the body up to `cap` bytes; past it, stops reading and hands back the rest unread. */
function readBodyUpTo(req: NodeRequest, cap: number): Promise<ReadBody> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > cap) {
        cleanup();
        req.pause();
        resolve({ chunks, rest: req as AsyncIterable<Uint8Array> });
      }
    };
    const onEnd = () => {
      cleanup();
      resolve({ chunks, rest: undefined });
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    req.on("data", onData);
    req.once("end", onEnd);
    req.once("error", onError);
  });
}

/** The body again for connect-es: what was read, then the rest. */
async function* replay(chunks: readonly Uint8Array[], rest: AsyncIterable<Uint8Array> | undefined) {
  yield* chunks;
  if (rest !== undefined) yield* rest;
}
