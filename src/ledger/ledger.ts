import { randomUUID } from "node:crypto";
import type { JsonValue } from "@bufbuild/protobuf";
import type { FailureReason, RejectionReason } from "../errors/reason.js";
import type { EncodedReceipt } from "../receipts/receipt.js";
import type { NoteSigner } from "../tlog/checkpoint.js";
import { inclusionPlan, type LeafRange } from "../tlog/proof-plan.js";
import { proofFromTiles } from "../tlog/tiled-tree.js";
import { isStorageFault, LeaseLostError, LedgerBugError, StoreUnavailableError } from "./errors.js";
import type { LedgerWrite, ReservationFacts, WriteOutcome } from "./ledger-write.js";
import type { CheckpointRow, DenialRow, ExecutionRow, LedgerStorage, ReceiptRow } from "./ports.js";
import { LedgerRecorder, type ReceiptIssuer } from "./recorder.js";
import type {
  CommitStats,
  Completion,
  Denial,
  DeniedAttempt,
  ExecutionRecord,
  FinishedExecution,
  Freeze,
  LatestInclusion,
  LedgerStore,
  LogEntry,
  RecordOutcome,
  Reservation,
  ReserveOutcome,
  StoredCheckpoint,
  StoredCounter,
  UnloggedEntry,
} from "./store.js";

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

/** A reservation this process holds, as far as it knows. */
interface HeldLease {
  /** The lease's end as storage last confirmed it: the reservation's, then each renewal's that named it. */
  untilMs: number;
  /** Aborted (LeaseLostError) when the lease is lost; the handler's signal follows it. */
  readonly controller: AbortController;
  /**
   * Due at `untilMs`. A process paused past it (SIGSTOP, a VM freeze) runs its
   * overdue timers in due order when it resumes: this one comes before any
   * handler timer set to end later, so the handler sees its signal aborted.
   */
  timer: NodeJS.Timeout | undefined;
  /** The handler returned and its completion is being written: there is nothing left to fence. */
  done: boolean;
}

/** Without a signer: for tools that only read, and tests of storage alone. */
export const unsignedIssuer: ReceiptIssuer = { signer: undefined, logOrigin: "" };

/**
 * The execution ledger over a storage adapter: writes grouped into one
 * transaction per turn of the event loop (N requests, one commit, one fsync;
 * each answered only after its commit), the recorder deciding what each
 * writes, reads straight from storage, and leases on the reservations this
 * process holds, renewed while their handlers run.
 */
export class Ledger implements LedgerStore {
  /** This process's identity as a lease owner. */
  readonly owner = randomUUID();
  readonly #storage: LedgerStorage;
  /** Restored from storage as the ledger opens; every commit waits for it. */
  readonly #recorder: Promise<LedgerRecorder>;
  readonly #options: LedgerOptions;
  readonly #now: () => number;
  #queue: { write: LedgerWrite; resolve: (outcome: WriteOutcome) => void; reject: (error: unknown) => void }[] = [];
  #flushing: Promise<void> | undefined;
  /** Reservations this process holds, renewed by the lease timer, by execution id. */
  readonly #held = new Map<string, HeldLease>();
  #leaseTimer: NodeJS.Timeout | undefined;
  /** Commits so far, for /metrics. */
  readonly #stats = { commits: 0, writes: 0, seconds: 0 };

  constructor(storage: LedgerStorage, options: LedgerOptions) {
    this.#storage = storage;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#recorder = LedgerRecorder.open(storage, options.issuer);
    // A failure here surfaces at the first write, never as an unhandled rejection.
    this.#recorder.catch(() => undefined);
  }

  get schemaVersion(): number {
    return this.#storage.schemaVersion;
  }

  async reserve(reservation: Reservation): Promise<ReserveOutcome> {
    const leaseUntilMs = this.#now() + this.#options.leaseMs;
    const outcome = await this.#write({
      kind: "reserve",
      reservation: factsOf(reservation),
      leaseOwner: this.owner,
      leaseUntilMs,
    });
    if (outcome.kind === "reserved") {
      const lease: HeldLease = { untilMs: 0, controller: new AbortController(), timer: undefined, done: false };
      this.#held.set(reservation.executionId, lease);
      this.#confirm(reservation.executionId, lease, leaseUntilMs);
    }
    return reserveOutcome(outcome);
  }

  leaseSignal(executionId: string): AbortSignal {
    // Storage only this process can open (SQLite's exclusive lock) has nobody
    // to take a lease over: its reservations are only ever interrupted at the
    // next start, after this process is gone. Its leases cannot be lost.
    if (this.#options.exclusive) return new AbortController().signal;
    const lease = this.#held.get(executionId);
    if (lease === undefined) throw new LedgerBugError(`execution ${executionId} is not reserved by this process`);
    return lease.controller.signal;
  }

  async complete(executionId: string, completion: Completion): Promise<FinishedExecution> {
    const lease = this.#held.get(executionId);
    if (lease !== undefined) {
      // Still renewed until the completion commits, so that no sweep interrupts it meanwhile; never aborted.
      lease.done = true;
      clearTimeout(lease.timer);
    }
    try {
      const outcome = await this.#write({ kind: "complete", executionId, completion });
      // Interrupted by another replica after this one's lease ran out: the recorded outcome stands.
      if (outcome.kind === "existing") return toRecord(outcome.row) as FinishedExecution;
      if (outcome.kind !== "recorded") throw new LedgerBugError(`complete answered ${outcome.kind}`);
      return toRecord(outcome.row) as FinishedExecution;
    } finally {
      this.#held.delete(executionId);
    }
  }

  async reserveAndComplete(reservation: Reservation, completion: Completion): Promise<RecordOutcome> {
    const outcome = await this.#write({ kind: "record", reservation: factsOf(reservation), completion });
    if (outcome.kind === "recorded") return { kind: "recorded", record: toRecord(outcome.row) as FinishedExecution };
    return reserveOutcome(outcome) as RecordOutcome;
  }

  async recordDenial(denial: Denial): Promise<DeniedAttempt> {
    const outcome = await this.#write({
      kind: "deny",
      denial: {
        attemptId: denial.attemptId,
        tenantId: denial.tenantId,
        nonce: denial.nonce,
        action: denial.action,
        payloadDigest: denial.payloadDigest,
        approvalDigest: denial.approvalDigest,
        reason: denial.reason,
        logicalTimeMs: denial.logicalTime.getTime(),
      },
    });
    if (outcome.kind !== "denied") throw new LedgerBugError(`deny answered ${outcome.kind}`);
    return toDenied(outcome.row);
  }

  recoverInterrupted(): Promise<number> {
    return this.interruptExpired(true);
  }

  /**
   * Interrupts (with receipts) the reservations whose lease ran out; at start
   * on exclusive storage, every pending one. Returns how many.
   */
  async interruptExpired(atStart = false): Promise<number> {
    const nowMs = atStart && this.#options.exclusive ? Number.MAX_SAFE_INTEGER : this.#now();
    const limit = 500;
    let total = 0;
    for (;;) {
      const outcome = await this.#write({ kind: "interrupt_expired", nowMs, limit });
      const count = outcome.kind === "interrupted" ? outcome.rows.length : 0;
      total += count;
      if (count < limit) return total;
    }
  }

  /**
   * Renews this process's leases every third of their length, and sweeps
   * expired ones as often. A lease already past its confirmed end when the
   * timer fires (the process was paused, or renewals kept failing) is lost
   * first, before anything is renewed; so is one a renewal does not name.
   */
  startLeases(onError: (error: unknown) => void): void {
    const every = Math.max(50, Math.floor(this.#options.leaseMs / 3));
    this.#leaseTimer = setInterval(() => {
      const nowMs = this.#now();
      const ids: string[] = [];
      for (const [id, lease] of this.#held) {
        if (nowMs >= lease.untilMs) this.#lose(id, lease, "its lease ran out before a renewal confirmed it");
        // A lost lease is not taken back: its handler was told to stop.
        if (lease.done || !lease.controller.signal.aborted) ids.push(id);
      }
      const untilMs = nowMs + this.#options.leaseMs;
      const renewed =
        ids.length === 0
          ? Promise.resolve()
          : this.#write({ kind: "renew", owner: this.owner, executionIds: ids, untilMs }).then((outcome) =>
              this.#renewed(ids, outcome, untilMs),
            );
      renewed.then(() => (this.#options.exclusive ? 0 : this.interruptExpired())).catch(onError);
    }, every);
    this.#leaseTimer.unref();
  }

  /** After a renewal: the ids it names are held until `untilMs`; the others are lost. */
  #renewed(ids: readonly string[], outcome: WriteOutcome, untilMs: number): void {
    if (outcome.kind !== "renewed") throw new LedgerBugError(`a renewal answered ${outcome.kind}`);
    const kept = new Set(outcome.held);
    for (const id of ids) {
      const lease = this.#held.get(id);
      if (lease === undefined) continue; // completed meanwhile
      if (kept.has(id)) this.#confirm(id, lease, untilMs);
      else this.#lose(id, lease, "a renewal found it no longer pending and held by this process");
    }
  }

  /** Storage confirmed the lease until `untilMs`: the deadline timer moves there (or the lease is lost, if past). */
  #confirm(executionId: string, lease: HeldLease, untilMs: number): void {
    lease.untilMs = Math.max(lease.untilMs, untilMs);
    if (this.#options.exclusive || lease.done || lease.controller.signal.aborted) return;
    clearTimeout(lease.timer);
    const check = () => {
      const left = lease.untilMs - this.#now();
      if (left <= 0) {
        this.#lose(executionId, lease, "its lease ran out before a renewal confirmed it");
        return;
      }
      lease.timer = setTimeout(check, left);
      lease.timer.unref();
    };
    check();
  }

  /** Aborts the handler's lease signal: whatever it would do next is no longer this process's to do. */
  #lose(executionId: string, lease: HeldLease, why: string): void {
    if (this.#options.exclusive || lease.done || lease.controller.signal.aborted) return;
    clearTimeout(lease.timer);
    lease.controller.abort(new LeaseLostError(`execution ${executionId}: ${why}`));
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

  async approvalIdOf(executionId: string): Promise<string | undefined> {
    return (await this.#storage.findExecutionById(executionId))?.approvalId;
  }

  logSize(): Promise<number> {
    return this.#storage.logSize();
  }

  readTiles(ids: readonly { readonly level: number; readonly index: number }[]) {
    return this.#storage.readTiles(ids);
  }

  proofHashes(plan: readonly LeafRange[]): Promise<Buffer[]> {
    return proofFromTiles(plan, this.#storage);
  }

  async latestInclusion(logIndex: number): Promise<LatestInclusion> {
    const checkpoint = await this.latestCheckpoint();
    if (checkpoint === undefined || logIndex >= checkpoint.treeSize) return { checkpoint, hashes: undefined };
    return { checkpoint, hashes: await this.proofHashes(inclusionPlan(logIndex, checkpoint.treeSize)) };
  }

  readEntries(start: number, end: number): Promise<Uint8Array[]> {
    return this.#storage.readEntries(start, end);
  }

  async latestCheckpoint(): Promise<StoredCheckpoint | undefined> {
    return toCheckpoint(await this.#storage.latestCheckpoint());
  }

  async checkpointAt(treeSize: number): Promise<StoredCheckpoint | undefined> {
    return toCheckpoint(await this.#storage.checkpointAt(treeSize));
  }

  async checkpoint(signer: NoteSigner, minIntervalMs = 0): Promise<StoredCheckpoint | undefined> {
    while (this.#flushing !== undefined) await this.#flushing;
    const recorder = await this.#recorder;
    return toCheckpoint(await recorder.checkpoint(this.#storage, signer, { minIntervalMs, nowMs: this.#now() }));
  }

  async *logEntries(): AsyncGenerator<LogEntry> {
    for await (const entry of this.#storage.leafEntries()) {
      yield {
        leafIndex: entry.leaf.index,
        leafHash: Buffer.from(entry.leaf.hash),
        kind: entry.leaf.kind,
        entryId: entry.leaf.entryId,
        receipt: entry.receipt === undefined ? undefined : toReceipt(entry.receipt),
      };
    }
  }

  async *checkpoints(): AsyncGenerator<StoredCheckpoint> {
    for await (const row of this.#storage.checkpoints()) yield toCheckpoint(row) as StoredCheckpoint;
  }

  counters(): AsyncIterable<StoredCounter> {
    return this.#storage.counters();
  }

  unloggedEntries(): AsyncIterable<UnloggedEntry> {
    return this.#storage.unloggedEntries();
  }

  freezes(): Promise<Freeze[]> {
    return this.#storage.freezes();
  }

  setFreeze(freeze: Freeze): Promise<void> {
    return this.#storage.setFreeze(freeze);
  }

  clearFreeze(scope: string): Promise<boolean> {
    return this.#storage.clearFreeze(scope);
  }

  check(): Promise<void> {
    return this.#storage.check();
  }

  async commitStats(): Promise<CommitStats> {
    return { ...this.#stats };
  }

  waitForFinish(executionId: string, timeoutMs: number): Promise<void> {
    return (
      this.#storage.waitForFinish?.(executionId, timeoutMs) ?? new Promise((resolve) => setTimeout(resolve, timeoutMs))
    );
  }

  /** Commits what is queued, stops renewing leases, closes the storage. */
  async close(): Promise<void> {
    clearInterval(this.#leaseTimer);
    for (const lease of this.#held.values()) clearTimeout(lease.timer);
    while (this.#flushing !== undefined || this.#queue.length > 0) {
      if (this.#flushing === undefined) this.#flush();
      await this.#flushing;
    }
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
    const started = performance.now();
    this.#flushing = this.#recorder
      .then((recorder) =>
        recorder.commit(
          this.#storage,
          batch.map((item) => item.write),
        ),
      )
      .then(
        (results) => {
          this.#stats.commits += 1;
          this.#stats.writes += batch.length;
          this.#stats.seconds += (performance.now() - started) / 1000;
          batch.forEach((item, i) => {
            const result = results[i];
            if (result?.ok) item.resolve(result.outcome);
            else item.reject(asLedgerError(result?.error));
          });
        },
        (error: unknown) => {
          for (const item of batch) item.reject(asLedgerError(error));
        },
      )
      .finally(() => {
        this.#flushing = undefined;
        if (this.#queue.length > 0) setImmediate(() => this.#flush());
      });
  }
}

/** A write's failure as the types callers switch on: storage faults are unavailability, the rest bugs. */
function asLedgerError(error: unknown): Error {
  if (error instanceof StoreUnavailableError || error instanceof LedgerBugError) return error;
  if (isStorageFault(error)) {
    return new StoreUnavailableError(`ledger write failed: ${(error as Error).message}`, { cause: error });
  }
  return new LedgerBugError(`ledger write failed: ${error instanceof Error ? error.message : String(error)}`, {
    cause: error,
  });
}

function factsOf(reservation: Reservation): ReservationFacts {
  return {
    executionId: reservation.executionId,
    tenantId: reservation.tenantId,
    nonce: reservation.nonce,
    action: reservation.action,
    payloadDigest: reservation.payloadDigest,
    approval: reservation.approval,
    logicalTimeMs: reservation.logicalTime.getTime(),
  };
}

function reserveOutcome(outcome: WriteOutcome): ReserveOutcome {
  switch (outcome.kind) {
    case "reserved":
    case "approval_used":
      return outcome;
    case "existing":
      return { kind: "existing", record: toRecord(outcome.row) };
    default:
      throw new LedgerBugError(`a reservation answered ${outcome.kind}`);
  }
}

function toReceipt(row: ReceiptRow): EncodedReceipt {
  return { body: row.body, digest: Buffer.from(row.digest), signature: row.signature };
}

function toCheckpoint(row: CheckpointRow | undefined): StoredCheckpoint | undefined {
  return row === undefined
    ? undefined
    : { treeSize: row.treeSize, rootHash: Buffer.from(row.rootHash), note: row.note };
}

function toRecord(row: ExecutionRow): ExecutionRecord {
  const base = {
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
    throw new LedgerBugError(`execution ${row.executionId} is finished but has no receipt`);
  const receipt = toReceipt(row.receipt);
  switch (row.status) {
    case "executed": {
      if (row.resultJson === undefined || row.resultDigest === undefined) {
        throw new StoreUnavailableError(`execution ${row.executionId} is executed but has no result`);
      }
      let result: JsonValue;
      try {
        result = JSON.parse(row.resultJson) as JsonValue;
      } catch (error) {
        // Edited outside OpenExec: the ledger cannot serve this row (audit names it).
        throw new StoreUnavailableError(`execution ${row.executionId} holds a result that is not JSON`, {
          cause: error,
        });
      }
      return { ...base, status: "executed", result, resultDigest: Buffer.from(row.resultDigest), receipt };
    }
    case "failed":
      return { ...base, status: "failed", reason: (row.reason ?? "") as FailureReason, receipt };
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
    reason: row.reason as RejectionReason,
    receipt: toReceipt(row.receipt),
  };
}
