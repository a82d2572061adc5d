/**
 * The ledger's tables as both SQL adapters read them (SQLite and PostgreSQL
 * share column names and meanings), and their mapping to the ports' rows.
 */
import type { CheckpointRow, DenialRow, ExecutionRow, LeafEntry, LeafRow } from "./ports.js";

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

export function fromExecution(row: ExecutionColumns | undefined): ExecutionRow | undefined {
  if (row === undefined) return undefined;
  return {
    executionId: row.execution_id,
    tenantId: row.tenant_id,
    nonce: row.nonce,
    action: row.action,
    payloadDigest: row.payload_digest,
    approvalId: row.approval_id ?? undefined,
    approvalDigest: row.approval_digest ?? undefined,
    logicalTimeMs: row.logical_time_ms,
    status: row.status,
    leaseOwner: row.lease_owner ?? undefined,
    leaseUntilMs: row.lease_until_ms ?? undefined,
    reason: row.reason ?? undefined,
    resultJson: row.result_json ?? undefined,
    resultDigest: row.result_digest ?? undefined,
    receipt:
      row.receipt === null || row.receipt_digest === null
        ? undefined
        : { body: row.receipt, digest: row.receipt_digest, signature: row.receipt_signature ?? new Uint8Array(0) },
  };
}

export function fromDenial(row: DenialColumns): DenialRow {
  return {
    attemptId: row.attempt_id,
    tenantId: row.tenant_id,
    nonce: row.nonce,
    action: row.action,
    payloadDigest: row.payload_digest,
    approvalDigest: row.approval_digest ?? undefined,
    reason: row.reason,
    logicalTimeMs: row.logical_time_ms,
    receipt: { body: row.receipt, digest: row.receipt_digest, signature: row.receipt_signature ?? new Uint8Array(0) },
  };
}

export function fromCheckpoint(row: CheckpointColumns | undefined): CheckpointRow | undefined {
  return row === undefined ? undefined : { treeSize: row.tree_size, rootHash: row.root_hash, note: row.note };
}

export function fromLeafEntry(row: LeafEntryColumns): LeafEntry {
  return {
    leaf: { index: row.leaf_index, hash: row.leaf_hash, kind: row.entry_kind, entryId: row.entry_id },
    receipt:
      row.receipt === null || row.receipt_digest === null
        ? undefined
        : { body: row.receipt, digest: row.receipt_digest, signature: row.receipt_signature ?? new Uint8Array(0) },
  };
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
