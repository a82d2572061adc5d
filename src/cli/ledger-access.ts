import { createPublicKey } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { defaultDatabaseUrl } from "../config/server-config.js";
import { parseDatabaseUrl, redactUrl } from "../ledger/database-url.js";
import type { Ledger } from "../ledger/ledger.js";
import { PostgresLedgerStore } from "../ledger/postgres-store.js";
import { LedgerInUseError, SqliteLedgerStore } from "../ledger/sqlite-store.js";
import { parsePublicKeyPem, type VerificationKey } from "../signing/ed25519-keys.js";

/** A problem with what a one-shot command was given: printed, exit 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/**
 * The ledger named by --db, else OPENEXEC_DB_URL, else the default; opened
 * read-only. A running server holds a SQLite ledger exclusively: that is
 * refused at once (exit 2), not waited for. A PostgreSQL ledger is read while
 * its replicas keep serving. `path` is the SQLite file (where its receipt key
 * is kept), undefined for PostgreSQL.
 */
export async function openLedgerReadOnly(
  dbUrl: string | undefined,
): Promise<{ store: Ledger; path: string | undefined }> {
  const location = parseDatabaseUrl(dbUrl ?? process.env.OPENEXEC_DB_URL ?? defaultDatabaseUrl);
  if (location.kind === "postgres") {
    try {
      const store = await PostgresLedgerStore.openReadOnly({
        url: location.url,
        poolSize: 2,
        statementTimeoutMs: 600_000,
        connectTimeoutMs: 10_000,
      });
      return { store, path: undefined };
    } catch (error) {
      throw new UsageError(`cannot open the ledger at ${redactUrl(location.url)}: ${(error as Error).message}`);
    }
  }
  if (!existsSync(location.path)) throw new UsageError(`no ledger at ${location.path}`);
  try {
    return { store: SqliteLedgerStore.openReadOnly(location.path), path: location.path };
  } catch (error) {
    if (error instanceof LedgerInUseError) {
      throw new UsageError(
        `the ledger ${location.path} is in use by a running server, which holds it exclusively; stop the server first`,
      );
    }
    throw error;
  }
}

/**
 * The executor's receipt public key: --key (a PEM public key file), else
 * OPENEXEC_RECEIPT_KEY, else the key the server keeps beside the ledger.
 */
export function receiptPublicKey(
  keyFile: string | undefined,
  ledgerPath: string | undefined,
): { key: VerificationKey; pem: string } {
  let pem: string;
  if (keyFile !== undefined) {
    pem = readFileSync(keyFile, "utf8");
  } else {
    const source =
      process.env.OPENEXEC_RECEIPT_KEY ??
      readIfExists(process.env.OPENEXEC_RECEIPT_KEY_FILE) ??
      readIfExists(ledgerPath === undefined ? undefined : `${ledgerPath}.receipt-key.pem`);
    if (source === undefined) throw new UsageError("no receipt key: pass --key with the executor's public key");
    pem = createPublicKey(source.includes("\\n") ? source.replaceAll("\\n", "\n") : source)
      .export({ format: "pem", type: "spki" })
      .toString();
  }
  return { key: parsePublicKeyPem(pem), pem };
}

function readIfExists(path: string | undefined): string | undefined {
  return path !== undefined && existsSync(path) ? readFileSync(path, "utf8") : undefined;
}
