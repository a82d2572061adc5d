import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import type { UnaryCaller } from "../api/unary-caller.js";
import type { ServerConfig } from "../config/server-config.js";
import { Rejection } from "../errors/reason.js";
import type { NodeRequest, RequestListener } from "../http/node-http.js";
import type { LedgerStore } from "../ledger/store.js";
import type { Logger } from "../log/logger.js";
import { withAccessLog } from "../observability/access-log.js";
import type { ServerMetrics } from "../observability/metrics.js";
import { observingUnreached } from "../observability/rpc-observer.js";
import { createConnectListener } from "../transport/connect-adapter.js";
import { createCors } from "../transport/cors.js";
import { writeRejection } from "../transport/http-errors.js";
import { serveMetrics } from "../transport/metrics-endpoint.js";
import { ProtocolRejections } from "../transport/protocol-rejection.js";
import { createRestRoutes, serveRest } from "../transport/rest-routes.js";

export interface RequestListenerDependencies {
  readonly config: ServerConfig;
  readonly logger: Logger;
  /** Every RPC service, for connect-es. */
  readonly routes: (router: ConnectRouter) => void;
  /** The unary methods through `interceptors`: the REST bindings and the lean unary path. */
  readonly call: UnaryCaller;
  readonly interceptors: readonly Interceptor[];
  readonly store: LedgerStore;
  readonly metrics: ServerMetrics;
  /** The server's stop: calls still running are told through this. */
  readonly shutdownSignal: AbortSignal;
}

/**
 * The one request listener behind every OpenExec path, in the order a
 * request meets them: CORS, the Host check, /metrics, the REST paths, then
 * Connect, gRPC and gRPC-web (connect-adapter.ts); the access log around it all.
 */
export function createRequestListener(deps: RequestListenerDependencies): RequestListener {
  const { config, logger, metrics } = deps;
  // Refusals before an RPC runs are answered in the request's own protocol (docs/ERRORS.md).
  const refusals = new ProtocolRejections(deps.routes);
  const connect = createConnectListener({
    routes: deps.routes,
    unreached: observingUnreached(metrics),
    ...(config.leanUnary ? { call: deps.call, leanTaken: (outcome) => metrics.leanUnary(outcome) } : {}),
    logger,
    readMaxBytes: config.limits.maxBodyBytes,
    maxJsonDepth: config.limits.maxJsonDepth,
    interceptors: [...deps.interceptors],
    shutdownSignal: deps.shutdownSignal,
    fallback: (req, res) =>
      refusals.refuse(req, res, new Rejection("route_not_found", "no such path; see docs/API.md")),
  });
  const restRoute = createRestRoutes({
    call: deps.call,
    store: deps.store,
    limits: config.limits,
    logger,
    logEntries: config.logEntries,
  });

  // CORS for browser clients (src/transport/cors.ts): inert unless OPENEXEC_CORS_ORIGINS is set.
  const cors = createCors({
    origins: config.corsOrigins,
    hostAllowed: (req) => hostAllowed(req, config.allowedHosts),
  });

  const listener: RequestListener = (req, res) => {
    if (cors(req, res)) return;
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const methods = restRoute(path);
    if (!hostAllowed(req, config.allowedHosts)) {
      const refused = new Rejection(
        "host_not_allowed",
        "this server does not answer to that Host; see OPENEXEC_ALLOWED_HOSTS",
      );
      if (methods === undefined) refusals.refuse(req, res, refused);
      else writeRejection(res, refused);
      return;
    }
    if (path === "/metrics" && config.metricsPort === undefined) {
      serveMetrics(req, res, metrics).catch(() => res.destroy());
      return;
    }
    if (methods === undefined) {
      if (!refusals.refuseWrongMethod(req, res, path)) connect(req, res);
      return;
    }
    const handler = methods.get(req.method ?? "");
    if (handler === undefined) {
      const allow = [...methods.keys()].join(", ");
      writeRejection(res, new Rejection("method_not_allowed", `${path} accepts ${allow}`), { allow });
      return;
    }
    void serveRest(handler, req, res, logger);
  };
  return config.accessLog ? withAccessLog(logger, listener) : listener;
}

/**
 * Refuses requests whose Host (or :authority) names another server: a web page
 * that rebinds its DNS name to 127.0.0.1 still sends its own name, so a
 * loopback executor never answers it. A request without Host (HTTP/1.0) has
 * no browser behind it and passes.
 */
function hostAllowed(req: NodeRequest, allowed: ReadonlySet<string> | "any"): boolean {
  if (allowed === "any") return true;
  const authority = req.headers.host ?? (req.headers[":authority"] as string | undefined);
  if (authority === undefined) return true;
  const name = authority.toLowerCase().replace(/:\d+$/, "");
  return allowed.has(name);
}
