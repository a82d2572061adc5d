import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { FullTileCache } from "../tlog/full-tile-cache.js";
import { TreeEdge } from "../tlog/tiled-tree.js";
import {
  isStorageFault,
  LedgerBugError,
  LedgerInUseError,
  SchemaTooNewError,
  StoreUnavailableError,
} from "./errors.js";
import { createOwnerOnly, LedgerFileIdentity } from "./ledger-file.js";
import {
  approvalKeyIdsColumn,
  checkServedIdentity,
  type ServedIdentity,
  type StoredIdentityColumns,
} from "./ledger-identity.js";
import {
  type CheckpointColumns,
  type CounterColumns,
  type DenialColumns,
  type ExecutionColumns,
  type FreezeColumns,
  fromCheckpoint,
  fromCounter,
  fromDenial,
  fromExecution,
  fromFreeze,
  fromLeafEntry,
  type LeafEntryColumns,
  leafEntriesSelect,
  unloggedEntriesSql,
} from "./ledger-rows.js";
import type {
  CheckpointRow,
  DenialRow,
  ExecutionFinish,
  ExecutionRow,
  FreezeRow,
  LeafEntry,
  LeafRow,
  LedgerStorage,
  LedgerTransaction,
  ReceiptRow,
  TileRow,
} from "./ports.js";
import { latestSqliteSchemaVersion, sqliteMigrations } from "./sqlite-migrations.js";

/** How a storage opened for serving watches its file. */
interface StorageWatch {
  readonly file: LedgerFileIdentity | undefined;
  readonly onWarning: ((message: string) => void) | undefined;
}

/** What the storage keeps in memory. */
interface StorageCaches {
  /** Committed full tiles, served without a query (every read still checks the file first). */
  readonly fullTiles: FullTileCache;
}

/**
 * The ledger's rows in one SQLite file, behind the storage ports: it persists
 * and reads, nothing else. Transactions are serialised on the one connection,
 * and a read never runs inside another caller's open transaction (it would
 * see rows that may yet roll back): it waits for the transaction to end.
 */
export class SqliteStorage implements LedgerStorage {
  readonly schemaVersion: number;
  readonly #db: Database.Database;
  readonly #sql;
  readonly #watch: StorageWatch;
  readonly #fullTiles: FullTileCache;
  /** The transaction in progress, if any: reads and the next transaction wait for it. */
  #busy: Promise<unknown> | undefined;
  /** Set once the ledger file is gone or replaced: every later request fails until restart. */
  #gone: StoreUnavailableError | undefined;
  /** The storage fault of the last transaction, until a write (or the readiness probe) commits. */
  #writeFailure: unknown;

  constructor(
    db: Database.Database,
    schemaVersion: number,
    watch: StorageWatch,
    caches: StorageCaches = { fullTiles: new FullTileCache() },
  ) {
    this.#db = db;
    this.schemaVersion = schemaVersion;
    this.#watch = watch;
    this.#fullTiles = caches.fullTiles;
    this.#sql = {
      byKey: db.prepare<[string, string], ExecutionColumns>(
        "SELECT * FROM executions WHERE tenant_id = ? AND nonce = ?",
      ),
      byId: db.prepare<[string], ExecutionColumns>("SELECT * FROM executions WHERE execution_id = ?"),
      denialById: db.prepare<[string], DenialColumns>("SELECT * FROM denials WHERE attempt_id = ?"),
      approvalUsed: db.prepare<[string, string], { one: number }>(
        "SELECT 1 AS one FROM executions WHERE tenant_id = ? AND approval_id = ?",
      ),
      insert: db.prepare(`
        INSERT INTO executions (execution_id, tenant_id, nonce, action, payload_digest, approval_id,
          approval_digest, logical_time_ms, status, lease_owner, lease_until_ms, reason, result_json,
          result_digest, receipt, receipt_digest, receipt_signature)
        VALUES (@executionId, @tenantId, @nonce, @action, @payloadDigest, @approvalId,
          @approvalDigest, @logicalTimeMs, @status, @leaseOwner, @leaseUntilMs, @reason, @resultJson,
          @resultDigest, @receipt, @receiptDigest, @receiptSignature)
        ON CONFLICT DO NOTHING`),
      finish: db.prepare(`
        UPDATE executions SET status = @status, reason = @reason, result_json = @resultJson,
          result_digest = @resultDigest, receipt = @receipt, receipt_digest = @receiptDigest,
          receipt_signature = @receiptSignature, lease_owner = NULL, lease_until_ms = NULL
        WHERE execution_id = @executionId AND status = 'pending'`),
      renew: db.prepare<[number, string, string]>(
        "UPDATE executions SET lease_until_ms = ? WHERE execution_id = ? AND lease_owner = ? AND status = 'pending'",
      ),
      expired: db.prepare<[number, number], ExecutionColumns>(`
        SELECT * FROM executions WHERE status = 'pending' AND coalesce(lease_until_ms, 0) < ?
        ORDER BY logical_time_ms LIMIT ?`),
      counter: db.prepare<[string, string], CounterColumns>(
        "SELECT tenant_id, key, value FROM counters WHERE tenant_id = ? AND key = ?",
      ),
      setCounter: db.prepare(`
        INSERT INTO counters (tenant_id, key, value) VALUES (?, ?, ?)
        ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value`),
      insertDenial: db.prepare(`
        INSERT INTO denials (attempt_id, tenant_id, nonce, action, payload_digest, approval_digest,
          reason, logical_time_ms, receipt, receipt_digest, receipt_signature)
        VALUES (@attemptId, @tenantId, @nonce, @action, @payloadDigest, @approvalDigest,
          @reason, @logicalTimeMs, @receipt, @receiptDigest, @receiptSignature)`),
      logSize: db.prepare<[], { size: number }>("SELECT size FROM log_state WHERE id = 1"),
      setLogSize: db.prepare<[number]>("UPDATE log_state SET size = ? WHERE id = 1"),
      insertLeaf: db.prepare<[number, Buffer, string, string]>(
        "INSERT INTO log_leaves (leaf_index, leaf_hash, entry_kind, entry_id) VALUES (?, ?, ?, ?)",
      ),
      tile: db.prepare<[number, number], { hashes: Buffer }>(
        "SELECT hashes FROM log_tiles WHERE level = ? AND tile_index = ?",
      ),
      putTile: db.prepare<[number, number, Buffer]>(`
        INSERT INTO log_tiles (level, tile_index, hashes) VALUES (?, ?, ?)
        ON CONFLICT (level, tile_index) DO UPDATE SET hashes = excluded.hashes
        WHERE length(excluded.hashes) > length(log_tiles.hashes)`),
      entries: db.prepare<[number, number], { receipt: Buffer }>(`
        SELECT coalesce(e.receipt, d.receipt) AS receipt FROM log_leaves l
        LEFT JOIN executions e ON l.entry_kind = 'execution' AND e.execution_id = l.entry_id
        LEFT JOIN denials d ON l.entry_kind = 'denial' AND d.attempt_id = l.entry_id
        WHERE l.leaf_index >= ? AND l.leaf_index < ? ORDER BY l.leaf_index`),
      latestCheckpoint: db.prepare<[], CheckpointColumns>("SELECT * FROM checkpoints ORDER BY tree_size DESC LIMIT 1"),
      checkpointAt: db.prepare<[number], CheckpointColumns>("SELECT * FROM checkpoints WHERE tree_size = ?"),
      insertCheckpoint: db.prepare<[number, Buffer, string, number]>(
        "INSERT INTO checkpoints (tree_size, root_hash, note, created_at_ms) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
      ),
    };
  }

  async transaction<T>(work: (tx: LedgerTransaction) => Promise<T>): Promise<T> {
    while (this.#busy !== undefined) await this.#busy.catch(() => undefined);
    const run = this.#transactionNow(work);
    this.#busy = run;
    try {
      return await run;
    } finally {
      this.#busy = undefined;
    }
  }

  /**
   * One transaction: refused before it starts when the file is gone, and
   * after its COMMIT the file is checked again before anyone hears back (a
   * commit into an unlinked file is not durable). A storage fault met by any
   * write, or by the commit, makes the store unready until a write commits.
   */
  async #transactionNow<T>(work: (tx: LedgerTransaction) => Promise<T>): Promise<T> {
    const db = this.#db;
    this.#assertFile();
    let fault: unknown;
    this.#guard(() => db.exec("BEGIN IMMEDIATE"));
    let savepoints = 0;
    const sql = this.#sql;
    const tx: LedgerTransaction = {
      savepoint: async (write) => {
        const name = `w${savepoints++}`;
        db.exec(`SAVEPOINT ${name}`);
        try {
          const value = await write();
          db.exec(`RELEASE ${name}`);
          return value;
        } catch (error) {
          if (isStorageFault(error)) fault ??= error;
          db.exec(`ROLLBACK TO ${name}; RELEASE ${name}`);
          throw error;
        }
      },
      // In-process statements cost no round trip: the bulk calls are loops over prepared ones.
      findExecutions: async (keys) => present(keys.map((k) => fromExecution(sql.byKey.get(k.tenantId, k.nonce)))),
      findExecutionsById: async (ids) => present(ids.map((id) => fromExecution(sql.byId.get(id)))),
      usedApprovals: async (uses) =>
        uses.filter((use) => sql.approvalUsed.get(use.tenantId, use.approvalId) !== undefined),
      insertExecutions: async (rows) => rows.reduce((n, row) => n + sql.insert.run(toExecution(row)).changes, 0),
      finishExecutions: async (finishes) =>
        finishes.reduce(
          (n, { executionId, finish }) => n + sql.finish.run({ executionId, ...toFinish(finish) }).changes,
          0,
        ),
      // One statement per id, as the other per-row reads here: in-process, no round trips to save.
      renewLeases: async (owner, ids, untilMs) => ids.filter((id) => sql.renew.run(untilMs, id, owner).changes > 0),
      expiredReservations: async (nowMs, limit) =>
        sql.expired.all(nowMs, limit).map((row) => fromExecution(row) as ExecutionRow),
      readCounters: async (keys) =>
        keys.flatMap((k) => {
          const row = sql.counter.get(k.tenantId, k.key);
          return row === undefined ? [] : [fromCounter(row)];
        }),
      writeCounters: async (rows) => {
        for (const row of rows) sql.setCounter.run(row.tenantId, row.key, row.value);
      },
      insertDenials: async (rows) => {
        for (const row of rows) sql.insertDenial.run(toDenial(row));
      },
      // One connection, one writer at a time (BEGIN IMMEDIATE): the log is already this transaction's.
      lockLog: async () => sql.logSize.get()?.size ?? 0,
      readLogSize: async () => sql.logSize.get()?.size ?? 0,
      claimPublication: async () => true,
      latestCheckpoint: async () => fromCheckpoint(sql.latestCheckpoint.get()),
      // Not remembered: a tile this transaction wrote is not committed yet.
      readTiles: async (ids) => this.#tiles(ids, false),
      appendLog: async (leaves, tiles, size) => this.#appendLog(leaves, tiles, size),
      insertCheckpoint: async (row) => {
        sql.insertCheckpoint.run(row.treeSize, Buffer.from(row.rootHash), row.note, Date.now());
      },
    };
    try {
      const value = await work(tx);
      this.#guard(() => db.exec("COMMIT"));
      this.#assertFile();
      this.#writeFailure = fault;
      return value;
    } catch (error) {
      if (db.inTransaction) db.exec("ROLLBACK");
      this.#writeFailure = error;
      throw error instanceof StoreUnavailableError || error instanceof LedgerBugError
        ? error
        : new StoreUnavailableError(`ledger write failed: ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * Readiness: fails once the ledger file is gone or replaced (for good), and
   * while the last transaction met a storage fault. Nothing else writes while
   * the server is unready, so each check then tries a small real write of its
   * own; the first that commits makes the store ready again.
   */
  async check(): Promise<void> {
    while (this.#busy !== undefined) await this.#busy.catch(() => undefined);
    this.#assertFile();
    if (this.#writeFailure !== undefined) this.probeWrite();
    this.#guard(() => this.#db.prepare("SELECT 1").get());
  }

  /** A real, durable write that changes nothing: rewrites user_version with its own value. */
  probeWrite(): void {
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
   * Throws when the ledger's path no longer names the file this store writes:
   * what is committed there is lost at the next restart, so nothing more is
   * acknowledged, and the store stays failed until restart.
   */
  #assertFile(): void {
    if (this.#gone !== undefined) throw this.#gone;
    let problem: string | undefined;
    try {
      problem = this.#watch.file?.problem();
    } catch (error) {
      throw new StoreUnavailableError(`the ledger file cannot be examined: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (problem === undefined) return;
    this.#gone = new StoreUnavailableError(`${problem}; refusing every request until restart`);
    this.#watch.onWarning?.(this.#gone.message);
    throw this.#gone;
  }

  #appendLog(leaves: readonly LeafRow[], tiles: readonly TileRow[], size: number): void {
    for (const leaf of leaves) {
      this.#sql.insertLeaf.run(leaf.index, Buffer.from(leaf.hash), leaf.kind, leaf.entryId);
    }
    for (const tile of tiles) this.#sql.putTile.run(tile.level, tile.index, Buffer.from(tile.hashes));
    this.#sql.setLogSize.run(size);
  }

  /**
   * Full tiles from the cache when held, the rest from the table; `remember`
   * only for reads of committed rows (outside any transaction), so that a
   * rolled-back tile can never be served later.
   */
  #tiles(
    ids: readonly { readonly level: number; readonly index: number }[],
    remember: boolean,
  ): (Uint8Array | undefined)[] {
    return ids.map((id) => {
      const cached = this.#fullTiles.get(id.level, id.index);
      if (cached !== undefined) return cached;
      const stored = this.#sql.tile.get(id.level, id.index)?.hashes;
      if (remember && stored !== undefined) this.#fullTiles.remember(id.level, id.index, stored);
      return stored;
    });
  }

  async findExecution(tenantId: string, nonce: string): Promise<ExecutionRow | undefined> {
    return this.#read(() => fromExecution(this.#sql.byKey.get(tenantId, nonce)));
  }

  async findExecutionById(executionId: string): Promise<ExecutionRow | undefined> {
    return this.#read(() => fromExecution(this.#sql.byId.get(executionId)));
  }

  async findDenialById(attemptId: string): Promise<DenialRow | undefined> {
    return this.#read(() => {
      const row = this.#sql.denialById.get(attemptId);
      return row === undefined ? undefined : fromDenial(row);
    });
  }

  async logSize(): Promise<number> {
    return this.#read(() => this.#sql.logSize.get()?.size ?? 0);
  }

  async readTiles(ids: readonly { readonly level: number; readonly index: number }[]) {
    // #read checks the ledger file before the cache is asked: a removed ledger serves nothing.
    return this.#read(() => this.#tiles(ids, true));
  }

  async readEntries(start: number, end: number): Promise<Uint8Array[]> {
    return this.#read(() => this.#sql.entries.all(start, end).map((row) => row.receipt));
  }

  async latestCheckpoint(): Promise<CheckpointRow | undefined> {
    return this.#read(() => fromCheckpoint(this.#sql.latestCheckpoint.get()));
  }

  async checkpointAt(treeSize: number): Promise<CheckpointRow | undefined> {
    return this.#read(() => fromCheckpoint(this.#sql.checkpointAt.get(treeSize)));
  }

  async freezes(): Promise<FreezeRow[]> {
    return this.#read(() =>
      this.#db
        .prepare<[], FreezeColumns>("SELECT scope, reason, frozen_at_ms FROM freezes ORDER BY scope")
        .all()
        .map(fromFreeze),
    );
  }

  /** Outside the group commit: one autocommit statement, run once no batch is open on the connection. */
  async setFreeze(freeze: FreezeRow): Promise<void> {
    await this.#read(() =>
      this.#db
        .prepare(
          `INSERT INTO freezes (scope, reason, frozen_at_ms) VALUES (?, ?, ?)
           ON CONFLICT (scope) DO UPDATE SET reason = excluded.reason, frozen_at_ms = excluded.frozen_at_ms`,
        )
        .run(freeze.scope, freeze.reason, freeze.frozenAtMs),
    );
  }

  async clearFreeze(scope: string): Promise<boolean> {
    return this.#read(() => this.#db.prepare("DELETE FROM freezes WHERE scope = ?").run(scope).changes > 0);
  }

  async *leafEntries(): AsyncGenerator<LeafEntry> {
    for (const row of this.#db.prepare<[], LeafEntryColumns>(`${leafEntriesSelect} ORDER BY l.leaf_index`).iterate())
      yield fromLeafEntry(row);
  }

  async *checkpoints(): AsyncGenerator<CheckpointRow> {
    for (const row of this.#db
      .prepare<[], CheckpointColumns>("SELECT * FROM checkpoints ORDER BY tree_size")
      .iterate()) {
      yield fromCheckpoint(row) as CheckpointRow;
    }
  }

  async *counters(): AsyncGenerator<{ tenantId: string; key: string; value: number }> {
    const rows = this.#db
      .prepare<[], CounterColumns>("SELECT tenant_id, key, value FROM counters ORDER BY tenant_id, key")
      .iterate();
    for (const row of rows) yield fromCounter(row);
  }

  async *unloggedEntries(): AsyncGenerator<{ kind: LeafRow["kind"]; entryId: string }> {
    const rows = this.#db.prepare<[], { kind: LeafRow["kind"]; entry_id: string }>(unloggedEntriesSql).iterate();
    for (const row of rows) yield { kind: row.kind, entryId: row.entry_id };
  }

  async close(): Promise<void> {
    while (this.#busy !== undefined) await this.#busy.catch(() => undefined);
    if (this.#db.open) this.#db.close();
  }

  /** Reads wait for an open transaction on this connection, then run. */
  async #read<T>(read: () => T): Promise<T> {
    while (this.#busy !== undefined) await this.#busy.catch(() => undefined);
    // A replay must not be answered from a ledger file that is gone or replaced either.
    this.#assertFile();
    return this.#guard(read);
  }

  #guard<T>(operation: () => T): T {
    try {
      return operation();
    } catch (error) {
      // Already the ledger's own (a stored value of the wrong type names its row).
      if (error instanceof StoreUnavailableError) throw error;
      throw new StoreUnavailableError(`ledger I/O failed: ${(error as Error).message}`, { cause: error });
    }
  }
}

function present<T>(rows: readonly (T | undefined)[]): T[] {
  return rows.filter((row): row is T => row !== undefined);
}

function toExecution(row: ExecutionRow) {
  return {
    executionId: row.executionId,
    tenantId: row.tenantId,
    nonce: row.nonce,
    action: row.action,
    payloadDigest: Buffer.from(row.payloadDigest),
    approvalId: row.approvalId ?? null,
    approvalDigest: row.approvalDigest === undefined ? null : Buffer.from(row.approvalDigest),
    logicalTimeMs: row.logicalTimeMs,
    status: row.status,
    leaseOwner: row.leaseOwner ?? null,
    leaseUntilMs: row.leaseUntilMs ?? null,
    reason: row.reason ?? null,
    resultJson: row.resultJson ?? null,
    resultDigest: row.resultDigest === undefined ? null : Buffer.from(row.resultDigest),
    ...toReceiptColumns(row.receipt),
  };
}

function toFinish(finish: ExecutionFinish) {
  return {
    status: finish.status,
    reason: finish.reason ?? null,
    resultJson: finish.resultJson ?? null,
    resultDigest: finish.resultDigest === undefined ? null : Buffer.from(finish.resultDigest),
    ...toReceiptColumns(finish.receipt),
  };
}

function toDenial(row: DenialRow) {
  return {
    attemptId: row.attemptId,
    tenantId: row.tenantId,
    nonce: row.nonce,
    action: row.action,
    payloadDigest: Buffer.from(row.payloadDigest),
    approvalDigest: row.approvalDigest === undefined ? null : Buffer.from(row.approvalDigest),
    reason: row.reason,
    logicalTimeMs: row.logicalTimeMs,
    ...toReceiptColumns(row.receipt),
  };
}

function toReceiptColumns(receipt: ReceiptRow | undefined) {
  return {
    receipt: receipt === undefined ? null : Buffer.from(receipt.body),
    receiptDigest: receipt === undefined ? null : Buffer.from(receipt.digest),
    receiptSignature: receipt === undefined ? null : Buffer.from(receipt.signature),
  };
}

/** What a ledger opened for serving tells its owner. */
export interface SqliteOpenOptions {
  /** Hears about a ledger open to group or others, and about the file going away later. */
  readonly onWarning?: (message: string) => void;
  /** Where committed full tiles are kept (default: a new cache of the default size). */
  readonly fullTileCache?: FullTileCache;
  /** What this server serves: recorded by the first, checked at every start (ledger-identity.ts). */
  readonly identity?: ServedIdentity | undefined;
}

/**
 * Opens (creating and migrating) a ledger file to serve from: created
 * owner-only (0600), held with SQLite's exclusive lock (one process per ledger;
 * the WAL index lives in this process's memory, not in a shared -shm mapping a
 * storage fault could turn into SIGBUS), watched for being removed or
 * replaced, and refused at once when it cannot be written.
 */
export function openSqliteStorage(path: string, options: SqliteOpenOptions = {}): SqliteStorage {
  mkdirSync(dirname(path), { recursive: true });
  const loose = createOwnerOnly(path);
  if (loose !== undefined) options.onWarning?.(loose);
  // No busy wait: the only other holder of the file can be another process, which is refused.
  const db = new Database(path, { timeout: 0 });
  try {
    // Before the first WAL access, so that no shared-memory WAL index is ever made.
    db.pragma("locking_mode = EXCLUSIVE");
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    const version = migrateSqlite(db);
    if (options.identity !== undefined) claimIdentity(db, options.identity);
    backfillTiles(db);
    const storage = new SqliteStorage(
      db,
      version,
      { file: new LedgerFileIdentity(path), onWarning: options.onWarning },
      { fullTiles: options.fullTileCache ?? new FullTileCache() },
    );
    storage.probeWrite();
    return storage;
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

/** Records this server's identity in a ledger without one; refuses a ledger created by a server configured otherwise. */
function claimIdentity(db: Database.Database, served: ServedIdentity): void {
  db.transaction(() => {
    db.prepare(
      `INSERT INTO ledger_identity (id, mode, tenant_id, approval_key_ids, created_at_ms) VALUES (1, ?, ?, ?, ?)
       ON CONFLICT (id) DO NOTHING`,
    ).run(served.mode, served.tenantId, approvalKeyIdsColumn(served), Date.now());
    const stored = db
      .prepare<[], StoredIdentityColumns>("SELECT mode, tenant_id FROM ledger_identity WHERE id = 1")
      .get();
    if (stored === undefined) throw new LedgerBugError("the ledger's identity row is missing");
    checkServedIdentity(stored, served);
    // For information: the key ring of the server started last (rotation changes it).
    db.prepare("UPDATE ledger_identity SET approval_key_ids = ? WHERE id = 1").run(approvalKeyIdsColumn(served));
  }).immediate();
}

/**
 * Opens an existing ledger without changing it (audit, export), once no
 * server holds it: no migrations, and a schema other than this build's is
 * refused. A ledger a running server holds is refused at once, never waited for.
 */
export function openSqliteStorageReadOnly(path: string): SqliteStorage {
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
  return new SqliteStorage(db, version, { file: undefined, onWarning: undefined });
}

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return code === "SQLITE_BUSY" || code === "SQLITE_LOCKED";
}

/**
 * Ledgers from before tiles (schema 4) hold leaves but no tiles: build them
 * once from the leaves, in one transaction, then never again. Also repairs a
 * log size that disagrees with the leaves.
 */
function backfillTiles(db: Database.Database): void {
  const leaves = db.prepare<[], { size: number }>("SELECT coalesce(max(leaf_index) + 1, 0) AS size FROM log_leaves");
  const size = leaves.get()?.size ?? 0;
  const stored = db.prepare<[], { size: number }>("SELECT size FROM log_state WHERE id = 1").get()?.size;
  const lastTile =
    size === 0
      ? undefined
      : db
          .prepare<[number], { hashes: Buffer }>("SELECT hashes FROM log_tiles WHERE level = 0 AND tile_index = ?")
          .get(Math.floor((size - 1) / 256));
  const covered = size === 0 || (lastTile !== undefined && lastTile.hashes.length >= (((size - 1) % 256) + 1) * 32);
  if (stored === size && covered) return;
  db.transaction(() => {
    db.exec("DELETE FROM log_tiles");
    const edge = new TreeEdge();
    const put = db.prepare<[number, number, Buffer]>(`
      INSERT INTO log_tiles (level, tile_index, hashes) VALUES (?, ?, ?)
      ON CONFLICT (level, tile_index) DO UPDATE SET hashes = excluded.hashes`);
    const page = db.prepare<[number, number], { leaf_hash: Buffer }>(
      "SELECT leaf_hash FROM log_leaves WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
    );
    for (let start = 0; start < size; start += 65_536) {
      const hashes = page.all(start, Math.min(size, start + 65_536)).map((row) => row.leaf_hash);
      for (const tile of edge.append(hashes)) put.run(tile.level, tile.index, Buffer.from(tile.hashes));
    }
    db.prepare(
      "INSERT INTO log_state (id, size) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET size = excluded.size",
    ).run(size);
  }).immediate();
}

function schemaVersionOf(db: Database.Database): number {
  const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get();
  if (table === undefined) return 0;
  return (
    db.prepare<[], { version: number | null }>("SELECT max(version) AS version FROM schema_migrations").get()
      ?.version ?? 0
  );
}

/** Runs the numbered migrations this file lacks, each in its own transaction. */
export function migrateSqlite(db: Database.Database): number {
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
