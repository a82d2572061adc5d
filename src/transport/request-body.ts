import { Rejection } from "../errors/reason.js";
import type { NodeRequest } from "../http/node-http.js";

/**
 * Reads a request body of at most `maxBytes`. A declared Content-Length over
 * the limit is refused before reading; a body that grows past it is refused
 * as soon as it does, without buffering the rest.
 */
export async function readBody(req: NodeRequest, maxBytes: number): Promise<Buffer> {
  const tooLarge = () => new Rejection("body_too_large", `request body exceeds ${maxBytes} bytes`);
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** True for application/json and application/*+json, with any parameters. */
export function isJsonContentType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const type = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  return type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"));
}

/** The request's headers as the RPC chain sees them (connect-node's view: pseudo-headers dropped, repeats kept). */
export function webHeadersOf(req: NodeRequest): Headers {
  const header = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith(":") || value === undefined) continue;
    if (typeof value === "string") header.append(name, value);
    else for (const one of value) header.append(name, one);
  }
  return header;
}
