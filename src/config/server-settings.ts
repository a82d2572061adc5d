import type { ExecMode } from "../approval/approval-gate.js";
import type { LogLevel } from "../log/logger.js";

/**
 * The server's settings as a program passes them: each is the environment
 * variable it names (docs/CONFIGURATION.md), typed, and wins over that
 * variable. Undefined: the variable (or its default) applies. Every value is
 * checked by loadServerConfig, exactly as the variable would be.
 */
export interface ServerSettings {
  /** OPENEXEC_MODE */
  readonly mode?: ExecMode | undefined;
  /** OPENEXEC_HOST: the address startOpenExec binds; it also sets the Host names accepted by default. */
  readonly host?: string | undefined;
  /** OPENEXEC_PORT (0 picks a free one) */
  readonly port?: number | undefined;
  /** OPENEXEC_DB_URL: sqlite:///relative.db, sqlite:////abs/path.db or postgres://… */
  readonly dbUrl?: string | undefined;
  /** CLAWSHIELD_PUBLIC_KEY: PEM Ed25519 public key of the governance service */
  readonly clawshieldPublicKey?: string | undefined;
  /** CLAWSHIELD_TENANT_ID */
  readonly tenantId?: string | undefined;
  /** OPENEXEC_APPROVAL_KEYS: key id → PEM */
  readonly approvalKeys?: Readonly<Record<string, string>> | undefined;
  /** OPENEXEC_APPROVAL_KEYS_FILE */
  readonly approvalKeysFile?: string | undefined;
  /** OPENEXEC_EXECUTOR_ID */
  readonly executorId?: string | undefined;
  /** OPENEXEC_APPROVAL_CLOCK_SKEW_S */
  readonly approvalClockSkewS?: number | undefined;
  /** OPENEXEC_APPROVAL_MAX_LIFETIME_S */
  readonly approvalMaxLifetimeS?: number | undefined;
  /** OPENEXEC_ALLOWED_ACTIONS: empty means every action served */
  readonly allowedActions?: readonly string[] | undefined;
  /** OPENEXEC_MAX_BODY_BYTES */
  readonly maxBodyBytes?: number | undefined;
  /** OPENEXEC_MAX_JSON_DEPTH */
  readonly maxJsonDepth?: number | undefined;
  /** OPENEXEC_MAX_NONCE_LENGTH */
  readonly maxNonceLength?: number | undefined;
  /** OPENEXEC_HANDLER_TIMEOUT_MS: for actions that declare no timeoutMs */
  readonly handlerTimeoutMs?: number | undefined;
  /** OPENEXEC_IN_PROGRESS_WAIT_MS */
  readonly inProgressWaitMs?: number | undefined;
  /** OPENEXEC_DRAIN_MS */
  readonly drainMs?: number | undefined;
  /** OPENEXEC_SHUTDOWN_TIMEOUT_MS */
  readonly shutdownTimeoutMs?: number | undefined;
  /** OPENEXEC_HEADERS_TIMEOUT_MS (startOpenExec's own server only) */
  readonly headersTimeoutMs?: number | undefined;
  /** OPENEXEC_REQUEST_TIMEOUT_MS (startOpenExec's own server only) */
  readonly requestTimeoutMs?: number | undefined;
  /** OPENEXEC_KEEP_ALIVE_TIMEOUT_MS (startOpenExec's own server only) */
  readonly keepAliveTimeoutMs?: number | undefined;
  /** OPENEXEC_H2_IDLE_TIMEOUT_MS (startOpenExec's own server only) */
  readonly h2IdleTimeoutMs?: number | undefined;
  /** OPENEXEC_MAX_CONNECTIONS (startOpenExec's own server only) */
  readonly maxConnections?: number | undefined;
  /** OPENEXEC_H2_MAX_STREAMS (startOpenExec's own server only) */
  readonly h2MaxStreams?: number | undefined;
  /** OPENEXEC_LOG_LEVEL */
  readonly logLevel?: LogLevel | undefined;
  /** OPENEXEC_ALLOWED_HOSTS: names, or "*" for any */
  readonly allowedHosts?: readonly string[] | "*" | undefined;
  /** OPENEXEC_RECEIPT_KEY: PEM Ed25519 private key */
  readonly receiptKey?: string | undefined;
  /** OPENEXEC_RECEIPT_KEY_FILE */
  readonly receiptKeyFile?: string | undefined;
  /** OPENEXEC_LOG_ORIGIN */
  readonly logOrigin?: string | undefined;
  /** OPENEXEC_LOG_ENTRIES */
  readonly logEntries?: boolean | undefined;
  /** OPENEXEC_CHECKPOINT_INTERVAL_MS */
  readonly checkpointIntervalMs?: number | undefined;
  /** OPENEXEC_LEASE_MS */
  readonly leaseMs?: number | undefined;
  /** OPENEXEC_LEDGER_THREAD */
  readonly ledgerThread?: boolean | undefined;
  /** OPENEXEC_PG_POOL_SIZE */
  readonly pgPoolSize?: number | undefined;
  /** OPENEXEC_PG_STATEMENT_TIMEOUT_MS */
  readonly pgStatementTimeoutMs?: number | undefined;
  /** OPENEXEC_PG_CONNECT_TIMEOUT_MS */
  readonly pgConnectTimeoutMs?: number | undefined;
  /** OPENEXEC_METRICS_PORT: /metrics on its own port instead of the main one */
  readonly metricsPort?: number | undefined;
  /** OPENEXEC_ACCESS_LOG */
  readonly accessLog?: boolean | undefined;
  /** OPENEXEC_CORS_ORIGINS */
  readonly corsOrigins?: readonly string[] | undefined;
  /** OPENEXEC_LEAN_UNARY */
  readonly leanUnary?: boolean | undefined;
}

/** Each setting's environment variable: the one place the two names meet. */
export const settingVariables: { readonly [K in keyof Required<ServerSettings>]: string } = {
  mode: "OPENEXEC_MODE",
  host: "OPENEXEC_HOST",
  port: "OPENEXEC_PORT",
  dbUrl: "OPENEXEC_DB_URL",
  clawshieldPublicKey: "CLAWSHIELD_PUBLIC_KEY",
  tenantId: "CLAWSHIELD_TENANT_ID",
  approvalKeys: "OPENEXEC_APPROVAL_KEYS",
  approvalKeysFile: "OPENEXEC_APPROVAL_KEYS_FILE",
  executorId: "OPENEXEC_EXECUTOR_ID",
  approvalClockSkewS: "OPENEXEC_APPROVAL_CLOCK_SKEW_S",
  approvalMaxLifetimeS: "OPENEXEC_APPROVAL_MAX_LIFETIME_S",
  allowedActions: "OPENEXEC_ALLOWED_ACTIONS",
  maxBodyBytes: "OPENEXEC_MAX_BODY_BYTES",
  maxJsonDepth: "OPENEXEC_MAX_JSON_DEPTH",
  maxNonceLength: "OPENEXEC_MAX_NONCE_LENGTH",
  handlerTimeoutMs: "OPENEXEC_HANDLER_TIMEOUT_MS",
  inProgressWaitMs: "OPENEXEC_IN_PROGRESS_WAIT_MS",
  drainMs: "OPENEXEC_DRAIN_MS",
  shutdownTimeoutMs: "OPENEXEC_SHUTDOWN_TIMEOUT_MS",
  headersTimeoutMs: "OPENEXEC_HEADERS_TIMEOUT_MS",
  requestTimeoutMs: "OPENEXEC_REQUEST_TIMEOUT_MS",
  keepAliveTimeoutMs: "OPENEXEC_KEEP_ALIVE_TIMEOUT_MS",
  h2IdleTimeoutMs: "OPENEXEC_H2_IDLE_TIMEOUT_MS",
  maxConnections: "OPENEXEC_MAX_CONNECTIONS",
  h2MaxStreams: "OPENEXEC_H2_MAX_STREAMS",
  logLevel: "OPENEXEC_LOG_LEVEL",
  allowedHosts: "OPENEXEC_ALLOWED_HOSTS",
  receiptKey: "OPENEXEC_RECEIPT_KEY",
  receiptKeyFile: "OPENEXEC_RECEIPT_KEY_FILE",
  logOrigin: "OPENEXEC_LOG_ORIGIN",
  logEntries: "OPENEXEC_LOG_ENTRIES",
  checkpointIntervalMs: "OPENEXEC_CHECKPOINT_INTERVAL_MS",
  leaseMs: "OPENEXEC_LEASE_MS",
  ledgerThread: "OPENEXEC_LEDGER_THREAD",
  pgPoolSize: "OPENEXEC_PG_POOL_SIZE",
  pgStatementTimeoutMs: "OPENEXEC_PG_STATEMENT_TIMEOUT_MS",
  pgConnectTimeoutMs: "OPENEXEC_PG_CONNECT_TIMEOUT_MS",
  metricsPort: "OPENEXEC_METRICS_PORT",
  accessLog: "OPENEXEC_ACCESS_LOG",
  corsOrigins: "OPENEXEC_CORS_ORIGINS",
  leanUnary: "OPENEXEC_LEAN_UNARY",
};

/**
 * The environment with `settings` laid over it, as the variables' text:
 * booleans as on/off, lists comma-separated, the approval key ring as JSON.
 * Only the known settings are read; anything else in `settings` is ignored.
 */
export function environmentWith(env: NodeJS.ProcessEnv, settings: ServerSettings): NodeJS.ProcessEnv {
  const merged: NodeJS.ProcessEnv = { ...env };
  for (const [key, variable] of Object.entries(settingVariables) as [keyof ServerSettings, string][]) {
    const value = settings[key];
    if (value === undefined) continue;
    merged[variable] = settingText(value);
  }
  return merged;
}

function settingText(value: NonNullable<ServerSettings[keyof ServerSettings]>): string {
  if (typeof value === "boolean") return value ? "on" : "off";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.join(",");
  return JSON.stringify(value);
}
