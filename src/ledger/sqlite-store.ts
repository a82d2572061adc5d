import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { JsonValue } from "@bufbuild/protobuf";
import Database from "better-sqlite3";
import { ExecutionStatus } from "../../gen/openexec/v1/receipt_pb.js";
import type { FailureReason, RejectionReason } from "../errors/reason.js";
import { canonicalJsonDigest } from "../json/canonical-digest.js";
import { leafHash } from "../receipts/merkle-tree.js";
import { type EncodedReceipt, encodeReceipt, type ReceiptFacts, type ReceiptSigner } from "../receipts/receipt.js";
import { createOwnerOnly, LedgerFileIdentity } from "./ledger-file.js";
import { latestSqliteSchemaVersion, sqliteMigrations } from "./sqlite-migrations.js";
import {
  type Completion,
  type Denial,
  type DeniedAttempt,
  type ExecutionRecord,
  type FinishedExecution,
  type LedgerStore,
  type LogEntry,
  type RecordOutcome,
  type Reservation,
  type ReserveOutcome,
  type StoredCheckpoint,
  type StoredCounter,
  StoreUnavailableError,
  type UnloggedEntry,
} from "./store.js";
import { WriteBatcher } from "./write-batcher.js";

interface ExecutionRow {
  execution_id: string;
  tenant_id: string;
  nonce: string;
  action: string;
  payload_digest: Buffer;
  approval_digest: Buffer | null;
  logical_time_ms: number;
  status: "pending" | "executed" | "failed" | "interrupted";
  reason: string | null;
  result_json: string | null;
  result_digest: Buffer | null;
  receipt: Buffer | null;
  receipt_digest: Buffer | null;
  receipt_signature: Buffer | null;
}

interface CheckpointRow {
  tree_size: number;
  root_hash: Buffer;
  note: string;
}

interface LogEntryRow {
  leaf_index: number;
  leaf_hash: Buffer;
  entry_kind: "execution" | "denial";
  entry_id: string;
  receipt: Buffer | null;
  receipt_digest: Buffer | null;
  receipt_signature: Buffer | null;
}

/** How the store issues receipts: who signs them, and the log they go into. */
export interface ReceiptIssuer {
  readonly signer: ReceiptSigner | undefined;
  readonly logOrigin: string;
}

interface DenialRow {
  attempt_id: string;
  tenant_id: string;
  nonce: string;
  action: string;
  payload_digest: Buffer;
  approval_digest: Buffer | null;
  reason: string;
  logical_time_ms: number;
  receipt: Buffer;
  receipt_digest: Buffer;
  receipt_signature: Buffer | null;
}

export class SchemaTooNewError extends Error {
  override readonly name = "SchemaTooNewError";
}

/** Another process (a server, or audit/export) holds the ledger file. */
export class LedgerInUseError extends Error {
  override readonly name = "LedgerInUseError";
}

/** How a store opened for serving watches its storage. */
interface StorageWatch {
  readonly file: LedgerFileIdentity | undefined;
  readonly onWarning: ((message: string) => void) | undefined;
}

function isBusy(error: unknown): boolean {
  return (error as { code?: unknown }).code === "SQLITE_BUSY" || (error as { code?: unknown }).code === "SQLITE_LOCKED";
}

/**
 * The ledger in one SQLite file (WAL, synchronous=FULL, exclusive locking). One
 * server process owns a file and holds it locked while it runs (replicas need a
 * shared server database behind this same interface).
 *
 * Writes from concurrent requests are grouped into one transaction per turn
 * of the event loop (WriteBatcher), so N reservations cost one fsync, not N;
 * each caller still hears back only after its write is durable.
 */
export class SqliteLedgerStore implements LedgerStore {
  readonly schemaVersion: number;
  readonly #db: Database.Database;
  readonly #writes: WriteBatcher;
  readonly #statements;

  readonly #receipts: ReceiptIssuer;
  readonly #storage: StorageWatch;
  /** Set once the ledger file is gone or replaced: every later request fails until restart. */
  #gone: StoreUnavailableError | undefined;
  /** The storage fault of the last write batch, until a write (or the readiness probe) succeeds. */
  #writeFailure: unknown;

  /**
   * Opens (creating and migrating) the ledger. Without options receipts are unsigned and unlogged by name.
   * A new file is created owner-only (0600); `onWarning` hears about an existing one open to others,
   * and about the file going away later.
   */
  static open(
    path: string,
    receipts: ReceiptIssuer = { signer: undefined, logOrigin: "" },
    options: { readonly onWarning?: (message: string) => void } = {},
  ): SqliteLedgerStore {
    mkdirSync(dirname(path), { recursive: true });
    const loose = createOwnerOnly(path);
    if (loose !== undefined) options.onWarning?.(loose);
    // No busy wait: the only other holder of the file can be another process, which is refused.
    const db = new Database(path, { timeout: 0 });
    try {
      // Before the first WAL access: the WAL index then lives in this process's memory, not in a
      // shared -shm mapping (which a fault on that file turns into SIGBUS), and the file stays
      // locked to this connection until it closes: one process per ledger.
      db.pragma("locking_mode = EXCLUSIVE");
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = FULL");
      const store = new SqliteLedgerStore(db, migrate(db), receipts, {
        file: new LedgerFileIdentity(path),
        onWarning: options.onWarning,
      });
      // A ledger that cannot be written (read-only file or mount) is refused now, not at the first request.
      store.#probeWrite();
      return store;
    } catch (error) {
      if (db.open) db.close();
      if (isBusy(error)) {
        throw new LedgerInUseError(
          `the ledger ${path} is in use by another process: one server per ledger file (docs/SEMANTICS.md#durability)`,
          { cause: error },
        );
      }
      if (error instanceof StoreUnavailableError || (error instanceof Error && error.name === "SqliteError")) {
        const code = (error as { code?: unknown }).code;
        throw new Error(
          `the ledger ${path} cannot be opened for writing: ${error.message}${typeof code === "string" ? ` (${code})` : ""}`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /**
   * Opens an existing ledger without changing it (for audit and export), once
   * no server holds it: no migrations, and a schema other than this build's
   * is refused. A ledger a running server holds is refused at once
   * (LedgerInUseError), never waited for.
   */
  static openReadOnly(path: string): SqliteLedgerStore {
    const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 0 });
    let version: number;
    try {
      version = schemaVersionOf(db);
    } catch (error) {
      db.close();
      if (isBusy(error)) {
        throw new LedgerInUseError(`the ledger ${path} is held by a running server; stop it first`, { cause: error });
      }
      throw error;
    }
    if (version !== latestSqliteSchemaVersion) {
      db.close();
      throw new SchemaTooNewError(
        `the ledger has schema version ${version}; this build reads version ${latestSqliteSchemaVersion}`,
      );
    }
    return new SqliteLedgerStore(db, version, { signer: undefined, logOrigin: "" });
  }

  private constructor(
    db: Database.Database,
    schemaVersion: number,
    receipts: ReceiptIssuer,
    storage: StorageWatch = { file: undefined, onWarning: undefined },
  ) {
    this.#db = db;
    this.#receipts = receipts;
    this.schemaVersion = schemaVersion;
    this.#storage = storage;
    this.#writes = new WriteBatcher(db, {
      assertDurable: () => this.#assertFile(),
      settled: (failure) => {
        this.#writeFailure = failure;
      },
    });
    this.#statements = {
      insert: db.prepare(`
        INSERT INTO executions (execution_id, tenant_id, nonce, action, payload_digest,
          approval_id, approval_digest, logical_time_ms, status)
        VALUES (@executionId, @tenantId, @nonce, @action, @payloadDigest,
          @approvalId, @approvalDigest, @logicalTimeMs, 'pending')
        ON CONFLICT DO NOTHING`),
      byKey: db.prepare<[string, string], ExecutionRow>("SELECT * FROM executions WHERE tenant_id = ? AND nonce = ?"),
      byId: db.prepare<[string], ExecutionRow>("SELECT * FROM executions WHERE execution_id = ?"),
      approvalUsed: db.prepare<[string, string], { one: number }>(
        "SELECT 1 AS one FROM executions WHERE tenant_id = ? AND approval_id = ?",
      ),
      pending: db.prepare<[], ExecutionRow>("SELECT * FROM executions WHERE status = 'pending'"),
      finish: db.prepare(`
        UPDATE executions SET status = @status, reason = @reason, result_json = @resultJson,
          result_digest = @resultDigest, receipt = @receipt, receipt_digest = @receiptDigest,
          receipt_signature = @receiptSignature
        WHERE execution_id = @executionId AND status = 'pending'`),
      counter: db.prepare<[string, string], { value: number }>(
        "SELECT value FROM counters WHERE tenant_id = ? AND key = ?",
      ),
      insertDenial: db.prepare(`
        INSERT INTO denials (attempt_id, tenant_id, nonce, action, payload_digest, approval_digest,
          reason, logical_time_ms, receipt, receipt_digest, receipt_signature)
        VALUES (@attemptId, @tenantId, @nonce, @action, @payloadDigest, @approvalDigest,
          @reason, @logicalTimeMs, @receipt, @receiptDigest, @receiptSignature)`),
      denialById: db.prepare<[string], DenialRow>("SELECT * FROM denials WHERE attempt_id = ?"),
      nextLeafIndex: db.prepare<[], { next: number }>(
        "SELECT coalesce(max(leaf_index) + 1, 0) AS next FROM log_leaves",
      ),
      insertLeaf: db.prepare(
        "INSERT INTO log_leaves (leaf_index, leaf_hash, entry_kind, entry_id) VALUES (?, ?, ?, ?)",
      ),
      leafHashes: db.prepare<[number, number], { leaf_hash: Buffer }>(
        "SELECT leaf_hash FROM log_leaves WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
      ),
      logSize: db.prepare<[], { size: number }>("SELECT coalesce(max(leaf_index) + 1, 0) AS size FROM log_leaves"),
      latestCheckpoint: db.prepare<[], CheckpointRow>("SELECT * FROM checkpoints ORDER BY tree_size DESC LIMIT 1"),
      checkpointAt: db.prepare<[number], CheckpointRow>("SELECT * FROM checkpoints WHERE tree_size = ?"),
      insertCheckpoint: db.prepare(
        "INSERT INTO checkpoints (tree_size, root_hash, note, created_at_ms) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
      ),
      setCounter: db.prepare(`
        INSERT INTO counters (tenant_id, key, value) VALUES (?, ?, ?)
        ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value`),
    };
  }

  reserve(reservation: Reservation): Promise<ReserveOutcome> {
    return this.#writes.run(() => this.#reserveNow(reservation));
  }

  complete(executionId: string, completion: Completion): Promise<FinishedExecution> {
    return this.#writes.run(() => this.#completeNow(executionId, completion));
  }

  reserveAndComplete(reservation: Reservation, completion: Completion): Promise<RecordOutcome> {
    return this.#writes.run((): RecordOutcome => {
      const reserved = this.#reserveNow(reservation);
      if (reserved.kind !== "reserved") return reserved;
      return { kind: "recorded", record: this.#completeNow(reservation.executionId, completion) };
    });
  }

  #reserveNow(reservation: Reservation): ReserveOutcome {
    {
      const { insert, byKey, approvalUsed } = this.#statements;
      const existing = byKey.get(reservation.tenantId, reservation.nonce);
      if (existing !== undefined) return { kind: "existing", record: toRecord(existing) };
      if (
        reservation.approval !== undefined &&
        approvalUsed.get(reservation.tenantId, reservation.approval.approvalId) !== undefined
      ) {
        return { kind: "approval_used" };
      }
      const { changes } = insert.run({
        executionId: reservation.executionId,
        tenantId: reservation.tenantId,
        nonce: reservation.nonce,
        action: reservation.action,
        payloadDigest: reservation.payloadDigest,
        approvalId: reservation.approval?.approvalId ?? null,
        approvalDigest: reservation.approval?.digest ?? null,
        logicalTimeMs: reservation.logicalTime.getTime(),
      });
      if (changes !== 1) throw new StoreUnavailableError("reservation was not recorded");
      return { kind: "reserved" };
    }
  }

  #completeNow(executionId: string, completion: Completion): FinishedExecution {
    {
      const row = this.#statements.byId.get(executionId);
      if (row === undefined || row.status !== "pending") {
        throw new StoreUnavailableError(`execution ${executionId} is not pending`);
      }
      const outcome = this.#applyCompletion(row, completion);
      const receipt = this.#issueReceipt("execution", row.execution_id, {
        executionId: row.execution_id,
        tenantId: row.tenant_id,
        action: row.action,
        nonce: row.nonce,
        payloadDigest: row.payload_digest,
        approvalDigest: row.approval_digest ?? undefined,
        resultDigest: outcome.status === "executed" ? outcome.resultDigest : undefined,
        status: outcome.status === "executed" ? ExecutionStatus.EXECUTED : ExecutionStatus.FAILED,
        reason: outcome.status === "failed" ? outcome.reason : undefined,
        logicalTime: new Date(row.logical_time_ms),
      });
      this.#writeFinish(row.execution_id, {
        status: outcome.status,
        reason: outcome.status === "failed" ? outcome.reason : null,
        resultJson: outcome.status === "executed" ? JSON.stringify(outcome.result) : null,
        resultDigest: outcome.status === "executed" ? outcome.resultDigest : null,
        receipt,
      });
      const base = toBase(row);
      return outcome.status === "executed"
        ? { ...base, status: "executed", result: outcome.result, resultDigest: outcome.resultDigest, receipt }
        : { ...base, status: "failed", reason: outcome.reason, receipt };
    }
  }

  /** Runs inside the batch transaction: applies the effect, or decides the failure. */
  #applyCompletion(
    row: ExecutionRow,
    completion: Completion,
  ): { status: "executed"; result: JsonValue; resultDigest: Buffer } | { status: "failed"; reason: FailureReason } {
    if (completion.kind === "failed") return { status: "failed", reason: completion.reason };
    const { effect } = completion;
    if (effect.kind === "result")
      return { status: "executed", result: effect.result, resultDigest: effect.resultDigest };
    const current = this.#statements.counter.get(row.tenant_id, effect.key)?.value ?? 0;
    const total = current + effect.delta;
    if (!Number.isSafeInteger(total)) return { status: "failed", reason: "counter_overflow" };
    this.#statements.setCounter.run(row.tenant_id, effect.key, total);
    const result = effect.result(total);
    return { status: "executed", result, resultDigest: canonicalJsonDigest(result) };
  }

  #writeFinish(
    executionId: string,
    values: {
      status: "executed" | "failed" | "interrupted";
      reason: string | null;
      resultJson: string | null;
      resultDigest: Buffer | null;
      receipt: EncodedReceipt;
    },
  ): void {
    const { changes } = this.#statements.finish.run({
      executionId,
      status: values.status,
      reason: values.reason,
      resultJson: values.resultJson,
      resultDigest: values.resultDigest,
      receipt: values.receipt.body,
      receiptDigest: values.receipt.digest,
      receiptSignature: values.receipt.signature,
    });
    if (changes !== 1) throw new StoreUnavailableError(`execution ${executionId} was not finished`);
  }

  /**
   * Encodes, signs and logs a receipt, inside the caller's write: the leaf
   * index is the next one in this transaction, so a rolled-back write leaves
   * no gap, and the leaf costs no fsync of its own.
   */
  #issueReceipt(
    kind: "execution" | "denial",
    entryId: string,
    facts: Omit<ReceiptFacts, "logIndex" | "logOrigin">,
  ): EncodedReceipt {
    const logIndex = this.#statements.nextLeafIndex.get()?.next ?? 0;
    const receipt = encodeReceipt({ ...facts, logIndex, logOrigin: this.#receipts.logOrigin }, this.#receipts.signer);
    this.#statements.insertLeaf.run(logIndex, leafHash(receipt.body), kind, entryId);
    return receipt;
  }

  async logSize(): Promise<number> {
    return this.#read(() => this.#statements.logSize.get()?.size ?? 0);
  }

  async leafHashes(start: number, end: number): Promise<Buffer[]> {
    return this.#read(() => this.#statements.leafHashes.all(start, end).map((row) => row.leaf_hash));
  }

  async latestCheckpoint(): Promise<StoredCheckpoint | undefined> {
    const row = this.#read(() => this.#statements.latestCheckpoint.get());
    return row === undefined ? undefined : toCheckpoint(row);
  }

  async checkpointAt(treeSize: number): Promise<StoredCheckpoint | undefined> {
    const row = this.#read(() => this.#statements.checkpointAt.get(treeSize));
    return row === undefined ? undefined : toCheckpoint(row);
  }

  saveCheckpoint(checkpoint: StoredCheckpoint): Promise<void> {
    return this.#writes.run(() => {
      this.#statements.insertCheckpoint.run(checkpoint.treeSize, checkpoint.rootHash, checkpoint.note, Date.now());
    });
  }

  async *logEntries(): AsyncGenerator<LogEntry> {
    const rows = this.#db
      .prepare<[], LogEntryRow>(`
        SELECT l.leaf_index, l.leaf_hash, l.entry_kind, l.entry_id,
          coalesce(e.receipt, d.receipt) AS receipt,
          coalesce(e.receipt_digest, d.receipt_digest) AS receipt_digest,
          coalesce(e.receipt_signature, d.receipt_signature) AS receipt_signature
        FROM log_leaves l
        LEFT JOIN executions e ON l.entry_kind = 'execution' AND e.execution_id = l.entry_id
        LEFT JOIN denials d ON l.entry_kind = 'denial' AND d.attempt_id = l.entry_id
        ORDER BY l.leaf_index`)
      .iterate();
    for (const row of rows) {
      yield {
        leafIndex: row.leaf_index,
        leafHash: row.leaf_hash,
        kind: row.entry_kind,
        entryId: row.entry_id,
        receipt:
          row.receipt === null || row.receipt_digest === null
            ? undefined
            : { body: row.receipt, digest: row.receipt_digest, signature: row.receipt_signature ?? new Uint8Array(0) },
      };
    }
  }

  async *checkpoints(): AsyncGenerator<StoredCheckpoint> {
    for (const row of this.#db.prepare<[], CheckpointRow>("SELECT * FROM checkpoints ORDER BY tree_size").iterate()) {
      yield toCheckpoint(row);
    }
  }

  async find(tenantId: string, nonce: string): Promise<ExecutionRecord | undefined> {
    const row = this.#read(() => this.#statements.byKey.get(tenantId, nonce));
    return row === undefined ? undefined : toRecord(row);
  }

  async findById(executionId: string): Promise<ExecutionRecord | DeniedAttempt | undefined> {
    const row = this.#read(() => this.#statements.byId.get(executionId));
    if (row !== undefined) return toRecord(row);
    const denial = this.#read(() => this.#statements.denialById.get(executionId));
    return denial === undefined ? undefined : toDeniedAttempt(denial);
  }

  recordDenial(denial: Denial): Promise<DeniedAttempt> {
    return this.#writes.run((): DeniedAttempt => {
      const receipt = this.#issueReceipt("denial", denial.attemptId, {
        executionId: denial.attemptId,
        tenantId: denial.tenantId,
        action: denial.action,
        nonce: denial.nonce,
        payloadDigest: denial.payloadDigest,
        approvalDigest: denial.approvalDigest,
        resultDigest: undefined,
        status: ExecutionStatus.DENIED,
        reason: denial.reason,
        logicalTime: denial.logicalTime,
      });
      this.#statements.insertDenial.run({
        attemptId: denial.attemptId,
        tenantId: denial.tenantId,
        nonce: denial.nonce,
        action: denial.action,
        payloadDigest: denial.payloadDigest,
        approvalDigest: denial.approvalDigest ?? null,
        reason: denial.reason,
        logicalTimeMs: denial.logicalTime.getTime(),
        receipt: receipt.body,
        receiptDigest: receipt.digest,
        receiptSignature: receipt.signature,
      });
      return {
        executionId: denial.attemptId,
        tenantId: denial.tenantId,
        nonce: denial.nonce,
        action: denial.action,
        payloadDigest: denial.payloadDigest,
        approvalDigest: denial.approvalDigest,
        logicalTime: denial.logicalTime,
        status: "denied",
        reason: denial.reason,
        receipt,
      };
    });
  }

  recoverInterrupted(): Promise<number> {
    return this.#writes.run(() => {
      const rows = this.#statements.pending.all();
      for (const row of rows) {
        const receipt = this.#issueReceipt("execution", row.execution_id, {
          executionId: row.execution_id,
          tenantId: row.tenant_id,
          action: row.action,
          nonce: row.nonce,
          payloadDigest: row.payload_digest,
          approvalDigest: row.approval_digest ?? undefined,
          resultDigest: undefined,
          status: ExecutionStatus.INTERRUPTED,
          reason: "interrupted",
          logicalTime: new Date(row.logical_time_ms),
        });
        this.#writeFinish(row.execution_id, {
          status: "interrupted",
          reason: "interrupted",
          resultJson: null,
          resultDigest: null,
          receipt,
        });
      }
      return rows.length;
    });
  }

  /**
   * Readiness: fails once the ledger file is gone or replaced (for good), and
   * while the last write batch failed on its storage. In that state nothing
   * else writes (the server is unready), so each check tries a small real
   * write of its own; the first that commits makes the store ready again.
   */
  async check(): Promise<void> {
    this.#assertFile();
    if (this.#writeFailure !== undefined) this.#probeWrite();
    this.#read(() => this.#db.prepare("SELECT 1").get());
  }

  /** A real, durable write that changes nothing: rewrites user_version with its own value. */
  #probeWrite(): void {
    try {
      this.#db
        .transaction(() => {
          const version = Number(this.#db.pragma("user_version", { simple: true }));
          this.#db.pragma(`user_version = ${version}`);
        })
        .immediate();
      this.#assertFile();
    } catch (error) {
      this.#writeFailure = error;
      if (error instanceof StoreUnavailableError) throw error;
      throw new StoreUnavailableError(`the ledger cannot be written: ${(error as Error).message}`, { cause: error });
    }
    this.#writeFailure = undefined;
  }

  /**
   * Throws when the ledger's path no longer names the file this store
   * writes: what is committed there is lost at the next restart, so nothing
   * more is acknowledged, and the store stays failed until restart.
   */
  #assertFile(): void {
    if (this.#gone !== undefined) throw this.#gone;
    const problem = this.#storage.file?.problem();
    if (problem === undefined) return;
    this.#gone = new StoreUnavailableError(`${problem}; refusing every request until restart`);
    this.#storage.onWarning?.(this.#gone.message);
    throw this.#gone;
  }

  async close(): Promise<void> {
    await this.#writes.drain();
    if (this.#db.open) this.#db.close();
  }

  #read<T>(read: () => T): T {
    if (this.#gone !== undefined) throw this.#gone;
    try {
      return read();
    } catch (error) {
      throw new StoreUnavailableError(`ledger read failed: ${(error as Error).message}`, { cause: error });
    }
  }

  async approvalIdOf(executionId: string): Promise<string | undefined> {
    const row = this.#read(() =>
      this.#db
        .prepare<[string], { approval_id: string | null }>("SELECT approval_id FROM executions WHERE execution_id = ?")
        .get(executionId),
    );
    return row?.approval_id ?? undefined;
  }

  async *counters(): AsyncGenerator<StoredCounter> {
    const rows = this.#db
      .prepare<[], { tenant_id: string; key: string; value: number }>(
        "SELECT tenant_id, key, value FROM counters ORDER BY tenant_id, key",
      )
      .iterate();
    for (const row of rows) yield { tenantId: row.tenant_id, key: row.key, value: row.value };
  }

  async *unloggedEntries(): AsyncGenerator<UnloggedEntry> {
    const rows = this.#db
      .prepare<[], { kind: "execution" | "denial"; entry_id: string }>(`
        SELECT 'execution' AS kind, execution_id AS entry_id FROM executions e
          WHERE status <> 'pending' AND NOT EXISTS (SELECT 1 FROM log_leaves l
            WHERE l.entry_kind = 'execution' AND l.entry_id = e.execution_id)
        UNION ALL
        SELECT 'denial' AS kind, attempt_id AS entry_id FROM denials d
          WHERE NOT EXISTS (SELECT 1 FROM log_leaves l WHERE l.entry_kind = 'denial' AND l.entry_id = d.attempt_id)
        ORDER BY kind, entry_id`)
      .iterate();
    for (const row of rows) yield { kind: row.kind, entryId: row.entry_id };
  }
}

function schemaVersionOf(db: Database.Database): number {
  const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get();
  if (table === undefined) return 0;
  return (
    db.prepare<[], { version: number | null }>("SELECT max(version) AS version FROM schema_migrations").get()
      ?.version ?? 0
  );
}

function migrate(db: Database.Database): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)`);
  const current = schemaVersionOf(db);
  if (current > latestSqliteSchemaVersion) {
    throw new SchemaTooNewError(
      `the ledger has schema version ${current}, newer than this build knows (${latestSqliteSchemaVersion}); upgrade OpenExec`,
    );
  }
  const record = db.prepare("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)");
  for (const migration of sqliteMigrations) {
    if (migration.version <= current) continue;
    db.transaction(() => {
      db.exec(migration.sql);
      record.run(migration.version, migration.name, Date.now());
    }).immediate();
  }
  return latestSqliteSchemaVersion;
}

/** The columns executions and denials share. */
type AttemptColumns = Pick<
  ExecutionRow,
  "tenant_id" | "nonce" | "action" | "payload_digest" | "approval_digest" | "logical_time_ms"
>;

function toBase(row: AttemptColumns & { execution_id: string }) {
  return {
    executionId: row.execution_id,
    tenantId: row.tenant_id,
    nonce: row.nonce,
    action: row.action,
    payloadDigest: row.payload_digest,
    approvalDigest: row.approval_digest ?? undefined,
    logicalTime: new Date(row.logical_time_ms),
  };
}

function toRecord(row: ExecutionRow): ExecutionRecord {
  const base = toBase(row);
  if (row.status === "pending") return { ...base, status: "pending" };
  if (row.receipt === null || row.receipt_digest === null) {
    throw new StoreUnavailableError(`execution ${row.execution_id} is finished but has no receipt`);
  }
  const receipt: EncodedReceipt = {
    body: row.receipt,
    digest: row.receipt_digest,
    signature: row.receipt_signature ?? new Uint8Array(0),
  };
  switch (row.status) {
    case "executed":
      if (row.result_json === null || row.result_digest === null) {
        throw new StoreUnavailableError(`execution ${row.execution_id} is executed but has no result`);
      }
      return {
        ...base,
        status: "executed",
        result: JSON.parse(row.result_json) as JsonValue,
        resultDigest: row.result_digest,
        receipt,
      };
    case "failed":
      return { ...base, status: "failed", reason: row.reason as FailureReason, receipt };
    case "interrupted":
      return { ...base, status: "interrupted", receipt };
  }
}

function toDeniedAttempt(row: DenialRow): DeniedAttempt {
  return {
    ...toBase({ ...row, execution_id: row.attempt_id }),
    status: "denied",
    reason: row.reason as RejectionReason,
    receipt: { body: row.receipt, digest: row.receipt_digest, signature: row.receipt_signature ?? new Uint8Array(0) },
  };
}

function toCheckpoint(row: CheckpointRow): StoredCheckpoint {
  return { treeSize: row.tree_size, rootHash: row.root_hash, note: row.note };
}
