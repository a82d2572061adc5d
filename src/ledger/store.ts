import type { JsonValue } from "@bufbuild/protobuf";
import type { FailureReason, RejectionReason } from "../errors/reason.js";
import type { EncodedReceipt } from "../receipts/receipt.js";
import type { NoteSigner } from "../tlog/checkpoint.js";
import type { LeafRange } from "../tlog/proof-plan.js";
import type { LedgerEffect } from "./ledger-write.js";
import type { FreezeRow } from "./ports.js";

export { isStoreFailure, LedgerBugError, StoreUnavailableError } from "./errors.js";

/**
 * The durable ledger as the executor, the log and the verifiers use it: one
 * row per (tenant, nonce), the recorded denials, and the transparency log's
 * leaves, tiles and checkpoints. `Ledger` (src/ledger/ledger.ts) implements it
 * over any storage adapter (ports.ts) that passes the contract suite.
 */
export interface LedgerStore {
  /** The schema version after migrations. */
  readonly schemaVersion: number;
  /**
   * Durably reserves the nonce before an external handler runs, leased to this
   * process. Returns the existing record instead when (tenant, nonce) is taken;
   * the caller decides whether that is a replay or a conflict.
   */
  reserve(reservation: Reservation): Promise<ReserveOutcome>;
  /**
   * Aborts (a LeaseLostError) when this process no longer holds the lease of
   * an execution it reserved: the lease ran out before a renewal confirmed it
   * (a paused process finds out as it resumes, before the handler's own
   * timers run), or a renewal found it finished or interrupted by another
   * replica. Call it after `reserve` answered reserved, before `complete`.
   * Storage no other process can open may answer a signal that never aborts.
   */
  leaseSignal(executionId: string): AbortSignal;
  /** Finishes a reservation this process holds: effect, result and receipt in one transaction. */
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
   * Turns reservations whose lease ran out into interrupted executions, with
   * receipts, so that they never run. At start on storage only this process
   * can hold (SQLite), every pending reservation. Returns how many.
   */
  recoverInterrupted(): Promise<number>;
  /** The number of leaves in the transparency log, as committed. */
  logSize(): Promise<number>;
  /** The newest stored version of each tile (C2SP tlog-tiles); undefined where none is stored. */
  readTiles(ids: readonly { readonly level: number; readonly index: number }[]): Promise<(Uint8Array | undefined)[]>;
  /**
   * The proof elements of `plan` (the MTH of each range) from the stored
   * tiles, computed where the tiles are read: one call per proof, and only
   * the hashes, never the tiles, come back. TileError when a tile is missing.
   */
  proofHashes(plan: readonly LeafRange[]): Promise<Buffer[]>;
  /**
   * The latest checkpoint and, when its tree holds leaf `logIndex`, that
   * leaf's inclusion proof in it: what a receipt's inclusion asks, in one call.
   */
  latestInclusion(logIndex: number): Promise<LatestInclusion>;
  latestCheckpoint(): Promise<StoredCheckpoint | undefined>;
  checkpointAt(treeSize: number): Promise<StoredCheckpoint | undefined>;
  /** The log's entries (receipt bytes) at leaf indices [start, end), in order. */
  readEntries(start: number, end: number): Promise<Uint8Array[]>;
  /**
   * Signs and stores a checkpoint of everything committed, unless the latest
   * covers it, or (replicas) another one is publishing or published less than
   * `minIntervalMs` ago. Returns the latest stored checkpoint either way.
   */
  checkpoint(signer: NoteSigner, minIntervalMs?: number): Promise<StoredCheckpoint | undefined>;
  /** Every log leaf with the receipt it stands for, in index order (for audit and export). */
  logEntries(): AsyncIterable<LogEntry>;
  /** Every stored checkpoint, by tree size. */
  checkpoints(): AsyncIterable<StoredCheckpoint>;
  /** Ledger commits (transactions) so far, the writes they held and the time they took, for /metrics. */
  commitStats(): Promise<CommitStats>;
  /** Every operator freeze in force (openexec freeze), by scope. */
  freezes(): Promise<Freeze[]>;
  /** Sets (or replaces) the freeze of one scope: '*' or an action name. */
  setFreeze(freeze: Freeze): Promise<void>;
  /** Lifts the freeze of one scope; false when there was none. */
  clearFreeze(scope: string): Promise<boolean>;
  /** Throws when the store cannot serve requests (readiness). */
  check(): Promise<void>;
  /**
   * Resolves when this execution may have finished (on any replica), or after
   * `timeoutMs`: a hint to read it again, never an answer by itself.
   */
  waitForFinish(executionId: string, timeoutMs: number): Promise<void>;
  /** Renews this process's leases while their handlers run; `onError` hears about failed renewals. */
  startLeases(onError: (error: unknown) => void): void;
  close(): Promise<void>;
  /** The approval id an execution consumed; undefined when none is recorded (or no such execution). For audit. */
  approvalIdOf(executionId: string): Promise<string | undefined>;
  /** Every stored counter, by tenant and key (for audit). */
  counters(): AsyncIterable<StoredCounter>;
  /** Finished executions and denials that no log leaf names, in id order (for audit). */
  unloggedEntries(): AsyncIterable<UnloggedEntry>;
}

/** Totals since the process started. */
export interface CommitStats {
  readonly commits: number;
  readonly writes: number;
  readonly seconds: number;
}
/** An operator's freeze: every action ('*') or one, refused with 503 frozen until lifted. */
export type Freeze = FreezeRow;

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
  | { readonly kind: "executed"; readonly effect: LedgerEffect }
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

/** The latest checkpoint, and a leaf's inclusion proof in its tree when it holds the leaf. */
export interface LatestInclusion {
  readonly checkpoint: StoredCheckpoint | undefined;
  /** Undefined when there is no checkpoint yet, or it does not cover the leaf. */
  readonly hashes: Buffer[] | undefined;
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
