/**
 * The ledger's tables as both SQL adapters read them (SQLite and PostgreSQL
 * share column names and meanings), and their mapping to the ports' rows.
 */
import { StoredColumnError, type StoredTable } from "./errors.js";
import type { CheckpointRow, DenialRow, ExecutionRow, FreezeRow, LeafEntry, LeafRow } from "./ports.js";

export interface ExecutionColumns {
  execution_id: string;
  tenant_id: string;
  nonce: string;
  action: string;
  payload_digest: Uint8Array;
  approval_id: string | null;
  approval_digest: Uint8Array | null;
  logical_time_ms: number;
  status: ExecutionRow["status"];
  lease_owner: string | null;
  lease_until_ms: number | null;
  reason: string | null;
  result_json: string | null;
  result_digest: Uint8Array | null;
  receipt: Uint8Array | null;
  receipt_digest: Uint8Array | null;
  receipt_signature: Uint8Array | null;
}

export interface DenialColumns {
  attempt_id: string;
  tenant_id: string;
  nonce: string;
  action: string;
  payload_digest: Uint8Array;
  approval_digest: Uint8Array | null;
  reason: string;
  logical_time_ms: number;
  receipt: Uint8Array;
  receipt_digest: Uint8Array;
  receipt_signature: Uint8Array | null;
}

export interface LeafEntryColumns {
  leaf_index: number;
  leaf_hash: Uint8Array;
  entry_kind: LeafRow["kind"];
  entry_id: string;
  receipt: Uint8Array | null;
  receipt_digest: Uint8Array | null;
  receipt_signature: Uint8Array | null;
}

export interface CheckpointColumns {
  tree_size: number;
  root_hash: Uint8Array;
  note: string;
}

/**
 * Every column is checked as it is read back: a ledger edited outside
 * OpenExec (a TEXT where BYTEA belongs, a string where an integer does) is a
 * StoredColumnError naming the table, row and column, never a value of the
 * wrong type passed on to code that trusts it.
 */
class Columns {
  readonly #row: Readonly<Record<string, unknown>>;
  readonly #table: StoredTable;
  readonly #id: string;

  constructor(row: object, table: StoredTable, idColumn: string) {
    this.#row = row as Readonly<Record<string, unknown>>;
    this.#table = table;
    const id = this.#row[idColumn];
    this.#id = typeof id === "string" || typeof id === "number" ? String(id) : "";
  }

  text(column: string): string {
    const value = this.#row[column];
    if (typeof value !== "string") throw this.#wrong(column, "text");
    return value;
  }

  textOrNull(column: string): string | undefined {
    return this.#row[column] === null ? undefined : this.text(column);
  }

  bytes(column: string): Uint8Array {
    const value = this.#row[column];
    if (!(value instanceof Uint8Array)) throw this.#wrong(column, "bytes");
    return value;
  }

  bytesOrNull(column: string): Uint8Array | undefined {
    return this.#row[column] === null ? undefined : this.bytes(column);
  }

  integer(column: string): number {
    const value = this.#row[column];
    if (typeof value !== "number" || !Number.isSafeInteger(value)) throw this.#wrong(column, "a safe integer");
    return value;
  }

  integerOrNull(column: string): number | undefined {
    return this.#row[column] === null ? undefined : this.integer(column);
  }

  oneOf<T extends string>(column: string, values: readonly T[]): T {
    const value = this.#row[column];
    if (typeof value !== "string" || !(values as readonly string[]).includes(value)) {
      throw this.#wrong(column, values.join(" or "));
    }
    return value as T;
  }

  /** The value is not named: it may be anything, of anyone's. */
  #wrong(column: string, expected: string): StoredColumnError {
    const got = this.#row[column];
    const kind = got === null ? "null" : got instanceof Uint8Array ? "bytes" : typeof got;
    return new StoredColumnError(this.#table, this.#id, column, `holds ${kind}, not ${expected}`);
  }
}

const statuses = ["pending", "executed", "failed", "interrupted"] as const satisfies readonly ExecutionRow["status"][];
const entryKinds = ["execution", "denial"] as const satisfies readonly LeafRow["kind"][];

export function fromExecution(row: ExecutionColumns | undefined): ExecutionRow | undefined {
  if (row === undefined) return undefined;
  const c = new Columns(row, "executions", "execution_id");
  const receipt = c.bytesOrNull("receipt");
  const receiptDigest = c.bytesOrNull("receipt_digest");
  const receiptSignature = c.bytesOrNull("receipt_signature");
  return {
    executionId: c.text("execution_id"),
    tenantId: c.text("tenant_id"),
    nonce: c.text("nonce"),
    action: c.text("action"),
    payloadDigest: c.bytes("payload_digest"),
    approvalId: c.textOrNull("approval_id"),
    approvalDigest: c.bytesOrNull("approval_digest"),
    logicalTimeMs: c.integer("logical_time_ms"),
    status: c.oneOf("status", statuses),
    leaseOwner: c.textOrNull("lease_owner"),
    leaseUntilMs: c.integerOrNull("lease_until_ms"),
    reason: c.textOrNull("reason"),
    resultJson: c.textOrNull("result_json"),
    resultDigest: c.bytesOrNull("result_digest"),
    receipt:
      receipt === undefined || receiptDigest === undefined
        ? undefined
        : { body: receipt, digest: receiptDigest, signature: receiptSignature ?? new Uint8Array(0) },
  };
}

export function fromDenial(row: DenialColumns): DenialRow {
  const c = new Columns(row, "denials", "attempt_id");
  return {
    attemptId: c.text("attempt_id"),
    tenantId: c.text("tenant_id"),
    nonce: c.text("nonce"),
    action: c.text("action"),
    payloadDigest: c.bytes("payload_digest"),
    approvalDigest: c.bytesOrNull("approval_digest"),
    reason: c.text("reason"),
    logicalTimeMs: c.integer("logical_time_ms"),
    receipt: {
      body: c.bytes("receipt"),
      digest: c.bytes("receipt_digest"),
      signature: c.bytesOrNull("receipt_signature") ?? new Uint8Array(0),
    },
  };
}

export function fromCheckpoint(row: CheckpointColumns | undefined): CheckpointRow | undefined {
  if (row === undefined) return undefined;
  const c = new Columns(row, "checkpoints", "tree_size");
  return { treeSize: c.integer("tree_size"), rootHash: c.bytes("root_hash"), note: c.text("note") };
}

/** A leaf and the receipt columns of the row it names (checked as that row's: executions or denials). */
export function fromLeafEntry(row: LeafEntryColumns): LeafEntry {
  const leafColumns = new Columns(row, "log_leaves", "leaf_index");
  const kind = leafColumns.oneOf("entry_kind", entryKinds);
  const entryId = leafColumns.text("entry_id");
  const c = new Columns({ ...row, id: entryId }, kind === "execution" ? "executions" : "denials", "id");
  const receipt = c.bytesOrNull("receipt");
  const receiptDigest = c.bytesOrNull("receipt_digest");
  const receiptSignature = c.bytesOrNull("receipt_signature");
  return {
    leaf: { index: leafColumns.integer("leaf_index"), hash: leafColumns.bytes("leaf_hash"), kind, entryId },
    receipt:
      receipt === undefined || receiptDigest === undefined
        ? undefined
        : { body: receipt, digest: receiptDigest, signature: receiptSignature ?? new Uint8Array(0) },
  };
}

export interface CounterColumns {
  tenant_id: string;
  key: string;
  value: number;
}

export function fromCounter(row: CounterColumns): { tenantId: string; key: string; value: number } {
  const c = new Columns({ ...row, id: `${String(row.tenant_id)}/${String(row.key)}` }, "counters", "id");
  return { tenantId: c.text("tenant_id"), key: c.text("key"), value: c.integer("value") };
}

export interface FreezeColumns {
  scope: string;
  reason: string;
  frozen_at_ms: number;
}

export function fromFreeze(row: FreezeColumns): FreezeRow {
  const c = new Columns(row, "freezes", "scope");
  return { scope: c.text("scope"), reason: c.text("reason"), frozenAtMs: c.integer("frozen_at_ms") };
}

/** Leaves (`l`) with the receipt of the row each names (none when that row is missing); callers add WHERE and ORDER BY. */
export const leafEntriesSelect = `
  SELECT l.leaf_index, l.leaf_hash, l.entry_kind, l.entry_id,
    coalesce(e.receipt, d.receipt) AS receipt,
    coalesce(e.receipt_digest, d.receipt_digest) AS receipt_digest,
    coalesce(e.receipt_signature, d.receipt_signature) AS receipt_signature
  FROM log_leaves l
  LEFT JOIN executions e ON l.entry_kind = 'execution' AND e.execution_id = l.entry_id
  LEFT JOIN denials d ON l.entry_kind = 'denial' AND d.attempt_id = l.entry_id`;

/** Finished executions and denials that no leaf names. */
export const unloggedEntriesSql = `
  SELECT 'execution' AS kind, execution_id AS entry_id FROM executions e
    WHERE status <> 'pending' AND NOT EXISTS (SELECT 1 FROM log_leaves l
      WHERE l.entry_kind = 'execution' AND l.entry_id = e.execution_id)
  UNION ALL
  SELECT 'denial' AS kind, attempt_id AS entry_id FROM denials d
    WHERE NOT EXISTS (SELECT 1 FROM log_leaves l WHERE l.entry_kind = 'denial' AND l.entry_id = d.attempt_id)
  ORDER BY kind, entry_id`;
