import type { AddressInfo } from "node:net";
import { createBuiltinRegistry } from "./actions/builtin.js";
import type { ActionRegistry } from "./actions/registry.js";
import type { ServerConfig } from "./config/server-config.js";
import type { LedgerStore } from "./ledger/store.js";
import type { Logger } from "./log/logger.js";
import { createApp } from "./server/app.js";
import { PolyglotHttpServer } from "./transport/http-server.js";

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

/**
 * Wires configuration, ledger, executor and transports together
 * (src/server/app.ts), and listens: REST, Connect, gRPC-web (HTTP/1.1) and
 * gRPC (h2c) on one port.
 */
export async function startServer(
  config: ServerConfig,
  logger: Logger,
  actions: ActionRegistry = createBuiltinRegistry(),
): Promise<RunningServer> {
  const app = await createApp(config, logger, actions);
  const http = new PolyglotHttpServer(config.connections, logger, app.listener);

  let address: AddressInfo;
  try {
    address = await http.listen(config.host, config.port);
    await app.listenMetrics();
  } catch (error) {
    http.stopAccepting();
    await app.abandon();
    throw error;
  }
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  logger.info(
    { address: `${host}:${address.port}`, mode: config.mode, tenant: config.tenantId, db: config.database.kind },
    "openexec listening",
  );

  const transport = {
    stopAccepting: () => http.stopAccepting(),
    closeConnections: (graceMs: number) => http.closeConnections(graceMs),
  };
  return {
    address,
    url: `http://${host}:${address.port}`,
    shutdown: (options) => app.stop(options, transport),
    store: app.store,
  };
}
