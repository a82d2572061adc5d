// `openexec/server`: runs OpenExec inside an operator's own program, serving
// the operator's actions (docs/LIBRARY.md). Semver'd: every name exported here is in CHANGELOG.md.
import type { ConnectRouter } from "@connectrpc/connect";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import { ActionRegistry } from "../actions/registry.js";
import { loadServerConfig, type ServerConfig } from "../config/server-config.js";
import { environmentWith, type ServerSettings } from "../config/server-settings.js";
import { createLogger, type Logger } from "../log/logger.js";
import { createApp } from "../server/app.js";
import { startServer } from "../server.js";
import type { Action } from "./actions.js";

export type { ExecMode } from "../approval/approval-gate.js";
export { ConfigError } from "../config/server-config.js";
export type { ServerSettings } from "../config/server-settings.js";
export type { LogLevel } from "../log/logger.js";

/** What OpenExec serves and how: the actions, and settings that win over the environment. */
export interface OpenExecOptions extends ServerSettings {
  /**
   * Exactly the actions served (defineAction from `openexec/actions`). The
   * built-in demo actions are not added: pass `builtinActions` to serve them.
   */
  readonly actions: readonly Action[];
  /** The OPENEXEC_* and CLAWSHIELD_* variables read (docs/CONFIGURATION.md); default process.env. */
  readonly env?: NodeJS.ProcessEnv | undefined;
}

/** How a stop goes: `now` skips the drain period and the waits that remain. */
export interface CloseOptions {
  readonly now?: boolean | undefined;
}

/** OpenExec listening on its own port (REST, Connect, gRPC-web over HTTP/1.1, gRPC over h2c). */
export interface OpenExecServer {
  /** e.g. http://127.0.0.1:5000 */
  readonly url: string;
  /**
   * Stops in stages (docs/CONFIGURATION.md#graceful-shutdown): not ready at
   * once but still serving for drainMs, then new executions refused and no
   * new connections, in-flight executions finished (at most
   * shutdownTimeoutMs), a last checkpoint, the ledger closed. Every call
   * answers the same stop.
   */
  close(options?: CloseOptions): Promise<void>;
}

type NodeHandlerArguments = Parameters<NonNullable<ConnectNodeAdapterOptions["fallback"]>>;

/**
 * A request listener for `node:http` and `node:http2` servers alike, and for
 * connectNodeAdapter's `fallback`.
 */
export type OpenExecRequestListener = (req: NodeHandlerArguments[0], res: NodeHandlerArguments[1]) => void;

/** OpenExec to mount on a server the operator owns. */
export interface OpenExecHandler {
  /**
   * Every OpenExec path (REST, Connect, gRPC, gRPC-web, health, reflection,
   * /metrics): `http.createServer(handler)`, `http2.createServer(handler)`,
   * or connectNodeAdapter's `fallback`. gRPC needs HTTP/2.
   */
  readonly handler: OpenExecRequestListener;
  /**
   * Registers the openexec.v1 services (ExecutionService, InfoService,
   * TransparencyLogService) on a connect-es router, e.g. inside
   * `connectNodeAdapter({ routes })`, with OpenExec's interceptors, strict
   * decoding and body limit (these replace the router's own for these
   * services). The REST paths are `handler`'s: pass it as the adapter's `fallback`.
   */
  readonly routes: (router: ConnectRouter) => void;
  /**
   * The staged stop without the listening parts, which are the operator's:
   * not ready at once (health answers draining) for drainMs, new executions
   * refused, in-flight ones finished (at most shutdownTimeoutMs), calls still
   * open told the server stops, a last checkpoint, the ledger closed.
   */
  close(options?: CloseOptions): Promise<void>;
}

/** Starts OpenExec on its own port with `options.actions`. A bad setting throws ConfigError, listing every problem. */
export async function startOpenExec(options: OpenExecOptions): Promise<OpenExecServer> {
  const { config, logger, registry } = prepare(options);
  const server = await startServer(config, logger, registry);
  return { url: server.url, close: (close) => server.shutdown(closeOptions(close)) };
}

/**
 * OpenExec wired up (the ledger open, the actions sealed) but not listening:
 * mount `handler` or `routes` on your own server. The host and port settings
 * bind nothing here; the host still sets the Host names accepted by default
 * (allowedHosts).
 */
export async function createOpenExecHandler(options: OpenExecOptions): Promise<OpenExecHandler> {
  const { config, logger, registry } = prepare(options);
  const app = await createApp(config, logger, registry);
  try {
    await app.listenMetrics();
  } catch (error) {
    await app.abandon();
    throw error;
  }
  return {
    // Node's servers hand it their own request and response objects, which is what the listener reads.
    handler: app.listener as unknown as OpenExecRequestListener,
    routes: app.routes,
    close: (close) => app.stop(closeOptions(close)),
  };
}

/** The configuration from the environment and the options over it, one logger, the sealed actions. */
function prepare(options: OpenExecOptions): { config: ServerConfig; logger: Logger; registry: ActionRegistry } {
  const { actions, env, ...settings } = options;
  if (!Array.isArray(actions)) throw new TypeError("options.actions must be an array of actions (defineAction)");
  const registry = ActionRegistry.of(actions);
  const config = loadServerConfig(
    environmentWith(env ?? process.env, settings),
    {},
    registry.names(),
    registry.declaredTimeoutsMs(),
  );
  return { config, logger: createLogger(config.logLevel), registry };
}

function closeOptions(options: CloseOptions | undefined): { now?: boolean } {
  return options?.now === true ? { now: true } : {};
}
