import http2 from "node:http2";
import { fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { ErrorDetailSchema } from "../../gen/openexec/v1/error_pb.js";

/** What a raw RPC answered, whatever the protocol: HTTP status, code name ("ok" on success), reason. */
export interface RawAnswer {
  readonly status: number;
  readonly code: string;
  /** The `openexec-reason` header or trailer. */
  readonly reason: string | undefined;
  /** The reason in the openexec.v1.ErrorDetail. */
  readonly detailReason: string | undefined;
  /** The error message, if any (gRPC, gRPC-web). */
  readonly message?: string;
  /** The response message bytes (gRPC, gRPC-web) or body (Connect). */
  readonly body: Uint8Array;
}

/** A gRPC / gRPC-web length-prefixed message. */
export function envelope(message: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

/** A Connect unary request (POST, or GET when `body` is undefined and `path` carries the query). */
export async function connectCall(
  url: string,
  path: string,
  contentType: string,
  body: Uint8Array | string | undefined,
  headers: Record<string, string> = {},
): Promise<RawAnswer> {
  const response = await fetch(`${url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? headers : { "content-type": contentType, ...headers },
    ...(body === undefined ? {} : { body }),
  });
  const bytes = new Uint8Array(await response.arrayBuffer());
  let code = "ok";
  let detailReason: string | undefined;
  if (response.status !== 200) {
    try {
      const error = JSON.parse(new TextDecoder().decode(bytes)) as {
        code?: string;
        details?: Array<{ type: string; value: string }>;
      };
      code = error.code ?? "";
      const detail = error.details?.find((d) => d.type === "openexec.v1.ErrorDetail");
      if (detail !== undefined)
        detailReason = fromBinary(ErrorDetailSchema, Buffer.from(detail.value, "base64")).reason;
    } catch {
      code = "";
    }
  }
  return {
    status: response.status,
    code,
    reason: response.headers.get("openexec-reason") ?? undefined,
    detailReason,
    body: bytes,
  };
}

function fromTrailer(status: number, trailer: Headers, body: Uint8Array): RawAnswer {
  const error = findTrailerError(trailer);
  const grpcStatus = trailer.get("grpc-status");
  const code = error === undefined ? (grpcStatus === "0" ? "ok" : "") : codeToString(error.code as Code);
  const detailReason = error?.findDetails(ErrorDetailSchema)[0]?.reason;
  return {
    status,
    code,
    reason: trailer.get("openexec-reason") ?? undefined,
    detailReason,
    body,
    ...(error === undefined ? {} : { message: error.rawMessage }),
  };
}

/** A gRPC request over h2c with the given (already framed, or deliberately broken) body. */
export function grpcCall(
  url: string,
  path: string,
  contentType: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const request = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": contentType,
      te: "trailers",
      ...headers,
    });
    let status = 0;
    const merged = new Headers();
    const chunks: Buffer[] = [];
    const absorb = (h: http2.IncomingHttpHeaders) => {
      for (const [name, value] of Object.entries(h)) {
        if (name.startsWith(":") || value === undefined) continue;
        merged.set(name, Array.isArray(value) ? value.join(", ") : String(value));
      }
    };
    request.on("response", (h) => {
      status = Number(h[":status"]);
      absorb(h);
    });
    request.on("trailers", absorb);
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("error", (error) => {
      session.close();
      reject(error);
    });
    request.on("end", () => {
      session.close();
      const raw = Buffer.concat(chunks);
      resolve(fromTrailer(status, merged, raw.length >= 5 ? raw.subarray(5) : raw));
    });
    request.end(Buffer.from(body));
  });
}

/** A gRPC-web request over HTTP/1.1; the trailers come from the final 0x80 frame. */
export async function grpcWebCall(
  url: string,
  path: string,
  contentType: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): Promise<RawAnswer> {
  const response = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": contentType, ...headers },
    body,
  });
  const raw = new Uint8Array(await response.arrayBuffer());
  const trailer = new Headers();
  response.headers.forEach((value, name) => {
    trailer.set(name, value);
  });
  let message = new Uint8Array(0);
  for (let offset = 0; offset + 5 <= raw.length; ) {
    const flags = raw[offset] ?? 0;
    const length = new DataView(raw.buffer, raw.byteOffset + offset + 1, 4).getUint32(0);
    const data = raw.subarray(offset + 5, offset + 5 + length);
    if ((flags & 0x80) === 0x80) {
      for (const line of new TextDecoder().decode(data).split("\r\n")) {
        const colon = line.indexOf(":");
        if (colon > 0) trailer.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      }
    } else {
      message = data;
    }
    offset += 5 + length;
  }
  return fromTrailer(response.status, trailer, message);
}

export { Code };
