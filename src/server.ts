import { EventEmitter, setMaxListeners } from "node:events";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { KeyInfoSchema } from "../gen/openexec/v1/info_pb.js";
import { createBuiltinRegistry } from "./actions/builtin.js";
import type { ActionRegistry } from "./actions/registry.js";
import { actionCatalogue } from "./api/action-catalogue.js";
import { rejectionInterceptor } from "./api/connect-errors.js";
import { registerServices, serviceImplementations } from "./api/routes.js";
import type { ServiceFacts } from "./api/service-facts.js";
import { createUnaryCaller } from "./api/unary-caller.js";
import { clawshieldApprovalGate, demoApprovalGate } from "./approval/approval-gate.js";
import type { ServerConfig } from "./config/server-config.js";
import { Rejection } from "./errors/reason.js";
import { Executor } from "./execution/executor.js";
import { controlFilePath } from "./freeze/control-file.js";
import { FreezeWatch } from "./freeze/freeze-watch.js";
import type { ServedIdentity } from "./ledger/ledger-identity.js";
import { PostgresLedgerStore } from "./ledger/postgres-store.js";
import { SqliteLedgerStore } from "./ledger/sqlite-store.js";
import type { LedgerStore } from "./ledger/store.js";
import { WorkerLedger } from "./ledger/worker/worker-ledger.js";
import type { Logger } from "./log/logger.js";
import { withAccessLog } from "./observability/access-log.js";
import { ServerMetrics } from "./observability/metrics.js";
import { listenMetrics, serveMetrics } from "./observability/metrics-endpoint.js";
import { observingInterceptor, observingUnreached } from "./observability/rpc-observer.js";
import { loadReceiptKey, type ReceiptKey } from "./receipts/receipt-key.js";
import { TransparencyLog } from "./receipts/transparency-log.js";
import { createConnectListener } from "./transport/connect-adapter.js";
import { createCors } from "./transport/cors.js";
import { writeRejection } from "./transport/http-errors.js";
import type { RequestListener } from "./transport/http-server.js";
import { PolyglotHttpServer } from "./transport/http-server.js";
import { ProtocolRejections } from "./transport/protocol-rejection.js";
import type { NodeRequest } from "./transport/request-body.js";
import { createRestRoutes, serveRest } from "./transport/rest-routes.js";

/** A server that is listening. */
export interface RunningServer {
  readonly address: AddressInfo;
  /** e.g. http://127.0.0.1:5000 */
  readonly url: string;
  /**
   * Stops in stages (docs/CONFIGURATION.md#graceful-shutdown): not ready at
   * once but still serving for OPENEXEC_DRAIN_MS, then new executions refused
   * and connections no longer accepted, in-flight executions finished (at most
   * OPENEXEC_SHUTDOWN_TIMEOUT_MS), a last checkpoint, the ledger closed.
   * `{ now: true }` (a second signal) skips the drain period and the waiting
   * that remain; what is committed stays committed. Every call answers the
   * same stop.
   */
  shutdown(options?: { readonly now?: boolean }): Promise<void>;
  /** The ledger it serves; it holds the SQLite file exclusively, so in-process readers use this one. */
  readonly store: LedgerStore;
}

/** Wires configuration, ledger, executor and transports together, and listens. */
export async function startServer(
  config: ServerConfig,
  logger: Logger,
  actions: ActionRegistry = createBuiltinRegistry(),
): Promise<RunningServer> {
  if (!actions.sealed) throw new Error("the action registry must be sealed before the server starts");
  for (const warning of config.warnings) logger.warn(warning);
  const receiptKey = loadReceiptKey(config.receiptKeyPem, receiptKeyPath(config));
  const logOrigin = config.logOrigin ?? `openexec/${receiptKey.public.keyId}`;
  const store = await openStore(config, receiptKey, logOrigin, (message) => logger.warn(message));
  try {
    const interrupted = await store.recoverInterrupted();
    if (interrupted > 0) logger.warn({ interrupted }, "recorded executions interrupted by an earlier stop");
  } catch (error) {
    await store.close();
    throw error;
  }

  const log = new TransparencyLog(store, receiptKey.noteSigner(logOrigin), logger);
  try {
    await log.assertContinuity();
    await log.start(config.checkpointIntervalMs);
  } catch (error) {
    log.stop();
    await store.close();
    throw error;
  }
  // The operator's kill switch: read before the first request, then about once a second.
  const freezes = new FreezeWatch(
    store,
    logger,
    config.database.kind === "sqlite" ? controlFilePath(config.database.path) : undefined,
  );
  await freezes.start();
  store.startLeases((error) =>
    logger.error({ err: error instanceof Error ? error.name : typeof error }, "lease renewal failed"),
  );

  const executor = new Executor({
    store,
    actions,
    allowedActions: config.allowedActions,
    approvals: config.approval === undefined ? demoApprovalGate : clawshieldApprovalGate(config.approval),
    tenantId: config.tenantId,
    limits: config.limits,
    inProgressWaitMs: config.inProgressWaitMs,
    logger,
    freezes,
  });
  // Stopping changes readiness at once: health watchers hear it now, not at their next poll.
  const readinessChanges = new EventEmitter().setMaxListeners(0); // one listener per open Watch stream
  let stopRequested = false;
  const facts: ServiceFacts = {
    mode: config.mode,
    tenantId: config.tenantId,
    allowedActions: config.allowedActions,
    actions: actions.names(),
    catalogue: actionCatalogue(actions, {
      allowedActions: config.allowedActions,
      handlerTimeoutMs: config.limits.handlerTimeoutMs,
    }),
    approvalKeys: [...(config.approval?.keys.values() ?? [])].map((key) =>
      create(KeyInfoSchema, { keyId: key.keyId, algorithm: "ed25519", fingerprint: key.fingerprint }),
    ),
    receiptKey: {
      info: create(KeyInfoSchema, {
        keyId: receiptKey.public.keyId,
        algorithm: "ed25519",
        fingerprint: receiptKey.public.fingerprint,
      }),
      publicPem: receiptKey.publicPem,
    },
    schemaVersion: store.schemaVersion,
    readiness: async () => {
      if (stopRequested || executor.draining) return "draining";
      try {
        await store.check();
        return undefined;
      } catch {
        return "store_unavailable";
      }
    },
    readinessChanges,
    frozen: () => freezes.freezes,
  };

  const shutdownSignal = new AbortController();
  // connect-es links every call it serves to this signal (a listener per call in flight): without
  // this, more than ten calls at once make Node print a MaxListenersExceededWarning on stderr.
  setMaxListeners(0, shutdownSignal.signal);
  // One handler set: connect-es serves it as Connect, gRPC and gRPC-web, and
  // the REST paths are bindings onto it, through the same interceptors.
  const services = serviceImplementations({
    executor,
    store,
    log,
    limits: config.limits,
    facts,
    receiptKey: receiptKey.public,
  });
  const metrics = new ServerMetrics({
    logSize: () => store.logSize(),
    newestCheckpoint: () => log.newestCheckpoint(),
    commitStats: () => store.commitStats(),
  });
  // Outermost first: observing sees every call's final answer, after rejectionInterceptor has
  // turned each failure into a ConnectError with its reason code.
  const interceptors = [observingInterceptor(metrics), rejectionInterceptor];
  const routes = registerServices(services);
  // Refusals before an RPC runs are answered in the request's own protocol (docs/ERRORS.md).
  const refusals = new ProtocolRejections(routes);
  const call = createUnaryCaller(services, interceptors);
  const connect = createConnectListener({
    routes,
    unreached: observingUnreached(metrics),
    ...(config.leanUnary ? { call, leanTaken: (outcome) => metrics.leanUnary(outcome) } : {}),
    logger,
    readMaxBytes: config.limits.maxBodyBytes,
    maxJsonDepth: config.limits.maxJsonDepth,
    interceptors,
    shutdownSignal: shutdownSignal.signal,
    fallback: (req, res) =>
      refusals.refuse(req, res, new Rejection("route_not_found", "no such path; see docs/API.md")),
  });
  const restRoute = createRestRoutes({
    call,
    store,
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
  const http = new PolyglotHttpServer(
    config.connections,
    logger,
    config.accessLog ? withAccessLog(logger, listener) : listener,
  );

  let address: AddressInfo;
  let metricsServer: Awaited<ReturnType<typeof listenMetrics>> | undefined;
  try {
    address = await http.listen(config.host, config.port);
    if (config.metricsPort !== undefined) metricsServer = await listenMetrics(metrics, config.host, config.metricsPort);
  } catch (error) {
    http.stopAccepting();
    log.stop();
    await freezes.stop();
    await store.close();
    throw error;
  }
  if (metricsServer !== undefined) {
    logger.info({ address: `${metricsServer.address.address}:${metricsServer.address.port}` }, "metrics listening");
  }
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  logger.info(
    { address: `${host}:${address.port}`, mode: config.mode, tenant: config.tenantId, db: config.database.kind },
    "openexec listening",
  );

  // A second signal aborts this: the drain period and the waits that remain end at once.
  const hurry = new AbortController();
  let stopping: Promise<void> | undefined;
  const shutdown = (options: { readonly now?: boolean } = {}) => {
    if (options.now === true) hurry.abort();
    stopRequested = true;
    stopping ??= (async () => {
      // 1. Not ready, still serving: load balancers and sidecars stop routing here first.
      logger.info({ drainMs: config.drainMs }, "draining");
      readinessChanges.emit("change");
      await delay(config.drainMs, hurry.signal);
      // 2. New executions refused, no new connections; running executions finish (bounded).
      const drained = executor.drain();
      http.stopAccepting();
      await Promise.race([drained, delay(config.shutdownTimeoutMs, hurry.signal)]);
      shutdownSignal.abort();
      await http.closeConnections(hurry.signal.aborted ? 0 : 1000);
      metricsServer?.server.close();
      // 3. A last checkpoint, so that every receipt issued is covered by a signed one.
      log.stop();
      await log.publish().catch(() => undefined);
      // 4. The ledger commits what is queued and closes: nothing acknowledged is lost.
      await freezes.stop();
      await store.close();
      logger.info("stopped");
    })();
    return stopping;
  };
  return { address, url: `http://${host}:${address.port}`, shutdown, store };
}

/**
 * Resolves after `ms`, or as soon as `signal` aborts. Unref'd: a timer that
 * lost its race (the shutdown timeout, once executions finished) must not hold
 * the process after the stop.
 */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || ms === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms).unref();
    signal.addEventListener("abort", done, { once: true });
  });
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

/** Where the generated receipt key lives: beside the ledger file. */
function receiptKeyPath(config: ServerConfig): string {
  return config.database.kind === "sqlite" ? `${config.database.path}.receipt-key.pem` : "openexec.receipt-key.pem";
}

/**
 * PostgreSQL: the ledger shared with every other replica on the database.
 * SQLite: the ledger, served from its writer thread (the default): the SQLite
 * connection, group commit, leaf indices and receipt signing live there, off
 * the event loop. OPENEXEC_LEDGER_THREAD=off keeps them on the main thread.
 */
function openStore(
  config: ServerConfig,
  receiptKey: ReceiptKey,
  logOrigin: string,
  onWarning: (message: string) => void,
): Promise<LedgerStore> {
  // What the ledger must have been created for: a server configured otherwise is refused.
  const identity: ServedIdentity = {
    mode: config.mode,
    tenantId: config.tenantId,
    approvalKeyIds: [...(config.approval?.keys.keys() ?? [])],
  };
  switch (config.database.kind) {
    case "sqlite":
      if (!config.ledgerThread) {
        const issuer = { signer: { keyId: receiptKey.public.keyId, sign: receiptKey.sign }, logOrigin };
        return Promise.resolve(
          SqliteLedgerStore.open(config.database.path, issuer, { onWarning, leaseMs: config.leaseMs, identity }),
        );
      }
      return WorkerLedger.start(
        {
          path: config.database.path,
          receiptKeyPem: receiptKey.privatePem,
          logOrigin,
          leaseMs: config.leaseMs,
          identity,
        },
        { onWarning },
      );
    case "postgres":
      // Network I/O: the event loop never waits on it, so no writer thread is needed.
      return PostgresLedgerStore.open(
        { url: config.database.url, ...config.postgres, onWarning },
        {
          signer: { keyId: receiptKey.public.keyId, sign: receiptKey.sign },
          logOrigin,
          keyId: receiptKey.public.keyId,
        },
        config.leaseMs,
        identity,
      );
  }
}
