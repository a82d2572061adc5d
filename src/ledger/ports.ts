/**
 * What the ledger domain needs from storage, and nothing more: plain rows in,
 * plain rows out, inside one transaction. An adapter (SQLite, PostgreSQL)
 * persists and reads; it never signs, computes an effect or picks a log index
 * (the recorder does, src/ledger/recorder.ts). Rows hold only Uint8Array,
 * strings and numbers, so an adapter can live in a worker thread or behind a
 * network connection. Every adapter passes the same contract suite
 * (test/ledger-contract.ts).
 */

/** A receipt as stored: its exact bytes, their SHA-256, and the executor's signature over them. */
export interface ReceiptRow {
  readonly body: Uint8Array;
  readonly digest: Uint8Array;
  readonly signature: Uint8Array;
}

export type ExecutionStatusName = "pending" | "executed" | "failed" | "interrupted";

/** One row per (tenant, nonce): the execution that owns the nonce. */
export interface ExecutionRow {
  readonly executionId: string;
  readonly tenantId: string;
  readonly nonce: string;
  readonly action: string;
  readonly payloadDigest: Uint8Array;
  /** The consumed approval's id (single use per tenant) and digest; undefined in demo mode. */
  readonly approvalId: string | undefined;
  readonly approvalDigest: Uint8Array | undefined;
  readonly logicalTimeMs: number;
  readonly status: ExecutionStatusName;
  /** pending: the process instance running it, and until when its lease holds. */
  readonly leaseOwner: string | undefined;
  readonly leaseUntilMs: number | undefined;
  /** failed, interrupted: the reason code. */
  readonly reason: string | undefined;
  /** executed: the result as JSON text, and the SHA-256 of its canonical encoding. */
  readonly resultJson: string | undefined;
  readonly resultDigest: Uint8Array | undefined;
  /** Every finished row has one. */
  readonly receipt: ReceiptRow | undefined;
}

/** How a pending row is finished. */
export interface ExecutionFinish {
  readonly status: Exclude<ExecutionStatusName, "pending">;
  readonly reason: string | undefined;
  readonly resultJson: string | undefined;
  readonly resultDigest: Uint8Array | undefined;
  readonly receipt: ReceiptRow;
}

/** A refused attempt: evidence, but it reserves nothing. */
export interface DenialRow {
  readonly attemptId: string;
  readonly tenantId: string;
  readonly nonce: string;
  readonly action: string;
  readonly payloadDigest: Uint8Array;
  readonly approvalDigest: Uint8Array | undefined;
  readonly reason: string;
  readonly logicalTimeMs: number;
  readonly receipt: ReceiptRow;
}

/** One leaf of the transparency log: the hash of a receipt, and the row it stands for. */
export interface LeafRow {
  readonly index: number;
  readonly hash: Uint8Array;
  readonly kind: "execution" | "denial";
  readonly entryId: string;
}

/** A tile of the log's tree (C2SP tlog-tiles): `hashes` is width * 32 bytes, the newest version. */
export interface TileRow {
  readonly level: number;
  readonly index: number;
  readonly hashes: Uint8Array;
}

/** A signed checkpoint (C2SP signed note) of the tree at one size. */
export interface CheckpointRow {
  readonly treeSize: number;
  readonly rootHash: Uint8Array;
  readonly note: string;
}

/** The execution ledger inside a transaction: executions, leases, effects, denials. */
/** A (tenant, nonce) key: the one execution that may hold it. */
export interface ExecutionKey {
  readonly tenantId: string;
  readonly nonce: string;
}

/** A consumed approval id: single use per tenant. */
export interface ApprovalKey {
  readonly tenantId: string;
  readonly approvalId: string;
}

/** A counter of a tenant, and its value where one is read or written. */
export interface CounterKey {
  readonly tenantId: string;
  readonly key: string;
}
export interface CounterRow extends CounterKey {
  readonly value: number;
}

/**
 * The execution ledger inside a transaction: executions, leases, effects,
 * denials. Every method takes many rows at once, so that a batch of writes
 * costs a few statements whatever its size (a round trip each, on
 * PostgreSQL); the recorder calls them with one row where it must.
 */
export interface ExecutionLedgerWrites {
  /** The rows holding these keys (those that exist, in any order). */
  findExecutions(keys: readonly ExecutionKey[]): Promise<ExecutionRow[]>;
  /** The rows with these ids (those that exist, in any order). */
  findExecutionsById(executionIds: readonly string[]): Promise<ExecutionRow[]>;
  /** Which of these approval ids an execution already consumed. */
  usedApprovals(approvals: readonly ApprovalKey[]): Promise<ApprovalKey[]>;
  /** Inserts new rows, skipping any whose id, (tenant, nonce) or approval id is taken; returns how many were inserted. */
  insertExecutions(rows: readonly ExecutionRow[]): Promise<number>;
  /** Finishes pending rows (rows not pending are left alone); returns how many were finished. */
  finishExecutions(
    finishes: readonly { readonly executionId: string; readonly finish: ExecutionFinish }[],
  ): Promise<number>;
  /**
   * Extends the leases `owner` holds on these pending rows; returns the ids it
   * still holds (renewed), in any order. An id left out is lost: finished, or
   * interrupted by another process once its lease ran out.
   */
  renewLeases(owner: string, executionIds: readonly string[], untilMs: number): Promise<string[]>;
  /** Pending rows whose lease ran out before `nowMs` (oldest first, at most `limit`). */
  expiredReservations(nowMs: number, limit: number): Promise<ExecutionRow[]>;
  /** The counters that exist among these (in any order). */
  readCounters(keys: readonly CounterKey[]): Promise<CounterRow[]>;
  /** Sets these counters, creating those that do not exist. */
  writeCounters(rows: readonly CounterRow[]): Promise<void>;
  insertDenials(rows: readonly DenialRow[]): Promise<void>;
}

/** The log's storage inside a transaction: its size, leaves, tiles and checkpoints. */
export interface LogStorageWrites {
  /**
   * The log's size as last committed, locking the log's state until this
   * transaction ends where replicas share it: the next leaf indices are this
   * transaction's to assign, gap-free. Taken first in every write batch, so
   * that writers queue on one lock and never wait on each other's rows.
   */
  lockLog(): Promise<number>;
  /** The log's size as last committed, without locking it. */
  readLogSize(): Promise<number>;
  /**
   * Claims the right to sign the next checkpoint: false when another replica
   * is publishing now (the lock is taken: skipped, not waited for, unless
   * `minIntervalMs` is 0) or published less than `minIntervalMs` ago. Held
   * until this transaction ends; a claim that signs records `nowMs`.
   */
  claimPublication(nowMs: number, minIntervalMs: number): Promise<boolean>;
  latestCheckpoint(): Promise<CheckpointRow | undefined>;
  /** Stored tiles, as LogStorageReads.readTiles, inside this transaction. */
  readTiles(ids: readonly { readonly level: number; readonly index: number }[]): Promise<(Uint8Array | undefined)[]>;
  /** Appends leaves (their indices continue the log) and the tiles they changed; records the new size. */
  appendLog(leaves: readonly LeafRow[], tiles: readonly TileRow[], size: number): Promise<void>;
  insertCheckpoint(row: CheckpointRow): Promise<void>;
}

/**
 * One transaction on both ports. Everything written through it commits
 * together or not at all (an execution, its effect and its leaf); `savepoint`
 * scopes one write so that its failure undoes only its own rows (group
 * commit: one bad write never takes its batch neighbours with it).
 */
export interface LedgerTransaction extends ExecutionLedgerWrites, LogStorageWrites {
  savepoint<T>(write: () => Promise<T>): Promise<T>;
}

/** Reads of the execution ledger: what replays and verification ask. */
export interface ExecutionLedgerReads {
  findExecution(tenantId: string, nonce: string): Promise<ExecutionRow | undefined>;
  findExecutionById(executionId: string): Promise<ExecutionRow | undefined>;
  findDenialById(attemptId: string): Promise<DenialRow | undefined>;
}

/** Reads of the log: what proofs, tiles and entry bundles ask. */
export interface LogStorageReads {
  logSize(): Promise<number>;
  /** The newest stored version of each tile; undefined where none is stored. */
  readTiles(ids: readonly { readonly level: number; readonly index: number }[]): Promise<(Uint8Array | undefined)[]>;
  latestCheckpoint(): Promise<CheckpointRow | undefined>;
  checkpointAt(treeSize: number): Promise<CheckpointRow | undefined>;
  /** The log's entries (receipt bytes) at leaf indices [start, end), in order. */
  readEntries(start: number, end: number): Promise<Uint8Array[]>;
}

/** Reads that need no transaction. */
export interface LedgerReader extends ExecutionLedgerReads, LogStorageReads {}

/** One leaf of the log with the receipt of the row it names (undefined when that row is missing). */
export interface LeafEntry {
  readonly leaf: LeafRow;
  readonly receipt: ReceiptRow | undefined;
}

/** Whole-ledger reads, in order, for audit and export. */
export interface LedgerScanner {
  /** Every leaf in index order, with its row's receipt. */
  leafEntries(): AsyncIterable<LeafEntry>;
  /** Every checkpoint by tree size. */
  checkpoints(): AsyncIterable<CheckpointRow>;
  /** Every counter, by tenant and key. */
  counters(): AsyncIterable<{ readonly tenantId: string; readonly key: string; readonly value: number }>;
  /** Finished executions and denials that no leaf names. */
  unloggedEntries(): AsyncIterable<{ readonly kind: LeafRow["kind"]; readonly entryId: string }>;
}

/** An operator's freeze (openexec freeze): '*' or an action name, why, and since when. */
export interface FreezeRow {
  readonly scope: string;
  readonly reason: string;
  readonly frozenAtMs: number;
}

/** The freezes table: the operator's kill switch, outside every execution transaction. */
export interface FreezeStorage {
  /** Every freeze in force, by scope. */
  freezes(): Promise<FreezeRow[]>;
  /** Sets (or replaces) the freeze of one scope. */
  setFreeze(freeze: FreezeRow): Promise<void>;
  /** Lifts the freeze of one scope; false when there was none. */
  clearFreeze(scope: string): Promise<boolean>;
}

/** A ledger storage adapter: transactions, reads, readiness and lifecycle. */
export interface LedgerStorage extends LedgerReader, LedgerScanner, FreezeStorage {
  readonly schemaVersion: number;
  /** Runs `work` in one transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(work: (tx: LedgerTransaction) => Promise<T>): Promise<T>;
  /**
   * Where other processes write too (PostgreSQL): resolves when `executionId`
   * is finished by any of them, or after `timeoutMs`. Absent: the ledger polls.
   */
  waitForFinish?(executionId: string, timeoutMs: number): Promise<void>;
  /** Throws StoreUnavailableError when the storage cannot serve (readiness). */
  check(): Promise<void>;
  close(): Promise<void>;
}
