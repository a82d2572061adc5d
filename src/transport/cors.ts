import { cors as connectCors } from "@connectrpc/connect";
import { reasonHeader } from "../api/connect-errors.js";
import { Rejection } from "../errors/reason.js";
import type { NodeRequest, NodeResponse } from "../http/node-http.js";
import { writeRejection } from "./http-errors.js";

/**
 * What a preflight allows, as connect-web and gRPC-web clients need it
 * (connect-es publishes the lists): the methods Connect uses (POST, and GET
 * for side-effect-free methods; REST uses the same two), and the request
 * headers of Connect and gRPC-web.
 */
export const corsAllowedMethods: readonly string[] = connectCors.allowedMethods;
export const corsAllowedHeaders: readonly string[] = connectCors.allowedHeaders;

/**
 * Response headers a page may read: connect-es's list (grpc-status,
 * grpc-message and grpc-status-details-bin, without which a gRPC-web client
 * sees no status in a trailers-only answer) plus `openexec-reason`, so that a
 * browser client can tell refusals apart as every other client does.
 */
export const corsExposedHeaders: readonly string[] = [...connectCors.exposedHeaders, reasonHeader];

/** How long a browser may reuse a preflight answer: Chromium's cap (Firefox allows a day). */
export const corsMaxAgeSeconds = 7200;

export interface CorsOptions {
  /** OPENEXEC_CORS_ORIGINS: exact origins; empty turns CORS off entirely. */
  readonly origins: ReadonlySet<string>;
  /** The Host check (OPENEXEC_ALLOWED_HOSTS): a preflight that fails it is left to the Host refusal. */
  readonly hostAllowed: (req: NodeRequest) => boolean;
}

/**
 * Runs first on every request. Returns true when it has answered (a
 * preflight); otherwise it has only added headers to `res`, which every later
 * answer keeps (writeHead merges them), errors and refusals included.
 */
export type CorsHook = (req: NodeRequest, res: NodeResponse) => boolean;

/**
 * CORS for browser clients (connect-web over Connect and gRPC-web, and fetch
 * on the REST paths):
 * - no origins configured: does nothing, so a preflight is answered as any
 *   other OPTIONS (405 on a served path, 404 elsewhere) and no answer
 *   carries a CORS header;
 * - an allowed Origin: every answer carries Access-Control-Allow-Origin with
 *   that origin and Access-Control-Expose-Headers; a preflight is answered
 *   204 with the allowed methods and headers, on every path: a request to a
 *   path nothing serves then gets its route_not_found, readable by the page,
 *   instead of a bare CORS failure;
 * - any other Origin: no CORS header, so the browser withholds the answer;
 *   its preflight is refused 403 origin_not_allowed, so the request it asks
 *   about is never sent.
 * Never Access-Control-Allow-Credentials: no page may send the user's
 * cookies or HTTP auth here (SECURITY.md).
 */
export function createCors(options: CorsOptions): CorsHook {
  if (options.origins.size === 0) return () => false;
  const allowMethods = corsAllowedMethods.join(", ");
  const allowHeaders = corsAllowedHeaders.join(", ");
  const exposeHeaders = corsExposedHeaders.join(", ");
  return (req, res) => {
    // The answer depends on Origin, with or without CORS headers: a shared
    // cache must not hand one origin's answer to another.
    res.setHeader("vary", "Origin");
    const origin = req.headers.origin;
    if (origin === undefined) return false;
    const allowed = options.origins.has(origin);
    if (allowed) {
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("access-control-expose-headers", exposeHeaders);
    }
    if (!isPreflight(req) || !options.hostAllowed(req)) return false;
    if (!allowed) {
      writeRejection(
        res,
        new Rejection("origin_not_allowed", "this origin may not call the server; see OPENEXEC_CORS_ORIGINS"),
      );
      return true;
    }
    res.removeHeader("access-control-expose-headers");
    res.writeHead(204, {
      "access-control-allow-methods": allowMethods,
      "access-control-allow-headers": allowHeaders,
      "access-control-max-age": String(corsMaxAgeSeconds),
      "cache-control": "no-store",
    });
    res.end();
    return true;
  };
}

/** A CORS preflight: OPTIONS naming the method the page wants to send. */
function isPreflight(req: NodeRequest): boolean {
  return req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined;
}
