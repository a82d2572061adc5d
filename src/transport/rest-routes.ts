import { create, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { ConnectError, createContextValues } from "@connectrpc/connect";
import { decodingRefusalKey } from "../api/connect-errors.js";
import type { UnaryCaller } from "../api/unary-caller.js";
import { isRejection, Rejection } from "../errors/reason.js";
import type { RequestLimits } from "../execution/request-limits.js";
import type { NodeRequest, NodeResponse } from "../http/node-http.js";
import { decodeUtf8, JsonSyntaxError, parseStrictJson } from "../json/strict-json.js";
import { isStoreFailure, type LedgerStore } from "../ledger/store.js";
import type { Logger } from "../log/logger.js";
import { accessRecordKey, accessRecordOf } from "../observability/access-log.js";
import { restCallKey } from "../observability/rpc-observer.js";
import { writeConnectError, writeJson, writeRejection, writeText } from "./http-errors.js";
import { clientWentAway } from "./http-server.js";
import { serveLogTile } from "./log-tiles.js";
import { isJsonContentType, readBody, webHeadersOf } from "./request-body.js";
import { type RestBinding, restBindings } from "./rest-bindings.js";

export interface RestDependencies {
  /** The RPC methods, through the same interceptors as every RPC. */
  readonly call: UnaryCaller;
  readonly store: LedgerStore;
  readonly limits: RequestLimits;
  readonly logger: Logger;
  /** OPENEXEC_LOG_ENTRIES: serve entry bundles (every receipt) under /log/tile/entries/. */
  readonly logEntries: boolean;
}

type RestHandler = (req: NodeRequest, res: NodeResponse) => Promise<void>;

/**
 * The original OpenExec's plain-HTTP paths. Each is a binding onto an RPC
 * (rest-bindings.ts), called through the same chain as Connect, gRPC and
 * gRPC-web; only the tiles (static files of the log, no RPC) are served here.
 * Returns undefined for paths that are not REST paths (they go to Connect).
 */
export function createRestRoutes(deps: RestDependencies): (path: string) => Map<string, RestHandler> | undefined {
  const routes = new Map<string, Map<string, RestHandler>>();
  for (const binding of restBindings) {
    const methods = routes.get(binding.path) ?? new Map<string, RestHandler>();
    methods.set(binding.httpMethod, (req, res) => serveBinding(binding, req, res, deps));
    routes.set(binding.path, methods);
  }
  const tiles = new Map<string, RestHandler>([
    [
      "GET",
      async (req, res) =>
        serveLogTile((req.url ?? "").split("?")[0] ?? "", res, { store: deps.store, entries: deps.logEntries }),
    ],
  ]);
  return (path) => routes.get(path) ?? (path.startsWith("/log/tile/") ? tiles : undefined);
}

/**
 * Builds the binding's request message, calls its method through the chain,
 * renders the answer. A request REST refuses before the method (media type,
 * size, JSON, fields) is handed to the chain as a decoding refusal, as
 * connect-adapter.ts does for RPC messages, so that it is answered, counted
 * and logged like every other refusal.
 */
async function serveBinding(binding: RestBinding, req: NodeRequest, res: NodeResponse, deps: RestDependencies) {
  const contextValues = createContextValues();
  contextValues.set(restCallKey, true);
  contextValues.set(accessRecordKey, accessRecordOf(req));
  let message = create(binding.method.input);
  try {
    const query = new URL(req.url ?? "/", "http://localhost").searchParams;
    message = create(
      binding.method.input,
      await binding.request({ query, body: () => readJsonObject(req, deps.limits) }),
    );
  } catch (error) {
    if (!isRejection(error)) throw error;
    contextValues.set(decodingRefusalKey, error);
  }
  const header = webHeadersOf(req);
  let answer: ReturnType<RestBinding["render"]>;
  try {
    const response = await deps.call(binding.method, message, {
      requestMethod: req.method ?? "GET",
      url: req.url ?? "/",
      header,
      contextValues,
      protocolName: "rest",
    });
    answer = binding.render(response.message);
  } catch (error) {
    if (error instanceof ConnectError) {
      writeConnectError(res, error);
      return;
    }
    throw error;
  }
  if (answer.kind === "text") writeText(res, answer.status, answer.text);
  else writeJson(res, answer.status, answer.body);
}

/** Runs a REST handler; what escapes the chain (a bug, a client gone) is answered or logged here. */
export async function serveRest(
  handler: RestHandler,
  req: NodeRequest,
  res: NodeResponse,
  logger: Logger,
): Promise<void> {
  try {
    await handler(req, res);
  } catch (error) {
    if (isRejection(error)) {
      writeRejection(res, error);
      return;
    }
    if (isStoreFailure(error)) {
      writeRejection(res, new Rejection("store_unavailable", "the ledger is unavailable; retry later"));
      return;
    }
    if (clientWentAway(req, res)) {
      // The client closed the connection or reset the stream (e.g. mid-upload):
      // not a server fault, and there is nobody left to answer.
      logger.debug({ path: (req.url ?? "").split("?")[0] }, "client closed the request");
      return;
    }
    logger.error(
      { err: error instanceof Error ? error.name : typeof error, path: (req.url ?? "").split("?")[0] },
      "unexpected error",
    );
    writeJson(res, 500, { code: "internal", reason: "internal", message: "internal error" });
  }
}

async function readJsonObject(req: NodeRequest, limits: RequestLimits): Promise<JsonObject> {
  if (!isJsonContentType(req.headers["content-type"])) {
    // Requiring JSON also makes browsers preflight cross-site requests, so a
    // web page cannot post forms to an executor on localhost.
    throw new Rejection("unsupported_media_type", "Content-Type must be application/json");
  }
  const bytes = await readBody(req, limits.maxBodyBytes);
  let value: JsonValue;
  try {
    // The request object wraps a payload (limit maxJsonDepth) or a result (one
    // deeper); the executor and the verifier hold each to its own limit.
    value = parseStrictJson(decodeUtf8(bytes), { maxDepth: limits.maxJsonDepth + 2, refuseReservedKeys: true });
  } catch (error) {
    if (error instanceof JsonSyntaxError) throw new Rejection(error.reason, `invalid JSON body: ${error.message}`);
    throw error;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Rejection("body_malformed", "the request body must be a JSON object");
  }
  return value;
}
