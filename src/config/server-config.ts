import { readFileSync } from "node:fs";
import { isValidActionName } from "../actions/action.js";
import type { ExecMode } from "../approval/approval-gate.js";
import type { ApprovalPolicy } from "../approval/verify-approval.js";
import { defaultRequestLimits, type RequestLimits } from "../execution/request-limits.js";
import { type DatabaseLocation, DatabaseUrlError, parseDatabaseUrl } from "../ledger/database-url.js";
import { type LogLevel, logLevels } from "../log/logger.js";
import { type ConnectionLimits, defaultConnectionLimits } from "../transport/http-server.js";
import { loadApprovalKeys } from "./approval-keys.js";
import { parseCorsOrigins } from "./cors-origins.js";

/** Everything `openexec serve` runs with, validated. */
export interface ServerConfig {
  readonly mode: ExecMode;
  readonly host: string;
  readonly port: number;
  readonly database: DatabaseLocation;
  /** How PostgreSQL is reached when `database` names it (OPENEXEC_PG_*). */
  readonly postgres: PostgresSettings;
  /**
   * OPENEXEC_IN_PROGRESS_WAIT_MS: how long a duplicate of an execution that is
   * still running (on another replica, or left pending) waits for its outcome
   * before it is answered 409 in_progress.
   */
  readonly inProgressWaitMs: number;
  /** Requests execute under this tenant: CLAWSHIELD_TENANT_ID, or "demo" in demo mode without it. */
  readonly tenantId: string;
  /** Undefined when OPENEXEC_ALLOWED_ACTIONS is unset or empty: every registered action may run. */
  readonly allowedActions: ReadonlySet<string> | undefined;
  readonly limits: RequestLimits;
  /** Connection timeouts and counts (OPENEXEC_HEADERS_TIMEOUT_MS … OPENEXEC_H2_MAX_STREAMS). */
  readonly connections: ConnectionLimits;
  readonly logLevel: LogLevel;
  /** How long SIGTERM waits for in-flight executions before closing anyway. */
  readonly shutdownTimeoutMs: number;
  /**
   * OPENEXEC_DRAIN_MS: after SIGTERM, how long the server keeps serving while
   * reporting not ready, so that load balancers and sidecars stop routing to it first.
   */
  readonly drainMs: number;
  /** OPENEXEC_CHECKPOINT_INTERVAL_MS: how often a checkpoint is signed while the log grows. */
  readonly checkpointIntervalMs: number;
  /** OPENEXEC_LEASE_MS: how long a reservation stays this process's without renewal. */
  readonly leaseMs: number;
  /** OPENEXEC_LOG_ENTRIES=on: serve entry bundles (every tenant's receipts) under /log/tile/entries/. */
  readonly logEntries: boolean;
  /**
   * OPENEXEC_METRICS_PORT: serve GET /metrics on this port (on the same host)
   * instead of the main port; undefined: on the main port.
   */
  readonly metricsPort: number | undefined;
  /** OPENEXEC_ACCESS_LOG (default on): one JSON line per request at info level. */
  readonly accessLog: boolean;
  /**
   * OPENEXEC_LEAN_UNARY (default on): plain unary Connect and gRPC requests
   * are answered by the lean unary path (src/transport/lean-unary.ts); off:
   * connect-es answers every RPC request. The bytes on the wire are the same.
   */
  readonly leanUnary: boolean;
  /** OPENEXEC_LEDGER_THREAD (default on): the SQLite ledger in its own writer thread; off: on the event loop. */
  readonly ledgerThread: boolean;
  /** OPENEXEC_LOG_ORIGIN: the transparency log's name; undefined: "openexec/<receipt key id>". */
  readonly logOrigin: string | undefined;
  /**
   * OPENEXEC_RECEIPT_KEY, or the file OPENEXEC_RECEIPT_KEY_FILE names: the
   * receipt signing key (PEM); undefined: kept beside the SQLite ledger.
   * Required with PostgreSQL, where every replica must sign with one key.
   */
  readonly receiptKeyPem: string | undefined;
  /**
   * Host names (without port) requests may address; "any" accepts every Host.
   * Default: loopback names when bound to loopback, otherwise any.
   */
  readonly allowedHosts: ReadonlySet<string> | "any";
  /**
   * OPENEXEC_CORS_ORIGINS: the exact origins (scheme://host[:port]) whose
   * browser pages may call the server (src/transport/cors.ts); empty: no CORS.
   */
  readonly corsOrigins: ReadonlySet<string>;
  /** Things the operator should know that do not stop the server. */
  readonly warnings: readonly string[];
  /** Clawshield mode: what approvals are verified against; undefined in demo mode. */
  readonly approval: ApprovalPolicy | undefined;
}

/** OPENEXEC_PG_*: the PostgreSQL connection pool. */
export interface PostgresSettings {
  readonly poolSize: number;
  readonly statementTimeoutMs: number;
  readonly connectTimeoutMs: number;
}

/** Command-line flags, which win over the environment. */
export interface ServeFlags {
  readonly host?: string | undefined;
  readonly port?: string | undefined;
}

/** The configuration cannot be used; every problem found is listed. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

export const defaultDatabaseUrl = "sqlite:///openexec.db";
const tenantPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Reads and checks the configuration. Problems are collected, not thrown one
 * at a time, so an operator fixes them in one pass.
 */
export function loadServerConfig(
  env: NodeJS.ProcessEnv,
  flags: ServeFlags,
  registeredActions: readonly string[],
  /** The time limits the registered actions declare (src/actions/registry.ts); the in-progress wait covers the longest. */
  actionTimeoutsMs: readonly number[] = [],
): ServerConfig {
  const problems: string[] = [];
  const read = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === "" ? undefined : value;
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = read(name);
    if (raw === undefined) return fallback;
    const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${name} must be an integer from ${min} to ${max}; got "${raw}"`);
      return fallback;
    }
    return value;
  };

  const modeRaw = read("OPENEXEC_MODE") ?? "demo";
  let mode: ExecMode = "demo";
  if (modeRaw === "demo" || modeRaw === "clawshield") mode = modeRaw;
  else problems.push(`OPENEXEC_MODE must be "demo" or "clawshield"; got "${modeRaw}"`);

  const host = flags.host ?? read("OPENEXEC_HOST") ?? "127.0.0.1";
  if (host.trim() === "") problems.push("the host must not be empty");
  let port = 5000;
  const portRaw = flags.port ?? read("OPENEXEC_PORT");
  if (portRaw !== undefined) {
    const value = /^\d+$/.test(portRaw) ? Number(portRaw) : Number.NaN;
    if (!Number.isInteger(value) || value > 65535) problems.push(`the port must be 0-65535; got "${portRaw}"`);
    else port = value;
  }

  let database: DatabaseLocation = { kind: "sqlite", path: "" };
  try {
    database = parseDatabaseUrl(read("OPENEXEC_DB_URL") ?? defaultDatabaseUrl);
  } catch (error) {
    if (!(error instanceof DatabaseUrlError)) throw error;
    problems.push(error.message);
  }
  const postgres: PostgresSettings = {
    poolSize: integer("OPENEXEC_PG_POOL_SIZE", 10, 1, 1000),
    statementTimeoutMs: integer("OPENEXEC_PG_STATEMENT_TIMEOUT_MS", 5000, 100, 600_000),
    connectTimeoutMs: integer("OPENEXEC_PG_CONNECT_TIMEOUT_MS", 5000, 100, 600_000),
  };

  const tenantRaw = read("CLAWSHIELD_TENANT_ID");
  if (tenantRaw !== undefined && !tenantPattern.test(tenantRaw)) {
    problems.push("CLAWSHIELD_TENANT_ID must be 1-128 characters of A-Z a-z 0-9 . _ : -");
  }
  const tenantId = tenantRaw ?? "demo";

  let approval: ApprovalPolicy | undefined;
  if (mode === "clawshield") {
    const problemsBefore = problems.length;
    const keys = loadApprovalKeys(read, problems);
    if (keys.size === 0 && problems.length === problemsBefore) {
      problems.push(
        "clawshield mode needs a governance public key: set CLAWSHIELD_PUBLIC_KEY (PEM) or OPENEXEC_APPROVAL_KEYS(_FILE)",
      );
    }
    if (tenantRaw === undefined) problems.push("clawshield mode needs CLAWSHIELD_TENANT_ID");
    const executorId = read("OPENEXEC_EXECUTOR_ID");
    if (executorId !== undefined && !tenantPattern.test(executorId)) {
      problems.push("OPENEXEC_EXECUTOR_ID must be 1-128 characters of A-Z a-z 0-9 . _ : -");
    }
    approval = {
      keys,
      tenantId,
      executorId,
      clockSkewMs: integer("OPENEXEC_APPROVAL_CLOCK_SKEW_S", 30, 0, 3600) * 1000,
      maxLifetimeMs: integer("OPENEXEC_APPROVAL_MAX_LIFETIME_S", 3600, 1, 7 * 24 * 3600) * 1000,
    };
  }

  let allowedActions: Set<string> | undefined;
  const allowedRaw = read("OPENEXEC_ALLOWED_ACTIONS");
  if (allowedRaw !== undefined) {
    allowedActions = new Set(
      allowedRaw
        .split(",")
        .map((name) => name.trim())
        .filter((name) => name !== ""),
    );
    for (const name of allowedActions) {
      if (!isValidActionName(name) || !registeredActions.includes(name)) {
        problems.push(
          `OPENEXEC_ALLOWED_ACTIONS names "${name}", which is not a registered action (registered: ${registeredActions.join(", ")})`,
        );
      }
    }
    if (allowedActions.size === 0) allowedActions = undefined;
  }

  const limits: RequestLimits = {
    maxBodyBytes: integer("OPENEXEC_MAX_BODY_BYTES", defaultRequestLimits.maxBodyBytes, 1024, 64 * 1024 * 1024),
    maxJsonDepth: integer("OPENEXEC_MAX_JSON_DEPTH", defaultRequestLimits.maxJsonDepth, 1, 256),
    maxNonceLength: integer("OPENEXEC_MAX_NONCE_LENGTH", defaultRequestLimits.maxNonceLength, 1, 1024),
    handlerTimeoutMs: integer("OPENEXEC_HANDLER_TIMEOUT_MS", defaultRequestLimits.handlerTimeoutMs, 1, 600_000),
  };

  const connections: ConnectionLimits = {
    headersTimeoutMs: integer("OPENEXEC_HEADERS_TIMEOUT_MS", defaultConnectionLimits.headersTimeoutMs, 100, 600_000),
    requestTimeoutMs: integer("OPENEXEC_REQUEST_TIMEOUT_MS", defaultConnectionLimits.requestTimeoutMs, 100, 3_600_000),
    keepAliveTimeoutMs: integer(
      "OPENEXEC_KEEP_ALIVE_TIMEOUT_MS",
      defaultConnectionLimits.keepAliveTimeoutMs,
      100,
      600_000,
    ),
    h2IdleTimeoutMs: integer("OPENEXEC_H2_IDLE_TIMEOUT_MS", defaultConnectionLimits.h2IdleTimeoutMs, 100, 3_600_000),
    maxConnections: integer("OPENEXEC_MAX_CONNECTIONS", defaultConnectionLimits.maxConnections, 1, 1_000_000),
    maxStreamsPerSession: integer("OPENEXEC_H2_MAX_STREAMS", defaultConnectionLimits.maxStreamsPerSession, 1, 10_000),
  };
  if (connections.headersTimeoutMs > connections.requestTimeoutMs) {
    problems.push("OPENEXEC_HEADERS_TIMEOUT_MS must not exceed OPENEXEC_REQUEST_TIMEOUT_MS");
  }

  const levelRaw = read("OPENEXEC_LOG_LEVEL") ?? "info";
  let logLevel: LogLevel = "info";
  if ((logLevels as readonly string[]).includes(levelRaw)) logLevel = levelRaw as LogLevel;
  else problems.push(`OPENEXEC_LOG_LEVEL must be one of ${logLevels.join(", ")}; got "${levelRaw}"`);

  const shutdownTimeoutMs = integer("OPENEXEC_SHUTDOWN_TIMEOUT_MS", 10_000, 0, 600_000);
  const drainMs = integer("OPENEXEC_DRAIN_MS", 5000, 0, 600_000);
  const checkpointIntervalMs = integer("OPENEXEC_CHECKPOINT_INTERVAL_MS", 1000, 50, 60_000);
  const leaseMs = integer("OPENEXEC_LEASE_MS", 30_000, 1000, 3_600_000);
  const ledgerThreadRaw = read("OPENEXEC_LEDGER_THREAD") ?? "on";
  if (ledgerThreadRaw !== "on" && ledgerThreadRaw !== "off") {
    problems.push(`OPENEXEC_LEDGER_THREAD must be "on" or "off"; got "${ledgerThreadRaw}"`);
  }
  const metricsPortRaw = read("OPENEXEC_METRICS_PORT");
  const metricsPort = metricsPortRaw === undefined ? undefined : integer("OPENEXEC_METRICS_PORT", 0, 0, 65535);
  if (metricsPort !== undefined && metricsPort !== 0 && metricsPort === port) {
    problems.push("OPENEXEC_METRICS_PORT must differ from the server's port (leave it unset to serve /metrics there)");
  }
  const accessLogRaw = read("OPENEXEC_ACCESS_LOG") ?? "on";
  if (accessLogRaw !== "on" && accessLogRaw !== "off") {
    problems.push(`OPENEXEC_ACCESS_LOG must be "on" or "off"; got "${accessLogRaw}"`);
  }
  const leanUnaryRaw = read("OPENEXEC_LEAN_UNARY") ?? "on";
  if (leanUnaryRaw !== "on" && leanUnaryRaw !== "off") {
    problems.push(`OPENEXEC_LEAN_UNARY must be "on" or "off"; got "${leanUnaryRaw}"`);
  }
  const logEntriesRaw = read("OPENEXEC_LOG_ENTRIES") ?? "off";
  if (logEntriesRaw !== "on" && logEntriesRaw !== "off") {
    problems.push(`OPENEXEC_LOG_ENTRIES must be "on" or "off"; got "${logEntriesRaw}"`);
  }

  const warnings: string[] = [];
  if (
    mode === "demo" &&
    ["CLAWSHIELD_PUBLIC_KEY", "OPENEXEC_APPROVAL_KEYS", "OPENEXEC_APPROVAL_KEYS_FILE"].some(
      (n) => read(n) !== undefined,
    )
  ) {
    warnings.push(
      "approval keys are configured but OPENEXEC_MODE is not clawshield: approvals are NOT verified (set OPENEXEC_MODE=clawshield)",
    );
  }
  const hostsRaw = read("OPENEXEC_ALLOWED_HOSTS");
  const allowedHosts: ReadonlySet<string> | "any" =
    hostsRaw === "*"
      ? "any"
      : hostsRaw !== undefined
        ? new Set(
            hostsRaw
              .split(",")
              .map((h) => h.trim().toLowerCase())
              .filter((h) => h !== ""),
          )
        : isLoopback(host)
          ? loopbackHostNames
          : "any";
  const corsOrigins = parseCorsOrigins(read("OPENEXEC_CORS_ORIGINS"), problems);
  const receiptKeyPem = readReceiptKey(read, problems);
  if (database.kind === "postgres" && receiptKeyPem === undefined && problems.length === 0) {
    problems.push(
      "with PostgreSQL every replica must sign with one receipt key: set OPENEXEC_RECEIPT_KEY (PEM) or OPENEXEC_RECEIPT_KEY_FILE (docs/DEPLOYMENT.md)",
    );
  }
  const inProgressWaitMs = integer(
    "OPENEXEC_IN_PROGRESS_WAIT_MS",
    Math.max(limits.handlerTimeoutMs, ...actionTimeoutsMs) + 1000,
    0,
    3_600_000,
  );
  const logOrigin = read("OPENEXEC_LOG_ORIGIN");
  if (logOrigin !== undefined && !/^[A-Za-z0-9._:/-]{1,128}$/.test(logOrigin)) {
    problems.push("OPENEXEC_LOG_ORIGIN must be 1-128 characters of A-Z a-z 0-9 . _ : / -");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    checkpointIntervalMs,
    leaseMs,
    logEntries: logEntriesRaw === "on",
    metricsPort,
    accessLog: accessLogRaw !== "off",
    leanUnary: leanUnaryRaw !== "off",
    ledgerThread: ledgerThreadRaw === "on",
    mode,
    host,
    port,
    database,
    postgres,
    inProgressWaitMs,
    tenantId,
    allowedActions,
    limits,
    connections,
    logLevel,
    shutdownTimeoutMs,
    drainMs,
    receiptKeyPem,
    logOrigin,
    allowedHosts,
    corsOrigins,
    warnings,
    approval,
  };
}

/** OPENEXEC_RECEIPT_KEY, or the contents of OPENEXEC_RECEIPT_KEY_FILE; both set is a problem. */
function readReceiptKey(read: (name: string) => string | undefined, problems: string[]): string | undefined {
  const inline = read("OPENEXEC_RECEIPT_KEY");
  const file = read("OPENEXEC_RECEIPT_KEY_FILE");
  if (file === undefined) return inline;
  if (inline !== undefined) {
    problems.push("set OPENEXEC_RECEIPT_KEY or OPENEXEC_RECEIPT_KEY_FILE, not both");
    return inline;
  }
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    problems.push(
      `OPENEXEC_RECEIPT_KEY_FILE: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? "error"}`,
    );
    return undefined;
  }
}

/** What a browser on this machine may call a loopback server. */
const loopbackHostNames: ReadonlySet<string> = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
