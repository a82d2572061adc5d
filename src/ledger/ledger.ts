import { randomUUID } from "node:crypto";
import type { JsonValue } from "@bufbuild/protobuf";
import type { NoteSigner } from "../receipts/checkpoint.js";
import type { EncodedReceipt } from "../receipts/receipt.js";
import type { TileReader } from "../tlog/tiled-tree.js";
import type { CheckpointRow, DenialRow, ExecutionRow, LedgerStorage, ReceiptRow } from "./ports.js";
import { StoreFailure } from "./ports.js";
import {
  type DenialFacts,
  type LedgerCompletion,
  LedgerRecorder,
  type LedgerWrite,
  type ReceiptIssuer,
  type ReservationFacts,
  type WriteOutcome,
} from "./recorder.js";

/** How an execution's nonce was settled by a write. */
export type ReserveOutcome =
  | { readonly kind: "reserved" }
  | { readonly kind: "existing"; readonly record: ExecutionRecord }
  | { readonly kind: "approval_used" };

export type RecordOutcome =
  | { readonly kind: "recorded"; readonly record: FinishedExecution }
  | Exclude<ReserveOutcome, { kind: "reserved" }>;

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
        /** The stored result as JSON text; `result` parses it, and callers check it against `resultDigest`. */
        readonly resultJson: string;
        readonly result: JsonValue;
        readonly resultDigest: Buffer;
        readonly receipt: EncodedReceipt;
      }
    | { readonly status: "failed"; readonly reason: string; readonly receipt: EncodedReceipt }
    | { readonly status: "interrupted"; readonly receipt: EncodedReceipt }
  );

export type ExecutionRecord = PendingExecution | FinishedExecution;

export type DeniedAttempt = ExecutionBase & {
  readonly status: "denied";
  readonly reason: string;
  readonly receipt: EncodedReceipt;
};

export interface LedgerOptions {
  readonly issuer: ReceiptIssuer;
  /** How long a reservation stays this process's without renewal. */
  readonly leaseMs: number;
  /**
   * True when no other process can hold a lease on this storage (SQLite's
   * exclusive lock): every pending row found at start is then a dead
   * process's, and is interrupted at once rather than when its lease runs out.
   */
  readonly exclusive: boolean;
  readonly now?: () => number;
}

/**
 * The execution ledger as the executor, the log and the verifiers use it:
 * writes grouped into one transaction per turn of the event loop (N requests,
 * one commit, one fsync; each answered only after its commit), the recorder
 * deciding what each writes, reads straight from storage, and leases on the
 * reservations this process holds, renewed while their handlers run.
 */
export class Ledger implements TileReader {
  /** This process's identity as a lease owner. */
  readonly owner = randomUUID();
  readonly #storage: LedgerStorage;
  readonly #recorder: LedgerRecorder;
  readonly #options: LedgerOptions;
  readonly #now: () => number;
  #queue: { write: LedgerWrite; resolve: (outcome: WriteOutcome) => void; reject: (error: unknown) => void }[] = [];
  #flushing: Promise<void> | undefined;
  /** Reservations this process holds, renewed by the lease timer. */
  readonly #held = new Set<string>();
  #leaseTimer: NodeJS.Timeout | undefined;

  private constructor(storage: LedgerStorage, recorder: LedgerRecorder, options: LedgerOptions) {
    this.#storage = storage;
    this.#recorder = recorder;
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  static async open(storage: LedgerStorage, options: LedgerOptions): Promise<Ledger> {
    return new Ledger(storage, await LedgerRecorder.open(storage, options.issuer), options);
  }

  get schemaVersion(): number {
    return this.#storage.schemaVersion;
  }

  /** Durably reserves the nonce before an external handler runs; the lease is this process's. */
  async reserve(reservation: ReservationFacts): Promise<ReserveOutcome> {
    const outcome = await this.#write({
      kind: "reserve",
      reservation,
      leaseOwner: this.owner,
      leaseUntilMs: this.#now() + this.#options.leaseMs,
    });
    if (outcome.kind === "reserved") this.#held.add(reservation.executionId);
    return reserveOutcome(outcome);
  }

  /** Finishes a reservation this process holds: effect, result and receipt in one transaction. */
  async complete(executionId: string, completion: LedgerCompletion): Promise<FinishedExecution> {
    try {
      const outcome = await this.#write({ kind: "complete", executionId, completion });
      if (outcome.kind !== "recorded") throw new StoreFailure("bug", `unexpected outcome ${outcome.kind}`);
      return toRecord(outcome.row) as FinishedExecution;
    } finally {
      this.#held.delete(executionId);
    }
  }

  /** Reserves and finishes in one transaction (actions whose every effect goes through the ledger). */
  async reserveAndComplete(reservation: ReservationFacts, completion: LedgerCompletion): Promise<RecordOutcome> {
    const outcome = await this.#write({ kind: "record", reservation, completion });
    if (outcome.kind === "recorded") return { kind: "recorded", record: toRecord(outcome.row) as FinishedExecution };
    return reserveOutcome(outcome) as RecordOutcome;
  }

  async recordDenial(denial: DenialFacts): Promise<DeniedAttempt> {
    const outcome = await this.#write({ kind: "deny", denial });
    if (outcome.kind !== "denied") throw new StoreFailure("bug", `unexpected outcome ${outcome.kind}`);
    return toDenied(outcome.row);
  }

  /**
   * Interrupts (with receipts) the reservations whose lease ran out; on
   * exclusive storage, at start, every pending one. Returns how many.
   */
  async interruptExpired(atStart = false): Promise<number> {
    const nowMs = atStart && this.#options.exclusive ? Number.MAX_SAFE_INTEGER : this.#now();
    let total = 0;
    for (;;) {
      const outcome = await this.#write({ kind: "interrupt_expired", nowMs, limit: 500 });
      const count = outcome.kind === "interrupted" ? outcome.rows.length : 0;
      total += count;
      if (count < 500) return total;
    }
  }

  /** Renews this process's leases every third of their length, and sweeps others' expired ones as often. */
  startLeases(onError: (error: unknown) => void): void {
    const every = Math.max(50, Math.floor(this.#options.leaseMs / 3));
    this.#leaseTimer = setInterval(() => {
      const ids = [...this.#held];
      const renew = ids.length === 0 ? Promise.resolve() : this.#renew(ids);
      renew.then(() => this.interruptExpired()).catch(onError);
    }, every);
    this.#leaseTimer.unref();
  }

  async #renew(ids: string[]): Promise<void> {
    await this.#write({
      kind: "renew",
      owner: this.owner,
      executionIds: ids,
      untilMs: this.#now() + this.#options.leaseMs,
    });
  }

  async find(tenantId: string, nonce: string): Promise<ExecutionRecord | undefined> {
    const row = await this.#storage.findExecution(tenantId, nonce);
    return row === undefined ? undefined : toRecord(row);
  }

  async findById(executionId: string): Promise<ExecutionRecord | DeniedAttempt | undefined> {
    const row = await this.#storage.findExecutionById(executionId);
    if (row !== undefined) return toRecord(row);
    const denial = await this.#storage.findDenialById(executionId);
    return denial === undefined ? undefined : toDenied(denial);
  }

  /** The approval id an execution consumed (for audit). */
  async approvalIdOf(executionId: string): Promise<string | undefined> {
    return (await this.#storage.findExecutionById(executionId))?.approvalId;
  }

  logSize(): Promise<number> {
    return this.#storage.logSize();
  }

  readTiles(ids: readonly { readonly level: number; readonly index: number }[]) {
    return this.#storage.readTiles(ids);
  }

  latestCheckpoint(): Promise<CheckpointRow | undefined> {
    return this.#storage.latestCheckpoint();
  }

  checkpointAt(treeSize: number): Promise<CheckpointRow | undefined> {
    return this.#storage.checkpointAt(treeSize);
  }

  /** Signs a checkpoint of everything committed, unless the latest one covers it (timer and shutdown only). */
  async checkpoint(signer: NoteSigner): Promise<CheckpointRow> {
    await this.#flushing;
    return this.#recorder.checkpoint(this.#storage, signer);
  }

  /** The storage, for whole-ledger scans (audit, export). */
  get scanner(): LedgerStorage {
    return this.#storage;
  }

  check(): Promise<void> {
    return this.#storage.check();
  }

  /** Commits what is queued, stops renewing leases, closes the storage. */
  async close(): Promise<void> {
    clearInterval(this.#leaseTimer);
    while (this.#flushing !== undefined) await this.#flushing;
    await this.#storage.close();
  }

  #write(write: LedgerWrite): Promise<WriteOutcome> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ write, resolve, reject });
      if (this.#queue.length === 1 && this.#flushing === undefined) setImmediate(() => this.#flush());
    });
  }

  /** One batch at a time: what queued while a commit ran goes into the next one. */
  #flush(): void {
    if (this.#flushing !== undefined || this.#queue.length === 0) return;
    const batch = this.#queue;
    this.#queue = [];
    this.#flushing = this.#recorder
      .commit(
        this.#storage,
        batch.map((item) => item.write),
      )
      .then(
        (results) => {
          batch.forEach((item, i) => {
            const result = results[i];
            if (result?.ok) item.resolve(result.outcome);
            else item.reject(result?.error ?? new StoreFailure("bug", "no result for a write"));
          });
        },
        (error: unknown) => {
          for (const item of batch) item.reject(error);
        },
      )
      .finally(() => {
        this.#flushing = undefined;
        if (this.#queue.length > 0) setImmediate(() => this.#flush());
      });
  }
}

function reserveOutcome(outcome: WriteOutcome): ReserveOutcome {
  switch (outcome.kind) {
    case "reserved":
    case "approval_used":
      return outcome;
    case "existing":
      return { kind: "existing", record: toRecord(outcome.row) };
    default:
      throw new StoreFailure("bug", `unexpected outcome ${outcome.kind}`);
  }
}

function toReceipt(row: ReceiptRow): EncodedReceipt {
  return { body: row.body, digest: Buffer.from(row.digest), signature: row.signature };
}

function toRecord(row: ExecutionRow): ExecutionRecord {
  const base: ExecutionBase = {
    executionId: row.executionId,
    tenantId: row.tenantId,
    nonce: row.nonce,
    action: row.action,
    payloadDigest: Buffer.from(row.payloadDigest),
    approvalDigest: row.approvalDigest === undefined ? undefined : Buffer.from(row.approvalDigest),
    logicalTime: new Date(row.logicalTimeMs),
  };
  if (row.status === "pending") return { ...base, status: "pending" };
  if (row.receipt === undefined)
    throw new StoreFailure("bug", `execution ${row.executionId} is finished but has no receipt`);
  const receipt = toReceipt(row.receipt);
  switch (row.status) {
    case "executed": {
      if (row.resultJson === undefined || row.resultDigest === undefined) {
        throw new StoreFailure("bug", `execution ${row.executionId} is executed but has no result`);
      }
      let result: JsonValue;
      try {
        result = JSON.parse(row.resultJson) as JsonValue;
      } catch (error) {
        throw new StoreFailure("bug", `execution ${row.executionId} holds a result that is not JSON`, { cause: error });
      }
      return {
        ...base,
        status: "executed",
        resultJson: row.resultJson,
        result,
        resultDigest: Buffer.from(row.resultDigest),
        receipt,
      };
    }
    case "failed":
      return { ...base, status: "failed", reason: row.reason ?? "", receipt };
    case "interrupted":
      return { ...base, status: "interrupted", receipt };
  }
}

function toDenied(row: DenialRow): DeniedAttempt {
  return {
    executionId: row.attemptId,
    tenantId: row.tenantId,
    nonce: row.nonce,
    action: row.action,
    payloadDigest: Buffer.from(row.payloadDigest),
    approvalDigest: row.approvalDigest === undefined ? undefined : Buffer.from(row.approvalDigest),
    logicalTime: new Date(row.logicalTimeMs),
    status: "denied",
    reason: row.reason,
    receipt: toReceipt(row.receipt),
  };
}
