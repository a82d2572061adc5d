// The Node request and response types every HTTP-facing folder shares
// (transport, observability, server): a leaf, so that they can all name them
// without importing each other.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";

export type NodeRequest = IncomingMessage | Http2ServerRequest;

export type NodeResponse = ServerResponse | Http2ServerResponse;

export type RequestListener = (req: NodeRequest, res: NodeResponse) => void;
