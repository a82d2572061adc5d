import type { ServerConfig } from "../config/server-config.js";
import { TransparencyLog } from "../evidence/transparency-log.js";
import { controlFilePath } from "../freeze/control-file.js";
import { FreezeWatch } from "../freeze/freeze-watch.js";
import type { ServedIdentity } from "../ledger/ledger-identity.js";
import { PostgresLedgerStore } from "../ledger/postgres-store.js";
import { SqliteLedgerStore } from "../ledger/sqlite-store.js";
import type { LedgerStore } from "../ledger/store.js";
import { WorkerLedger } from "../ledger/worker/worker-ledger.js";
import type { Logger } from "../log/logger.js";
import { loadReceiptKey, type ReceiptKey } from "../receipts/receipt-key.js";

/** The ledger a server runs on, opened and checked: the store, its transparency log, the freezes. */
export interface OpenLedger {
  readonly receiptKey: ReceiptKey;
  readonly store: LedgerStore;
  readonly log: TransparencyLog;
  readonly freezes: FreezeWatch;
}

/**
 * Opens the ledger: the receipt key, the store (interrupted executions
 * recovered), the transparency log (continuity checked, checkpoints signed on
 * a timer), the freeze watch, and the leases. Whatever was opened is closed
 * again when a later step fails.
 */
export async function openLedger(config: ServerConfig, logger: Logger): Promise<OpenLedger> {
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
  return { receiptKey, store, log, freezes };
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
