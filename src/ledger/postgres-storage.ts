import { EventEmitter } from "node:events";
import pg from "pg";
import { LedgerBugError, LedgerIdentityError, SchemaTooNewError, StoreUnavailableError } from "./errors.js";
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
  TileRow,
} from "./ports.js";
import { isPostgresUnavailable, isRetryableConflict, sqlState } from "./postgres-errors.js";
import { latestPostgresSchemaVersion, postgresMigrations } from "./postgres-migrations.js";

/** How the server reaches PostgreSQL (OPENEXEC_DB_URL and OPENEXEC_PG_*; docs/CONFIGURATION.md). */
export interface PostgresConnectionOptions {
  /** postgres:// or postgresql://, with any libpq-style parameters (sslmode, ...). Never logged. */
  readonly url: string;
  /** Connections this process opens at most (one more listens for finished executions). */
  readonly poolSize: number;
  /** Any statement running longer is cancelled by the server (57014: unavailable). */
  readonly statementTimeoutMs: number;
  /** Waiting longer for a connection (opening one, or a free one in the pool) is unavailability. */
  readonly connectTimeoutMs: number;
  readonly onWarning?: (message: string) => void;
}

/** What a ledger is signed with: every replica on one database must use the same. */
export interface LedgerIdentity {
  readonly logOrigin: string;
  readonly receiptKeyId: string;
  /** Mode, tenant and approval key ids (ledger-identity.ts); undefined: not checked (tests of the storage alone). */
  readonly served?: ServedIdentity | undefined;
}

export { LedgerIdentityError } from "./errors.js";

/** Notified when an execution is finished, on commit (LISTEN/NOTIFY). */
const finishedChannel = "openexec_execution_finished";
/** Serialises migrations of replicas that start together: an arbitrary, fixed advisory lock key. */
const migrationLockKey = 0x6f65_7801;
/** Rows per page when scanning the whole ledger (audit, export). */
const scanPage = 5_000;
/** How long a COMMIT whose answer was lost is looked for before its outcome is declared unknown. */
const commitResolveMs = 10_000;

const int8 = pg.types.builtins.INT8;
/** BIGINT as a JavaScript number: every value stored in one is a safe integer (see postgres-migrations.ts). */
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === int8 && format !== "binary"
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

const sql = {
  byKey: "SELECT * FROM executions WHERE tenant_id = $1 AND nonce = $2",
  byId: "SELECT * FROM executions WHERE execution_id = $1",
  denialById: "SELECT * FROM denials WHERE attempt_id = $1",
  // Bulk statements: arrays in, one round trip whatever the batch's size.
  findByKeys: `
    SELECT e.* FROM executions e
    JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, nonce) ON e.tenant_id = k.tenant_id AND e.nonce = k.nonce`,
  findByIds: "SELECT * FROM executions WHERE execution_id = ANY($1::text[])",
  usedApprovals: `
    SELECT e.tenant_id, e.approval_id FROM executions e
    JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, approval_id)
      ON e.tenant_id = k.tenant_id AND e.approval_id = k.approval_id`,
  insert: `
    INSERT INTO executions (execution_id, tenant_id, nonce, action, payload_digest, approval_id,
      approval_digest, logical_time_ms, status, lease_owner, lease_until_ms, reason, result_json,
      result_digest, receipt, receipt_digest, receipt_signature)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[],
      $7::bytea[], $8::bigint[], $9::text[], $10::text[], $11::bigint[], $12::text[], $13::text[],
      $14::bytea[], $15::bytea[], $16::bytea[], $17::bytea[])
    ON CONFLICT DO NOTHING`,
  // Waiters on other replicas hear of each finished row when this commits.
  finish: `
    WITH finished AS (
      UPDATE executions e SET status = f.status, reason = f.reason, result_json = f.result_json,
        result_digest = f.result_digest, receipt = f.receipt, receipt_digest = f.receipt_digest,
        receipt_signature = f.receipt_signature, lease_owner = NULL, lease_until_ms = NULL
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::bytea[], $7::bytea[],
        $8::bytea[]) AS f(execution_id, status, reason, result_json, result_digest, receipt, receipt_digest,
        receipt_signature)
      WHERE e.execution_id = f.execution_id AND e.status = 'pending'
      RETURNING e.execution_id)
    SELECT pg_notify('${finishedChannel}', execution_id) FROM finished`,
  renew: `
    UPDATE executions SET lease_until_ms = $1
    WHERE execution_id = ANY($2::text[]) AND lease_owner = $3 AND status = 'pending'
    RETURNING execution_id`,
  expired: `
    SELECT * FROM executions WHERE status = 'pending' AND coalesce(lease_until_ms, 0) < $1
    ORDER BY logical_time_ms LIMIT $2 FOR UPDATE`,
  counters: `
    SELECT c.tenant_id, c.key, c.value FROM counters c
    JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, key) ON c.tenant_id = k.tenant_id AND c.key = k.key`,
  setCounters: `
    INSERT INTO counters (tenant_id, key, value) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
    ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value`,
  insertDenials: `
    INSERT INTO denials (attempt_id, tenant_id, nonce, action, payload_digest, approval_digest,
      reason, logical_time_ms, receipt, receipt_digest, receipt_signature)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::bytea[],
      $7::text[], $8::bigint[], $9::bytea[], $10::bytea[], $11::bytea[])`,
  lockLog: "SELECT size FROM log_state WHERE id = 1 FOR UPDATE",
  logSize: "SELECT size FROM log_state WHERE id = 1",
  claimWait: "SELECT published_at_ms FROM log_publication WHERE id = 1 FOR UPDATE",
  claimSkip: "SELECT published_at_ms FROM log_publication WHERE id = 1 FOR UPDATE SKIP LOCKED",
  // Leaves, the tiles they changed and the new size: one statement, one round trip.
  appendLog: `
    WITH leaves AS (
      INSERT INTO log_leaves (leaf_index, leaf_hash, entry_kind, entry_id)
      SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::text[])),
    tiles AS (
      INSERT INTO log_tiles (level, tile_index, hashes)
      SELECT * FROM unnest($5::integer[], $6::bigint[], $7::bytea[])
      ON CONFLICT (level, tile_index) DO UPDATE SET hashes = excluded.hashes
      WHERE octet_length(excluded.hashes) > octet_length(log_tiles.hashes))
    UPDATE log_state SET size = $8 WHERE id = 1`,
  tiles: `
    SELECT t.level, t.tile_index, t.hashes FROM log_tiles t
    JOIN unnest($1::integer[], $2::bigint[]) AS wanted(level, tile_index)
      ON t.level = wanted.level AND t.tile_index = wanted.tile_index`,
  entries: `
    SELECT coalesce(e.receipt, d.receipt) AS receipt FROM log_leaves l
    LEFT JOIN executions e ON l.entry_kind = 'execution' AND e.execution_id = l.entry_id
    LEFT JOIN denials d ON l.entry_kind = 'denial' AND d.attempt_id = l.entry_id
    WHERE l.leaf_index >= $1 AND l.leaf_index < $2 ORDER BY l.leaf_index`,
  latestCheckpoint: "SELECT tree_size, root_hash, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1",
  checkpointAt: "SELECT tree_size, root_hash, note FROM checkpoints WHERE tree_size = $1",
  insertCheckpoint: `
    WITH signed AS (
      INSERT INTO checkpoints (tree_size, root_hash, note, created_at_ms) VALUES ($1, $2, $3, $4)
      ON CONFLICT DO NOTHING)
    UPDATE log_publication SET published_at_ms = $4 WHERE id = 1`,
  leafEntriesPage: `${leafEntriesSelect} WHERE l.leaf_index >= $1 ORDER BY l.leaf_index LIMIT $2`,
  checkpointsPage:
    "SELECT tree_size, root_hash, note FROM checkpoints WHERE tree_size >= $1 ORDER BY tree_size LIMIT $2",
  allCounters: "SELECT tenant_id, key, value FROM counters ORDER BY tenant_id, key",
  // "committed", "aborted", "in progress", or NULL once the transaction is too old to tell.
  commitStatus: "SELECT txid_status($1::bigint) AS status",
} as const;

type Queryable = Pick<pg.PoolClient, "query">;

/**
 * The ledger's rows in PostgreSQL, shared by any number of replicas, behind the
 * storage ports: it persists and reads, nothing else. Every write batch locks
 * the log's state row first (the recorder's `lockLog`), so batches from all
 * replicas queue on one lock, number their leaves gap-free, and never wait on
 * each other's rows (no deadlocks). Reads use any pooled connection and see
 * only committed rows.
 */
export class PostgresStorage implements LedgerStorage {
  readonly schemaVersion: number;
  readonly #pool: pg.Pool;
  readonly #options: PostgresConnectionOptions;
  readonly #finished = new EventEmitter();
  #listener: pg.Client | undefined;
  #listening: Promise<void> | undefined;
  #closed = false;
  /** Read-only (audit, export): one connection in one REPEATABLE READ transaction, so every read sees one snapshot. */
  readonly #snapshot: pg.PoolClient | undefined;

  constructor(
    pool: pg.Pool,
    schemaVersion: number,
    options: PostgresConnectionOptions,
    snapshot: pg.PoolClient | undefined = undefined,
  ) {
    this.#pool = pool;
    this.#snapshot = snapshot;
    this.schemaVersion = schemaVersion;
    this.#options = options;
    this.#finished.setMaxListeners(0);
  }

  /**
   * One transaction on one pooled connection, run again (whole) when the
   * server rolls it back to resolve a conflict. When the connection is lost
   * while COMMIT is in flight, the outcome is read back (txid_status) before
   * anyone hears of it: committed is success, anything else is unavailability,
   * never a guess.
   */
  async transaction<T>(work: (tx: LedgerTransaction) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#transactionOnce(work);
      } catch (error) {
        if (attempt < 3 && isRetryableConflict(error)) continue;
        throw asStoreError(error, "ledger transaction failed");
      }
    }
  }

  async #transactionOnce<T>(work: (tx: LedgerTransaction) => Promise<T>): Promise<T> {
    const client = await this.#connect();
    let broken: Error | undefined;
    const ignore = () => undefined;
    // A checked-out client has no error listener of the pool's: without one, a
    // dropped connection would be an uncaught 'error' event.
    client.on("error", ignore);
    // Statements whose answers nothing waits for (BEGIN, SAVEPOINT, RELEASE,
    // the log's append) are sent ahead, pipelined with the next one (the pool's
    // connections run in pipeline mode), and looked at before COMMIT: a batch
    // costs four round trips instead of eight, and holds the log's lock for
    // three. Inside a transaction a failed statement fails every later one, and
    // COMMIT then answers ROLLBACK: nothing sent ahead can commit by mistake.
    const ahead: Promise<unknown>[] = [];
    // The first statement sent ahead known to have failed. node-postgres fails
    // some statements without sending them (a value it cannot bind): the server
    // never sees those, so COMMIT would not roll back; they fail synchronously,
    // so this is set before COMMIT is sent.
    let failedAhead: unknown;
    const sendAhead = (text: string, values?: unknown[]) => {
      const answer = client.query(text, values);
      answer.catch((error: unknown) => {
        failedAhead ??= error;
      });
      ahead.push(answer);
      return answer;
    };
    try {
      const begun = sendAhead(
        "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT txid_current()::text AS xid",
      ) as Promise<unknown> as Promise<pg.QueryResult[]>;
      const tx = this.#transactionPorts(client, sendAhead);
      let value: T;
      try {
        value = await work(tx);
        if (failedAhead !== undefined) throw failedAhead;
      } catch (error) {
        await client.query("ROLLBACK").catch((rollbackError: Error) => {
          broken = rollbackError;
        });
        // A statement sent ahead that the server refused is the cause of what failed after it.
        throw (await firstRefusal(Promise.allSettled(ahead), true)) ?? error;
      }
      const sent = Promise.allSettled(ahead);
      let committed: pg.QueryResult;
      try {
        committed = await client.query("COMMIT");
      } catch (error) {
        // The server answered and rolled back (e.g. a serialization failure)... unless it is
        // going away (57P01 admin shutdown, 08xxx): then the outcome is as unknown as a lost answer.
        if (sqlState(error) !== undefined && !commitOutcomeUnknown(error)) throw error;
        broken = error as Error;
        // A statement sent ahead that the server refused means COMMIT could not commit.
        const refused = await firstRefusal(sent, true);
        if (refused !== undefined) throw refused;
        const xid = (await begun.catch(() => undefined))?.[1]?.rows[0]?.xid;
        return await this.#resolveCommit(String(xid), value, error);
      }
      // COMMIT of a transaction the server had already aborted answers ROLLBACK, not an error.
      if (committed.command !== "COMMIT") {
        throw (await firstRefusal(sent, false)) ?? new LedgerBugError("the ledger transaction was rolled back");
      }
      if (failedAhead !== undefined) {
        // Cannot happen (see failedAhead): say so loudly rather than report a partial batch as written.
        throw new LedgerBugError("the ledger transaction committed although a statement of it failed", {
          cause: failedAhead,
        });
      }
      return value;
    } catch (error) {
      if (sqlState(error) === undefined && !(error instanceof LedgerBugError)) broken ??= error as Error;
      throw error;
    } finally {
      client.removeListener("error", ignore);
      // A connection in an unknown state is closed, never handed to the next transaction.
      client.release(broken);
    }
  }

  /** The COMMIT's answer was lost: ask the database whether transaction `xid` committed. */
  async #resolveCommit<T>(xid: string, value: T, lost: unknown): Promise<T> {
    const deadline = Date.now() + commitResolveMs;
    for (;;) {
      try {
        const status = (await this.#pool.query<{ status: string | null }>(sql.commitStatus, [xid])).rows[0]?.status;
        if (status === "committed") return value;
        if (status === "aborted") {
          throw new StoreUnavailableError("the ledger connection was lost during COMMIT, which did not commit", {
            cause: lost,
          });
        }
      } catch (error) {
        if (error instanceof StoreUnavailableError) throw error;
        if (!isPostgresUnavailable(error)) throw error;
      }
      if (Date.now() >= deadline) {
        throw new StoreUnavailableError(
          "the ledger connection was lost during COMMIT and its outcome cannot be read back yet",
          { cause: lost },
        );
      }
      await sleep(100);
    }
  }

  #transactionPorts(
    client: pg.PoolClient,
    sendAhead: (text: string, values?: unknown[]) => Promise<unknown>,
  ): LedgerTransaction {
    let savepoints = 0;
    const q = <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => client.query<R>(text, values);
    return {
      savepoint: async (write) => {
        const name = `w${savepoints++}`;
        sendAhead(`SAVEPOINT ${name}`);
        try {
          const value = await write();
          sendAhead(`RELEASE SAVEPOINT ${name}`);
          return value;
        } catch (error) {
          // When the connection itself failed this fails too; the COMMIT then reports it.
          await client.query(`ROLLBACK TO SAVEPOINT ${name}; RELEASE SAVEPOINT ${name}`).catch(() => undefined);
          throw asStoreError(error, "ledger write failed");
        }
      },
      findExecutions: async (keys) =>
        (
          await q<ExecutionColumns>(
            sql.findByKeys,
            columns(keys, (k) => [k.tenantId, k.nonce]),
          )
        ).rows.map((row) => fromExecution(row) as ExecutionRow),
      findExecutionsById: async (ids) =>
        (await q<ExecutionColumns>(sql.findByIds, [ids])).rows.map((row) => fromExecution(row) as ExecutionRow),
      usedApprovals: async (uses) =>
        (
          await q<{ tenant_id: string; approval_id: string }>(
            sql.usedApprovals,
            columns(uses, (u) => [u.tenantId, u.approvalId]),
          )
        ).rows.map((row) => ({ tenantId: row.tenant_id, approvalId: row.approval_id })),
      insertExecutions: async (rows) => (await q(sql.insert, columns(rows, executionValues))).rowCount ?? 0,
      finishExecutions: async (finishes) =>
        (
          await q(
            sql.finish,
            columns(finishes, (f) => [f.executionId, ...finishValues(f.finish)]),
          )
        ).rowCount ?? 0,
      renewLeases: async (owner, ids, untilMs) =>
        (await q<{ execution_id: string }>(sql.renew, [untilMs, ids, owner])).rows.map((row) => row.execution_id),
      expiredReservations: async (nowMs, limit) =>
        (await q<ExecutionColumns>(sql.expired, [nowMs, limit])).rows.map((row) => fromExecution(row) as ExecutionRow),
      readCounters: async (keys) =>
        (
          await q<CounterColumns>(
            sql.counters,
            columns(keys, (k) => [k.tenantId, k.key]),
          )
        ).rows.map(fromCounter),
      writeCounters: async (rows) => {
        await q(
          sql.setCounters,
          columns(rows, (row) => [row.tenantId, row.key, row.value]),
        );
      },
      insertDenials: async (rows) => {
        await q(sql.insertDenials, columns(rows, denialValues));
      },
      lockLog: async () => sizeOf(await q<{ size: number }>(sql.lockLog)),
      readLogSize: async () => sizeOf(await q<{ size: number }>(sql.logSize)),
      claimPublication: async (nowMs, minIntervalMs) => {
        const claim = await q<{ published_at_ms: number }>(minIntervalMs === 0 ? sql.claimWait : sql.claimSkip);
        const publishedAtMs = claim.rows[0]?.published_at_ms;
        return publishedAtMs !== undefined && (minIntervalMs === 0 || nowMs - publishedAtMs >= minIntervalMs);
      },
      latestCheckpoint: async () => fromCheckpoint((await q<CheckpointColumns>(sql.latestCheckpoint)).rows[0]),
      readTiles: (ids) => readTiles(client, ids),
      // The batch's last statement: sent ahead of COMMIT, which fails if it did.
      appendLog: async (leaves, tiles, size) => {
        sendAhead(sql.appendLog, appendValues(leaves, tiles, size));
      },
      insertCheckpoint: async (row) => {
        await q(sql.insertCheckpoint, [row.treeSize, Buffer.from(row.rootHash), row.note, Date.now()]);
      },
    };
  }

  /**
   * Readiness: a round trip on a pooled connection. Fails while the database
   * is unreachable, restarting or out of connection slots, and passes again by
   * itself once it serves.
   */
  async check(): Promise<void> {
    await this.#read(async (db) => {
      await db.query("SELECT 1");
    });
  }

  /**
   * Resolves when this execution is finished by any replica (a notification on
   * commit), or after `timeoutMs`, whichever is first. Waiters re-read the row
   * either way: a notification is a hint, and polling still works where
   * LISTEN does not (a transaction-pooling proxy).
   */
  waitForFinish(executionId: string, timeoutMs: number): Promise<void> {
    this.#listen();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#finished.removeListener(executionId, done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#finished.once(executionId, done);
    });
  }

  /** One connection outside the pool listens for finished executions; lost, it is opened again later. */
  #listen(): void {
    if (this.#listening !== undefined || this.#closed) return;
    const client = new pg.Client({
      connectionString: this.#options.url,
      connectionTimeoutMillis: this.#options.connectTimeoutMs,
      application_name: "openexec-listen",
      keepAlive: true,
    });
    this.#listener = client;
    const retry = () => {
      if (this.#listener !== client) return;
      this.#listener = undefined;
      client.end().catch(() => undefined);
      // Polling covers the gap; listening resumes at the next wait after a pause.
      setTimeout(() => {
        this.#listening = undefined;
      }, 1000).unref();
    };
    client.on("error", retry);
    client.on("end", retry);
    client.on("notification", (message) => {
      if (message.channel === finishedChannel && message.payload !== undefined) {
        this.#finished.emit(message.payload);
      }
    });
    this.#listening = client
      .connect()
      .then(() => client.query(`LISTEN ${finishedChannel}`))
      .then(
        () => undefined,
        () => retry(),
      );
  }

  async findExecution(tenantId: string, nonce: string): Promise<ExecutionRow | undefined> {
    return this.#read(async (db) =>
      fromExecution((await db.query<ExecutionColumns>(sql.byKey, [tenantId, nonce])).rows[0]),
    );
  }

  async findExecutionById(executionId: string): Promise<ExecutionRow | undefined> {
    return this.#read(async (db) => fromExecution((await db.query<ExecutionColumns>(sql.byId, [executionId])).rows[0]));
  }

  async findDenialById(attemptId: string): Promise<DenialRow | undefined> {
    return this.#read(async (db) => {
      const row = (await db.query<DenialColumns>(sql.denialById, [attemptId])).rows[0];
      return row === undefined ? undefined : fromDenial(row);
    });
  }

  async logSize(): Promise<number> {
    return this.#read(async (db) => sizeOf(await db.query<{ size: number }>(sql.logSize)));
  }

  async readTiles(ids: readonly { readonly level: number; readonly index: number }[]) {
    return this.#read((db) => readTiles(db, ids));
  }

  async readEntries(start: number, end: number): Promise<Uint8Array[]> {
    return this.#read(async (db) => {
      const rows = (await db.query<{ receipt: Buffer | null }>(sql.entries, [start, end])).rows;
      return rows.map((row) => row.receipt ?? new Uint8Array(0));
    });
  }

  async latestCheckpoint(): Promise<CheckpointRow | undefined> {
    return this.#read(async (db) => fromCheckpoint((await db.query<CheckpointColumns>(sql.latestCheckpoint)).rows[0]));
  }

  async checkpointAt(treeSize: number): Promise<CheckpointRow | undefined> {
    return this.#read(async (db) =>
      fromCheckpoint((await db.query<CheckpointColumns>(sql.checkpointAt, [treeSize])).rows[0]),
    );
  }

  async freezes(): Promise<FreezeRow[]> {
    return this.#read(async (db) =>
      (await db.query<FreezeColumns>("SELECT scope, reason, frozen_at_ms FROM freezes ORDER BY scope")).rows.map(
        fromFreeze,
      ),
    );
  }

  /** One autocommit statement on the pool: every replica reads it at its next poll. */
  async setFreeze(freeze: FreezeRow): Promise<void> {
    await this.#read((db) =>
      db.query(
        `INSERT INTO freezes (scope, reason, frozen_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (scope) DO UPDATE SET reason = excluded.reason, frozen_at_ms = excluded.frozen_at_ms`,
        [freeze.scope, freeze.reason, freeze.frozenAtMs],
      ),
    );
  }

  async clearFreeze(scope: string): Promise<boolean> {
    return this.#read(
      async (db) => ((await db.query("DELETE FROM freezes WHERE scope = $1", [scope])).rowCount ?? 0) > 0,
    );
  }

  async *leafEntries(): AsyncGenerator<LeafEntry> {
    for (let next = 0; ; ) {
      const rows = await this.#read(
        async (db) => (await db.query<LeafEntryColumns>(sql.leafEntriesPage, [next, scanPage])).rows,
      );
      for (const row of rows) yield fromLeafEntry(row);
      if (rows.length < scanPage) return;
      next = (rows.at(-1)?.leaf_index ?? next) + 1;
    }
  }

  async *checkpoints(): AsyncGenerator<CheckpointRow> {
    for (let next = 0; ; ) {
      const rows = await this.#read(
        async (db) => (await db.query<CheckpointColumns>(sql.checkpointsPage, [next, scanPage])).rows,
      );
      for (const row of rows) yield fromCheckpoint(row) as CheckpointRow;
      if (rows.length < scanPage) return;
      next = (rows.at(-1)?.tree_size ?? next) + 1;
    }
  }

  async *counters(): AsyncGenerator<{ tenantId: string; key: string; value: number }> {
    const rows = await this.#read(async (db) => (await db.query<CounterColumns>(sql.allCounters)).rows);
    for (const row of rows) yield fromCounter(row);
  }

  async *unloggedEntries(): AsyncGenerator<{ kind: LeafRow["kind"]; entryId: string }> {
    const rows = await this.#read(
      async (db) => (await db.query<{ kind: LeafRow["kind"]; entry_id: string }>(unloggedEntriesSql)).rows,
    );
    for (const row of rows) yield { kind: row.kind, entryId: row.entry_id };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => undefined);
    if (this.#snapshot !== undefined) {
      await this.#snapshot.query("ROLLBACK").catch(() => undefined);
      this.#snapshot.release();
    }
    await this.#pool.end();
  }

  async #connect(): Promise<pg.PoolClient> {
    if (this.#closed) throw new StoreUnavailableError("the ledger is closed");
    try {
      return await this.#pool.connect();
    } catch (error) {
      throw asStoreError(error, "no ledger connection");
    }
  }

  /** A read on the pool; the database not serving is StoreUnavailableError. */
  async #read<T>(read: (db: Queryable) => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreUnavailableError("the ledger is closed");
    try {
      return await read(this.#snapshot ?? this.#pool);
    } catch (error) {
      throw asStoreError(error, "ledger read failed");
    }
  }
}

/** The database not serving becomes StoreUnavailableError; anything else (a bug) stays as it is. */
function asStoreError(error: unknown, what: string): unknown {
  if (error instanceof StoreUnavailableError || error instanceof LedgerBugError) return error;
  if (isPostgresUnavailable(error)) {
    return new StoreUnavailableError(`${what}: ${(error as Error).message}`, { cause: error });
  }
  return error;
}

async function readTiles(
  db: Queryable,
  ids: readonly { readonly level: number; readonly index: number }[],
): Promise<(Uint8Array | undefined)[]> {
  if (ids.length === 0) return [];
  const rows = (
    await db.query<{ level: number; tile_index: number; hashes: Buffer }>(sql.tiles, [
      ids.map((id) => id.level),
      ids.map((id) => id.index),
    ])
  ).rows;
  const found = new Map(rows.map((row) => [`${row.level}/${row.tile_index}`, row.hashes]));
  return ids.map((id) => found.get(`${id.level}/${id.index}`));
}

function sizeOf(result: pg.QueryResult<{ size: number }>): number {
  const size = result.rows[0]?.size;
  if (size === undefined) throw new LedgerBugError("the log's state row is missing");
  return size;
}

const bytes = (value: Uint8Array | undefined): Buffer | null => (value === undefined ? null : Buffer.from(value));

function executionValues(row: ExecutionRow): unknown[] {
  return [
    row.executionId,
    row.tenantId,
    row.nonce,
    row.action,
    Buffer.from(row.payloadDigest),
    row.approvalId ?? null,
    bytes(row.approvalDigest),
    row.logicalTimeMs,
    row.status,
    row.leaseOwner ?? null,
    row.leaseUntilMs ?? null,
    row.reason ?? null,
    row.resultJson ?? null,
    bytes(row.resultDigest),
    bytes(row.receipt?.body),
    bytes(row.receipt?.digest),
    bytes(row.receipt?.signature),
  ];
}

function finishValues(finish: ExecutionFinish): unknown[] {
  return [
    finish.status,
    finish.reason ?? null,
    finish.resultJson ?? null,
    bytes(finish.resultDigest),
    Buffer.from(finish.receipt.body),
    Buffer.from(finish.receipt.digest),
    Buffer.from(finish.receipt.signature),
  ];
}

function denialValues(row: DenialRow): unknown[] {
  return [
    row.attemptId,
    row.tenantId,
    row.nonce,
    row.action,
    Buffer.from(row.payloadDigest),
    bytes(row.approvalDigest),
    row.reason,
    row.logicalTimeMs,
    Buffer.from(row.receipt.body),
    Buffer.from(row.receipt.digest),
    Buffer.from(row.receipt.signature),
  ];
}

/** Rows as parameter arrays, one per column (for `unnest`). */
function columns<T>(rows: readonly T[], valuesOf: (row: T) => unknown[]): unknown[][] {
  const values = rows.map(valuesOf);
  const width = values[0]?.length ?? 0;
  return Array.from({ length: width }, (_, column) => values.map((row) => row[column]));
}

function appendValues(leaves: readonly LeafRow[], tiles: readonly TileRow[], size: number): unknown[] {
  return [
    leaves.map((leaf) => leaf.index),
    leaves.map((leaf) => Buffer.from(leaf.hash)),
    leaves.map((leaf) => leaf.kind),
    leaves.map((leaf) => leaf.entryId),
    tiles.map((tile) => tile.level),
    tiles.map((tile) => tile.index),
    tiles.map((tile) => Buffer.from(tile.hashes)),
    size,
  ];
}

function poolOf(options: PostgresConnectionOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectTimeoutMs,
    statement_timeout: options.statementTimeoutMs,
    // A transaction left open by a stalled process must not hold the log's lock for long.
    idle_in_transaction_session_timeout: Math.max(options.statementTimeoutMs, 1000) * 2,
    application_name: "openexec",
    keepAlive: true,
    // Statements of a transaction are sent without waiting for the one before where nothing
    // depends on its answer (PostgresStorage#transactionOnce).
    pipeline: true,
    types,
  });
  // An idle connection the server closed (a restart, a failover) must not crash the process:
  // the pool drops it, and the next checkout opens a new one.
  pool.on("error", (error) => options.onWarning?.(`an idle ledger connection failed: ${error.message}`));
  return pool;
}

/**
 * Opens (creating and migrating) the ledger in PostgreSQL. Migrations, and the
 * first replica's record of the ledger's identity, run in one transaction
 * under an advisory lock; a replica whose receipt key or log origin differs
 * from the ledger's is refused.
 */
export async function openPostgresStorage(
  options: PostgresConnectionOptions,
  identity: LedgerIdentity,
): Promise<PostgresStorage> {
  const pool = poolOf(options);
  try {
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("SELECT pg_advisory_xact_lock($1)", [migrationLockKey]);
      const version = await migratePostgres(client);
      await claimIdentity(client, identity);
      await client.query("COMMIT");
      return new PostgresStorage(pool, version, options);
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
}

/** The ledger's schema version, which must be this build's (no migrations run for readers and operators). */
async function currentSchemaVersion(pool: pg.Pool, use: "reads" | "controls"): Promise<number> {
  const version = await schemaVersionOf(pool);
  if (version !== latestPostgresSchemaVersion) {
    throw new SchemaTooNewError(
      `the ledger has schema version ${version}; this build ${use} version ${latestPostgresSchemaVersion}`,
    );
  }
  return version;
}

/**
 * Opens an existing ledger to read (audit, export) while replicas keep
 * writing: no migrations, only this build's schema, and every read in one
 * REPEATABLE READ READ ONLY transaction, so rows, leaves, tiles and
 * checkpoints are seen as of one moment.
 */
export async function openPostgresStorageReadOnly(options: PostgresConnectionOptions): Promise<PostgresStorage> {
  const pool = poolOf(options);
  try {
    const version = await currentSchemaVersion(pool, "reads");
    const snapshot = await pool.connect();
    // Checked out for the whole run: a lost connection fails the next read, never the process.
    snapshot.on("error", () => undefined);
    try {
      await snapshot.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    } catch (error) {
      snapshot.release(error as Error);
      throw error;
    }
    return new PostgresStorage(pool, version, options, snapshot);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
}

/**
 * Opens an existing ledger for the operator's control commands (openexec
 * freeze): writes only the freezes table, while replicas keep serving. No
 * migrations: only this build's schema.
 */
export async function openPostgresStorageForControl(options: PostgresConnectionOptions): Promise<PostgresStorage> {
  const pool = poolOf(options);
  try {
    const version = await currentSchemaVersion(pool, "controls");
    return new PostgresStorage(pool, version, options);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
}

async function schemaVersionOf(db: Queryable): Promise<number> {
  const table = await db.query<{ name: string | null }>("SELECT to_regclass('schema_migrations')::text AS name");
  if (table.rows[0]?.name === null || table.rows[0]?.name === undefined) return 0;
  const row = await db.query<{ version: number | null }>("SELECT max(version) AS version FROM schema_migrations");
  return row.rows[0]?.version ?? 0;
}

async function migratePostgres(client: pg.PoolClient): Promise<number> {
  await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)`);
  const current = await schemaVersionOf(client);
  if (current > latestPostgresSchemaVersion) {
    throw new SchemaTooNewError(
      `the ledger has schema version ${current}, newer than this build knows (${latestPostgresSchemaVersion}); upgrade OpenExec`,
    );
  }
  for (const migration of postgresMigrations) {
    if (migration.version <= current) continue;
    await client.query(migration.sql);
    await client.query("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)", [
      migration.version,
      migration.name,
      Date.now(),
    ]);
  }
  return latestPostgresSchemaVersion;
}

async function claimIdentity(client: pg.PoolClient, identity: LedgerIdentity): Promise<void> {
  await client.query(
    `INSERT INTO ledger_identity (id, log_origin, receipt_key_id, created_at_ms) VALUES (1, $1, $2, $3)
     ON CONFLICT (id) DO NOTHING`,
    [identity.logOrigin, identity.receiptKeyId, Date.now()],
  );
  const stored = (
    await client.query<{ log_origin: string; receipt_key_id: string }>(
      "SELECT log_origin, receipt_key_id FROM ledger_identity WHERE id = 1",
    )
  ).rows[0];
  if (stored === undefined) throw new LedgerBugError("the ledger's identity row is missing");
  if (stored.receipt_key_id !== identity.receiptKeyId) {
    throw new LedgerIdentityError(
      `this ledger's receipts are signed with receipt key ${stored.receipt_key_id}, not ${identity.receiptKeyId}: ` +
        "every replica must start with the same OPENEXEC_RECEIPT_KEY",
    );
  }
  if (stored.log_origin !== identity.logOrigin) {
    throw new LedgerIdentityError(
      `this ledger's log origin is "${stored.log_origin}", not "${identity.logOrigin}": ` +
        "every replica must start with the same OPENEXEC_LOG_ORIGIN",
    );
  }
  const served = identity.served;
  if (served === undefined) return;
  // A ledger from before schema step 3 adopts the first server's mode and tenant.
  const recorded = (
    await client.query<StoredIdentityColumns>(
      `UPDATE ledger_identity SET mode = coalesce(mode, $1), tenant_id = coalesce(tenant_id, $2) WHERE id = 1
       RETURNING mode, tenant_id`,
      [served.mode, served.tenantId],
    )
  ).rows[0];
  if (recorded === undefined) throw new LedgerBugError("the ledger's identity row is missing");
  checkServedIdentity(recorded, served);
  // For information: the key ring of the server started last (rotation changes it).
  await client.query("UPDATE ledger_identity SET approval_key_ids = $1 WHERE id = 1", [approvalKeyIdsColumn(served)]);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The first statement sent ahead that failed: with `refusedOnly`, only one the
 * server refused (which proves the transaction could not commit), not one
 * lost with the connection.
 */
async function firstRefusal(
  sent: Promise<PromiseSettledResult<unknown>[]>,
  refusedOnly: boolean,
): Promise<unknown | undefined> {
  for (const answer of await sent) {
    if (answer.status === "rejected" && (!refusedOnly || sqlState(answer.reason) !== undefined)) return answer.reason;
  }
  return undefined;
}

/**
 * A COMMIT refused because the server or its connection is going away
 * (operator intervention 57xxx, connection exception 08xxx): the transaction
 * may have committed locally first (e.g. while waiting for a synchronous
 * standby), so its outcome is read back, not assumed.
 */
function commitOutcomeUnknown(error: unknown): boolean {
  const code = sqlState(error) ?? "";
  return code.startsWith("57") || code.startsWith("08");
}
