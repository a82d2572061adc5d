import { parseArgs } from "node:util";
import { createBuiltinRegistry } from "../actions/builtin.js";
import type { ActionRegistry } from "../actions/registry.js";
import { ConfigError, loadServerConfig } from "../config/server-config.js";
import { createLogger } from "../log/logger.js";
import { startServer } from "../server.js";

/** `openexec serve --help`, listing the actions of `actions` (the registry the server would serve). */
export function serveHelp(actions: ActionRegistry = createBuiltinRegistry()): string {
  return `${serveUsage}\n${actionsHelp(actions)}\n${serveEnvironment}`;
}

/** One line per action, by name: `  name  summary`, names padded so that the summaries line up. */
function actionsHelp(actions: ActionRegistry): string {
  const width = Math.max(0, ...actions.names().map((name) => name.length));
  const lines = actions.list().map((action) => `  ${action.name.padEnd(width)}  ${action.summary}\n`);
  return `Actions:\n${lines.join("")}`;
}

const serveUsage = `Usage: openexec serve [--host HOST] [--port PORT]

Runs the execution server: REST, Connect, gRPC-web (HTTP/1.1) and gRPC (h2c) on one port.

Options:
  --host HOST   address to bind (default 127.0.0.1; env OPENEXEC_HOST)
  --port PORT   port to listen on (default 5000; env OPENEXEC_PORT; 0 picks a free one)
  -h, --help    show this help
`;

const serveEnvironment = `Environment (all optional; see docs/CONFIGURATION.md):
  OPENEXEC_MODE                demo (default) or clawshield
  CLAWSHIELD_PUBLIC_KEY        PEM Ed25519 public key of the governance service (clawshield mode)
  CLAWSHIELD_TENANT_ID         tenant requests execute under (required in clawshield mode; default "demo")
  OPENEXEC_APPROVAL_KEYS       key ring for rotation: JSON {"key-id": "PEM", ...}
  OPENEXEC_APPROVAL_KEYS_FILE  a file holding that JSON
  OPENEXEC_EXECUTOR_ID         this executor's id, matched against an approval's audience
  OPENEXEC_APPROVAL_CLOCK_SKEW_S     tolerated clock difference (default 30)
  OPENEXEC_APPROVAL_MAX_LIFETIME_S   longest approval validity accepted (default 3600)
  OPENEXEC_ALLOWED_ACTIONS     comma-separated allow-list; unset means every registered action
  OPENEXEC_DB_URL              sqlite:///openexec.db (default, relative) or sqlite:////abs/path
  OPENEXEC_MAX_BODY_BYTES      largest request body (default 1048576)
  OPENEXEC_MAX_JSON_DEPTH      deepest payload nesting (default 32)
  OPENEXEC_MAX_NONCE_LENGTH    longest nonce (default 128)
  OPENEXEC_HANDLER_TIMEOUT_MS  handler time limit (default 5000)
  OPENEXEC_DRAIN_MS            after SIGTERM, how long it keeps serving while not ready (default 5000)
  OPENEXEC_SHUTDOWN_TIMEOUT_MS how long SIGTERM waits for in-flight executions (default 10000)
  OPENEXEC_HEADERS_TIMEOUT_MS  time to send the protocol preface and request headers (default 10000)
  OPENEXEC_REQUEST_TIMEOUT_MS  time to send a whole request (default 30000)
  OPENEXEC_KEEP_ALIVE_TIMEOUT_MS  idle HTTP/1.1 connection lifetime (default 5000)
  OPENEXEC_H2_IDLE_TIMEOUT_MS  HTTP/2 session lifetime without requests (default 60000)
  OPENEXEC_MAX_CONNECTIONS     open connections at most, below ulimit -n (default 900)
  OPENEXEC_H2_MAX_STREAMS      concurrent streams per HTTP/2 session (default 100)
  OPENEXEC_LOG_LEVEL           fatal|error|warn|info|debug|trace|silent (default info)
  OPENEXEC_ALLOWED_HOSTS       Host names accepted, comma-separated, or * (default: loopback names
                               when bound to loopback, any otherwise)
  OPENEXEC_RECEIPT_KEY         PEM Ed25519 private key that signs receipts (default: generated
                               beside the ledger as <db>.receipt-key.pem)
  OPENEXEC_RECEIPT_KEY_FILE    a file holding that key instead (one of the two is required with PostgreSQL)
  OPENEXEC_LOG_ORIGIN          the transparency log's name (default openexec/<receipt key id>)
  OPENEXEC_PG_POOL_SIZE        PostgreSQL connections per replica (default 10)
  OPENEXEC_PG_STATEMENT_TIMEOUT_MS / OPENEXEC_PG_CONNECT_TIMEOUT_MS   (default 5000 each)
  OPENEXEC_IN_PROGRESS_WAIT_MS how long a duplicate waits for a run elsewhere (default handler timeout + 1 s)
  OPENEXEC_METRICS_PORT        serve /metrics on this port instead of the main one
  OPENEXEC_ACCESS_LOG          on (default) or off: one JSON line per request
  OPENEXEC_CORS_ORIGINS        browser origins allowed, comma-separated (default none)
  OPENEXEC_LEAN_UNARY          on (default) or off: the lean path for plain unary Connect and gRPC calls
`;

/**
 * `openexec serve`: runs until SIGTERM or SIGINT, then drains and exits 0; a
 * second signal stops at once. `actions` is the sealed registry it serves
 * (the built-in actions; tests add their own).
 */
export async function serveCommand(args: string[], actions = createBuiltinRegistry()): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { host: { type: "string" }, port: { type: "string" }, help: { type: "boolean", short: "h" } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(serveHelp(actions));
    return 0;
  }
  let config: ReturnType<typeof loadServerConfig>;
  try {
    config = loadServerConfig(
      process.env,
      { host: values.host, port: values.port },
      actions.names(),
      actions.declaredTimeoutsMs(),
    );
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`openexec: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  for (const warning of config.warnings) process.stderr.write(`openexec: warning: ${warning}\n`);
  const server = await startServer(config, logger, actions);
  // The first signal drains (docs/CONFIGURATION.md#graceful-shutdown); a second one stops at once.
  let signals = 0;
  const stopped = new Promise<void>((resolve, reject) => {
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      logger.info({ signal, now: signals > 1 }, "signal received");
      server.shutdown({ now: signals > 1 }).then(resolve, reject);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
  // Only once signals are handled: whoever waits for this line may signal at once.
  process.stderr.write(`openexec ${config.mode} mode listening on ${server.url}\n`);
  await stopped;
  logger.flush();
  // Stopping at once may leave abandoned handlers' timers behind; the ledger is closed, so nothing is lost.
  if (signals > 1) process.exit(0);
  return 0;
}
