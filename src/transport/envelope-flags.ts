import { parseContentType as parseGrpcContentType } from "@connectrpc/connect/protocol-grpc";
import { parseContentType as parseGrpcWebContentType } from "@connectrpc/connect/protocol-grpc-web";
import { rejectionToConnectError } from "../api/connect-errors.js";
import { Rejection } from "../errors/reason.js";

/**
 * The flags byte of a gRPC or gRPC-web request frame is the Compressed-Flag:
 * 0 (uncompressed) or 1 (compressed with grpc-encoding), nothing else
 * (PROTOCOL-HTTP2.md, "Length-Prefixed-Message"; PROTOCOL-WEB.md reserves the
 * top bit for the server's trailers frame, which a request never carries).
 * connect-es reads only bit 0 of a request frame's flags, so a frame flagged
 * 2 or 128 would otherwise be decoded as an uncompressed message and run
 * (and gRPC-web would skip a 0x80 frame and run the next).
 */
export function envelopeFlagsRefusal(flags: number): Rejection | undefined {
  if (flags === 0 || flags === 1) return undefined;
  return new Rejection(
    "body_malformed",
    `malformed request: a gRPC frame's compressed flag must be 0 or 1, not ${flags}`,
  );
}

/** Whether connect-es reads this request's body as gRPC or gRPC-web frames (gRPC-web-text it refuses). */
export function carriesEnvelopes(contentType: string | null): boolean {
  if (contentType === null) return false;
  if (parseGrpcContentType(contentType) !== undefined) return true;
  return parseGrpcWebContentType(contentType)?.text === false;
}

/**
 * The request body, frame flags checked as it streams by: a chunk holding a
 * frame whose flags are not 0 or 1 is never passed on; the body throws the
 * refusal (INVALID_ARGUMENT body_malformed, with its reason) instead, which
 * connect-es answers in the request's protocol before any handler runs.
 */
export async function* withCheckedEnvelopeFlags(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  /** Bytes of the current frame's message still to come; then a header. */
  let messageLeft = 0;
  /** How many bytes of the current 5-byte header were seen. */
  let headerSeen = 0;
  let length = 0;
  for await (const chunk of body) {
    let offset = 0;
    while (offset < chunk.length) {
      if (messageLeft > 0) {
        const take = Math.min(messageLeft, chunk.length - offset);
        messageLeft -= take;
        offset += take;
        continue;
      }
      const byte = chunk[offset++] ?? 0;
      if (headerSeen === 0) {
        const refusal = envelopeFlagsRefusal(byte);
        if (refusal !== undefined) throw rejectionToConnectError(refusal);
        length = 0;
      } else {
        length = length * 256 + byte;
      }
      headerSeen++;
      if (headerSeen === 5) {
        headerSeen = 0;
        messageLeft = length;
      }
    }
    yield chunk;
  }
}
