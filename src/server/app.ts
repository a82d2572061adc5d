import { EventEmitter, setMaxListeners } from "node:events";
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { ExecutionService } from "../../gen/openexec/v1/execution_pb.js";
import { InfoService, KeyInfoSchema } from "../../gen/openexec/v1/info_pb.js";
import { TransparencyLogService } from "../../gen/openexec/v1/transparency_log_pb.js";
import type { ActionRegistry } from "../actions/registry.js";
import { actionCatalogue } from "../api/action-catalogue.js";
import { rejectionInterceptor } from "../api/connect-errors.js";
import { registerServices, serviceImplementations } from "../api/routes.js";
import type { ServiceFacts } from "../api/service-facts.js";
import { createUnaryCaller } from "../api/unary-caller.js";
import { clawshieldApprovalGate, demoApprovalGate } from "../approval/approval-gate.js";
import type { ServerConfig } from "../config/server-config.js";
import { Executor } from "../execution/executor.js";
import type { RequestListener } from "../http/node-http.js";
import type { LedgerStore } from "../ledger/store.js";
import type { Logger } from "../log/logger.js";
import { ServerMetrics } from "../observability/metrics.js";
import { observingInterceptor } from "../observability/rpc-observer.js";
import { strictRouter } from "../transport/connect-adapter.js";
import { listenMetrics } from "../transport/metrics-endpoint.js";
import { openLedger } from "./open-ledger.js";
import { createRequestListener } from "./request-listener.js";

/**
 * OpenExec wired up but not listening: the ledger, the executor and the
 * services behind a request listener. startServer (src/server.ts) listens
 * with it; an operator's program mounts it on its own server (src/public/server.ts).
 */
export interface OpenExecApp {
  /** Every OpenExec path: REST, Connect, gRPC, gRPC-web, health, /metrics (unless on its own port). */
  readonly listener: RequestListener;
  /**
   * The openexec.v1 RPC services, with OpenExec's interceptors and strict
   * decoding, for a connect-es router someone else owns (Connect, gRPC,
   * gRPC-web only: REST, health and reflection are `listener`'s).
   */
  readonly routes: (router: ConnectRouter) => void;
  /** The ledger it serves; it holds the SQLite file exclusively, so in-process readers use this one. */
  readonly store: LedgerStore;
  /** Serves /metrics on OPENEXEC_METRICS_PORT when set (closed by `stop`); the address it listens on. */
  listenMetrics(): Promise<string | undefined>;
  /**
   * The staged stop (docs/CONFIGURATION.md#graceful-shutdown): not ready at
   * once, the drain period, new executions refused and `transport` told to stop
   * accepting, in-flight executions finished (bounded), calls still open told
   * the server stops and `transport` closing its connections, a last
   * checkpoint, the ledger closed. `{ now: true }` skips the waits that
   * remain. Every call answers the stop the first one started.
   */
  stop(options?: { readonly now?: boolean }, transport?: StopTransport): Promise<void>;
  /** Closes what was opened, without serving or draining: for a start that failed after wiring. */
  abandon(): Promise<void>;
}

/** What `stop` asks of the server that listens, when there is one. */
export interface StopTransport {
  /** No new connections. */
  stopAccepting(): void;
  /** Closes the open connections, giving requests `graceMs` to finish. */
  closeConnections(graceMs: number): Promise<void>;
}

/** The services an operator's router gets: OpenExec's own API, not the generic gRPC health and reflection. */
const operatorRoutedServices: readonly string[] = [
  ExecutionService.typeName,
  InfoService.typeName,
  TransparencyLogService.typeName,
];

/** Opens the ledger and wires configuration, ledger, executor and services together. */
export async function createApp(config: ServerConfig, logger: Logger, actions: ActionRegistry): Promise<OpenExecApp> {
  if (!actions.sealed) throw new Error("the action registry must be sealed before the server starts");
  for (const warning of config.warnings) logger.warn(warning);
  const { receiptKey, store, log, freezes } = await openLedger(config, logger);

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
  const listener = createRequestListener({
    config,
    logger,
    routes,
    call: createUnaryCaller(services, interceptors),
    interceptors,
    store,
    metrics,
    shutdownSignal: shutdownSignal.signal,
  });
  // On a router someone else owns, the interceptors and limits come with each service: connect-es
  // lets a service's own options replace the router's.
  const operatorRoutes = (router: ConnectRouter) => {
    const strict = strictRouter(router, config.limits.maxJsonDepth);
    for (const { service, impl } of services) {
      if (!operatorRoutedServices.includes(service.typeName)) continue;
      strict.service(service, impl as never, {
        interceptors,
        readMaxBytes: config.limits.maxBodyBytes,
        shutdownSignal: shutdownSignal.signal,
      });
    }
  };

  let metricsServer: Awaited<ReturnType<typeof listenMetrics>> | undefined;
  const closeLedger = async () => {
    await freezes.stop();
    await store.close();
  };
  // A second signal aborts this: the drain period and the waits that remain end at once.
  const hurry = new AbortController();
  let stopping: Promise<void> | undefined;
  const stop = (options: { readonly now?: boolean } = {}, transport?: StopTransport) => {
    if (options.now === true) hurry.abort();
    stopRequested = true;
    stopping ??= (async () => {
      // 1. Not ready, still serving: load balancers and sidecars stop routing here first.
      logger.info({ drainMs: config.drainMs }, "draining");
      readinessChanges.emit("change");
      await delay(config.drainMs, hurry.signal);
      // 2. New executions refused, no new connections; running executions finish (bounded).
      const drained = executor.drain();
      transport?.stopAccepting();
      await Promise.race([drained, delay(config.shutdownTimeoutMs, hurry.signal)]);
      shutdownSignal.abort();
      await transport?.closeConnections(hurry.signal.aborted ? 0 : 1000);
      metricsServer?.server.close();
      // 3. A last checkpoint, so that every receipt issued is covered by a signed one.
      log.stop();
      await log.publish().catch(() => undefined);
      // 4. The ledger commits what is queued and closes: nothing acknowledged is lost.
      await closeLedger();
      logger.info("stopped");
    })();
    return stopping;
  };

  return {
    listener,
    routes: operatorRoutes,
    store,
    async listenMetrics() {
      if (config.metricsPort === undefined || metricsServer !== undefined) return undefined;
      metricsServer = await listenMetrics(metrics, config.host, config.metricsPort);
      const address = `${metricsServer.address.address}:${metricsServer.address.port}`;
      logger.info({ address }, "metrics listening");
      return address;
    },
    stop,
    async abandon() {
      metricsServer?.server.close();
      log.stop();
      await closeLedger();
    },
  };
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
