import type { JsonValue } from "@bufbuild/protobuf";
import type { FailureReason, RejectionReason } from "../errors/reason.js";
import type { CheckedEffect } from "../execution/run-handler.js";
import type { EncodedReceipt } from "../receipts/receipt.js";

/**
 * The durable ledger: one row per (tenant, nonce), plus the recorded denials.
 * SQLite implements it today; a PostgreSQL store for replicas implements the
 * same interface and must pass the same tests.
 */
export interface LedgerStore {
  /** The schema version after migrations. */
  readonly schemaVersion: number;
  /**
   * Durably reserves the nonce before any handler runs. Returns the existing
   * record instead when (tenant, nonce) is already taken; the caller decides
   * whether that is a replay or a conflict.
   */
  reserve(reservation: Reservation): Promise<ReserveOutcome>;
  /**
   * Finishes a reserved execution: applies the effect (if it executed), writes
   * result and receipt, in one transaction. Returns the finished record.
   */
  complete(executionId: string, completion: Completion): Promise<FinishedExecution>;
  /**
   * reserve and complete in one transaction, for actions whose every effect
   * goes through the ledger (Action.effects === "ledger"): their handler ran
   * without touching anything outside, so there is nothing a separate,
   * earlier reservation could protect.
   */
  reserveAndComplete(reservation: Reservation, completion: Completion): Promise<RecordOutcome>;
  /** The record for (tenant, nonce), if any. */
  find(tenantId: string, nonce: string): Promise<ExecutionRecord | undefined>;
  /** The execution or denied attempt with this id, if any. */
  findById(executionId: string): Promise<ExecutionRecord | DeniedAttempt | undefined>;
  /** Records a refused attempt with its receipt; the nonce stays unused. */
  recordDenial(denial: Denial): Promise<DeniedAttempt>;
  /**
   * Marks every reservation left pending by an earlier process as interrupted,
   * with a receipt, so that it never runs. Called once at start.
   */
  recoverInterrupted(): Promise<number>;
  /** The number of leaves in the transparency log. */
  logSize(): Promise<number>;
  /** Leaf hashes [start, end) of the log, in order. */
  leafHashes(start: number, end: number): Promise<Buffer[]>;
  latestCheckpoint(): Promise<StoredCheckpoint | undefined>;
  checkpointAt(treeSize: number): Promise<StoredCheckpoint | undefined>;
  /** Stores a signed checkpoint; a second one for the same size is ignored. */
  saveCheckpoint(checkpoint: StoredCheckpoint): Promise<void>;
  /** Every log leaf with the receipt it stands for, in index order (for audit and export). */
  logEntries(): AsyncIterable<LogEntry>;
  /** Every stored checkpoint, by tree size. */
  checkpoints(): AsyncIterable<StoredCheckpoint>;
  /** Throws when the store cannot serve requests (readiness). */
  check(): Promise<void>;
  close(): Promise<void>;
  /** The approval id an execution consumed; undefined when none is recorded (or no such execution). For audit. */
  approvalIdOf(executionId: string): Promise<string | undefined>;
  /** Every stored counter, by tenant and key (for audit). */
  counters(): AsyncIterable<StoredCounter>;
  /** Finished executions and denials that no log leaf names, in id order (for audit). */
  unloggedEntries(): AsyncIterable<UnloggedEntry>;
}

/** One row of the counters table. */
export interface StoredCounter {
  readonly tenantId: string;
  readonly key: string;
  readonly value: number;
}

/** A finished execution or a denial with no log leaf. */
export interface UnloggedEntry {
  readonly kind: "execution" | "denial";
  readonly entryId: string;
}

/** What is durably recorded before a handler runs. */
export interface Reservation {
  readonly executionId: string;
  readonly tenantId: string;
  readonly nonce: string;
  readonly action: string;
  /** SHA-256 of the payload's canonical encoding; with `action`, the fingerprint. */
  readonly payloadDigest: Buffer;
  readonly approval: ApprovalUse | undefined;
  readonly logicalTime: Date;
}

/** The approval an execution consumes; its id is single-use per tenant. */
export interface ApprovalUse {
  readonly approvalId: string;
  /** SHA-256 of the approval artifact bytes. */
  readonly digest: Buffer;
}

export type ReserveOutcome =
  | { readonly kind: "reserved" }
  | { readonly kind: "existing"; readonly record: ExecutionRecord }
  /** The approval id was already used by another execution. */
  | { readonly kind: "approval_used" };

export type RecordOutcome =
  | { readonly kind: "recorded"; readonly record: FinishedExecution }
  | Exclude<ReserveOutcome, { kind: "reserved" }>;

/** How a reserved execution ended. */
export type Completion =
  | { readonly kind: "executed"; readonly effect: CheckedEffect }
  | { readonly kind: "failed"; readonly reason: FailureReason };

interface ExecutionBase {
  readonly executionId: string;
  readonly tenantId: string;
  readonly nonce: string;
  readonly action: string;
  readonly payloadDigest: Buffer;
  readonly approvalDigest: Buffer | undefined;
  readonly logicalTime: Date;
}

export type PendingExecution = ExecutionBase & { readonly status: "pending" };

export type FinishedExecution = ExecutionBase &
  (
    | {
        readonly status: "executed";
        readonly result: JsonValue;
        readonly resultDigest: Buffer;
        readonly receipt: EncodedReceipt;
      }
    | {
        readonly status: "failed";
        readonly reason: FailureReason;
        readonly receipt: EncodedReceipt;
      }
    | {
        readonly status: "interrupted";
        readonly receipt: EncodedReceipt;
      }
  );

export type ExecutionRecord = PendingExecution | FinishedExecution;

/**
 * An attempt refused at the boundary (403): recorded with a receipt so that
 * denials are evidence too, but it reserves nothing: a forged request cannot
 * burn the nonce of a legitimate one.
 */
export interface Denial {
  readonly attemptId: string;
  readonly tenantId: string;
  readonly nonce: string;
  readonly action: string;
  readonly payloadDigest: Buffer;
  /** SHA-256 of the approval artifact bytes, when one was sent. */
  readonly approvalDigest: Buffer | undefined;
  readonly reason: RejectionReason;
  readonly logicalTime: Date;
}

export type DeniedAttempt = Omit<ExecutionBase, "executionId"> & {
  readonly executionId: string;
  readonly status: "denied";
  readonly reason: RejectionReason;
  readonly receipt: EncodedReceipt;
};

/** A signed checkpoint of the transparency log at one size. */
export interface StoredCheckpoint {
  readonly treeSize: number;
  readonly rootHash: Buffer;
  /** The C2SP signed note. */
  readonly note: string;
}

/** One leaf of the log and the receipt it should hash. */
export interface LogEntry {
  readonly leafIndex: number;
  readonly leafHash: Buffer;
  readonly kind: "execution" | "denial";
  readonly entryId: string;
  /** Undefined when the row the leaf names is missing or has no receipt. */
  readonly receipt: EncodedReceipt | undefined;
}

/** The store failed (I/O, corruption, lost connection): answered as UNAVAILABLE. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}

/** A failure of the ledger itself (not of the request): answered as UNAVAILABLE everywhere. */
export function isStoreFailure(error: unknown): boolean {
  return error instanceof StoreUnavailableError || (error instanceof Error && error.name === "SqliteError");
}
