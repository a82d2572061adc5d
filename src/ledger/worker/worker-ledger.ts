import { Worker } from "node:worker_threads";
import type { NoteSigner } from "../../tlog/checkpoint.js";
import type { LeafRange } from "../../tlog/proof-plan.js";
import { StoreUnavailableError } from "../errors.js";
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
} from "../store.js";
import {
  asBuffer,
  deserializeError,
  rebuildCheckpoint,
  rebuildRecord,
  TurnBatcher,
  type WorkerCall,
  type WorkerMessage,
  type WorkerStart,
} from "./protocol.js";

export interface WorkerLedgerHooks {
  /** The ledger file went away, or is open to others. */
  readonly onWarning: (message: string) => void;
}

/**
 * The ledger as the main thread sees it: every call is a message to the
 * writer thread (src/ledger/worker/ledger-worker.ts), which owns the SQLite
 * connection, the group commit and signing. Answers still come only after
 * their commit; nothing on the main thread touches the disk.
 */
export class WorkerLedger implements LedgerStore {
  readonly schemaVersion: number;
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  /** The calls of this turn of the event loop, posted together at its end. */
  readonly #calls: TurnBatcher<WorkerCall>;
  #nextId = 0;
  #leaseError: ((error: unknown) => void) | undefined;
  /** Set when the writer thread died: every later call fails with it. */
  #dead: StoreUnavailableError | undefined;

  private constructor(worker: Worker, schemaVersion: number, hooks: WorkerLedgerHooks) {
    this.#worker = worker;
    this.schemaVersion = schemaVersion;
    this.#calls = new TurnBatcher((calls) => {
      if (this.#dead === undefined) worker.postMessage(calls);
    });
    worker.on("message", (message: WorkerMessage) => {
      switch (message.kind) {
        case "answers":
          for (const answer of message.answers) {
            if (answer.kind === "result") this.#settle(answer.id, (p) => p.resolve(answer.value));
            else this.#settle(answer.id, (p) => p.reject(deserializeError(answer.error)));
          }
          break;
        case "warning":
          hooks.onWarning(message.message);
          break;
        case "lease_error":
          this.#leaseError?.(deserializeError(message.error));
          break;
      }
    });
    worker.on("error", (error) => this.#die(error));
    worker.on("exit", (code) => this.#die(new Error(`the ledger's writer thread exited (${code})`)));
  }

  /**
   * Starts the writer thread on the ledger file; rejects with its error when
   * the ledger cannot be opened. Warnings posted while it opens (a ledger open
   * to group or others) are passed on, not taken for an answer.
   */
  static start(start: WorkerStart, hooks: WorkerLedgerHooks): Promise<WorkerLedger> {
    const worker = spawnWriter(start);
    return new Promise((resolve, reject) => {
      const onExit = (code: number) =>
        reject(new Error(`the ledger's writer thread exited (${code}) before it was ready`));
      const onMessage = (message: WorkerMessage) => {
        if (message.kind === "warning") {
          hooks.onWarning(message.message);
          return;
        }
        worker.off("message", onMessage);
        worker.off("error", reject);
        worker.off("exit", onExit);
        if (message.kind === "ready") resolve(new WorkerLedger(worker, message.schemaVersion, hooks));
        else {
          void worker.terminate();
          reject(
            message.kind === "failed"
              ? deserializeError(message.error)
              : new Error(`unexpected first message from the ledger's writer thread: ${message.kind}`),
          );
        }
      };
      worker.once("error", reject);
      worker.once("exit", onExit);
      worker.on("message", onMessage);
    });
  }

  async reserve(reservation: Reservation): Promise<ReserveOutcome> {
    const outcome = (await this.#call("reserve", reservation)) as ReserveOutcome;
    return outcome.kind === "existing" ? { ...outcome, record: rebuildRecord(outcome.record) } : outcome;
  }

  async complete(executionId: string, completion: Completion): Promise<FinishedExecution> {
    return rebuildRecord((await this.#call("complete", executionId, completion)) as FinishedExecution);
  }

  async reserveAndComplete(reservation: Reservation, completion: Completion): Promise<RecordOutcome> {
    const outcome = (await this.#call("reserveAndComplete", reservation, completion)) as RecordOutcome;
    if (outcome.kind === "recorded" || outcome.kind === "existing") {
      return { ...outcome, record: rebuildRecord(outcome.record) } as RecordOutcome;
    }
    return outcome;
  }

  async recordDenial(denial: Denial): Promise<DeniedAttempt> {
    return rebuildRecord((await this.#call("recordDenial", denial)) as DeniedAttempt);
  }

  async recoverInterrupted(): Promise<number> {
    return (await this.#call("recoverInterrupted")) as number;
  }

  async find(tenantId: string, nonce: string): Promise<ExecutionRecord | undefined> {
    return rebuildRecord((await this.#call("find", tenantId, nonce)) as ExecutionRecord | undefined);
  }

  async findById(executionId: string): Promise<ExecutionRecord | DeniedAttempt | undefined> {
    return rebuildRecord((await this.#call("findById", executionId)) as ExecutionRecord | DeniedAttempt | undefined);
  }

  async approvalIdOf(executionId: string): Promise<string | undefined> {
    return (await this.#call("approvalIdOf", executionId)) as string | undefined;
  }

  async logSize(): Promise<number> {
    return (await this.#call("logSize")) as number;
  }

  async readTiles(ids: readonly { readonly level: number; readonly index: number }[]) {
    return (await this.#call("readTiles", ids)) as (Uint8Array | undefined)[];
  }

  async proofHashes(plan: readonly LeafRange[]): Promise<Buffer[]> {
    return ((await this.#call("proofHashes", plan)) as Uint8Array[]).map(asBuffer);
  }

  async latestInclusion(logIndex: number): Promise<LatestInclusion> {
    const answer = (await this.#call("latestInclusion", logIndex)) as LatestInclusion;
    return { checkpoint: rebuildCheckpoint(answer.checkpoint), hashes: answer.hashes?.map(asBuffer) };
  }

  async readEntries(start: number, end: number): Promise<Uint8Array[]> {
    return (await this.#call("readEntries", start, end)) as Uint8Array[];
  }

  async latestCheckpoint(): Promise<StoredCheckpoint | undefined> {
    return rebuildCheckpoint((await this.#call("latestCheckpoint")) as StoredCheckpoint | undefined);
  }

  async checkpointAt(treeSize: number): Promise<StoredCheckpoint | undefined> {
    return rebuildCheckpoint((await this.#call("checkpointAt", treeSize)) as StoredCheckpoint | undefined);
  }

  /** Signed in the writer thread, with its copy of the receipt key, under `signer`'s name (the log origin). */
  async checkpoint(signer: NoteSigner, minIntervalMs = 0): Promise<StoredCheckpoint | undefined> {
    return rebuildCheckpoint(
      (await this.#call("checkpoint", signer.name, minIntervalMs)) as StoredCheckpoint | undefined,
    );
  }

  async *logEntries(): AsyncGenerator<LogEntry> {
    for (const entry of (await this.#call("logEntries")) as LogEntry[]) {
      yield { ...entry, leafHash: Buffer.from(entry.leafHash) };
    }
  }

  async *checkpoints(): AsyncGenerator<StoredCheckpoint> {
    for (const checkpoint of (await this.#call("checkpoints")) as StoredCheckpoint[]) {
      yield rebuildCheckpoint(checkpoint) as StoredCheckpoint;
    }
  }

  async *counters(): AsyncGenerator<StoredCounter> {
    yield* (await this.#call("counters")) as StoredCounter[];
  }

  async *unloggedEntries(): AsyncGenerator<UnloggedEntry> {
    yield* (await this.#call("unloggedEntries")) as UnloggedEntry[];
  }

  /** One process owns a SQLite ledger: nobody else finishes its executions, so this only waits. */
  waitForFinish(_executionId: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, timeoutMs));
  }

  async check(): Promise<void> {
    await this.#call("check");
  }

  async commitStats(): Promise<CommitStats> {
    return (await this.#call("commitStats")) as CommitStats;
  }

  async freezes(): Promise<Freeze[]> {
    return (await this.#call("freezes")) as Freeze[];
  }

  async setFreeze(freeze: Freeze): Promise<void> {
    await this.#call("setFreeze", freeze);
  }

  async clearFreeze(scope: string): Promise<boolean> {
    return (await this.#call("clearFreeze", scope)) as boolean;
  }

  /**
   * Never aborts: the writer thread's ledger is a SQLite file this process
   * holds with an exclusive lock, so no other process can take over a lease on
   * it (its pending rows are interrupted at the next start, once this process
   * is gone). Nothing to ask the writer thread.
   */
  leaseSignal(_executionId: string): AbortSignal {
    return new AbortController().signal;
  }

  /** Renews this process's leases from the writer thread; `onError` hears about failed renewals. */
  startLeases(onError: (error: unknown) => void): void {
    this.#leaseError = onError;
    this.#call("startLeases").catch(onError);
  }

  /** Commits what is queued, closes the ledger file, and ends the writer thread. */
  async close(): Promise<void> {
    if (this.#dead !== undefined) return;
    try {
      await this.#call("close");
    } finally {
      this.#dead = new StoreUnavailableError("the ledger is closed");
      await this.#worker.terminate();
    }
  }

  #call(method: string, ...args: unknown[]): Promise<unknown> {
    if (this.#dead !== undefined) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#calls.push({ id, method, args });
    });
  }

  #settle(
    id: number,
    settle: (pending: { resolve: (value: unknown) => void; reject: (error: Error) => void }) => void,
  ) {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    settle(pending);
  }

  /** The writer thread is gone: fail closed, every waiting and later call is unavailable. */
  #die(cause: unknown): void {
    if (this.#dead !== undefined) return;
    this.#dead = new StoreUnavailableError("the ledger's writer thread stopped", { cause });
    for (const pending of this.#pending.values()) pending.reject(this.#dead);
    this.#pending.clear();
  }
}

/**
 * The writer thread, from the compiled module next to this one; when running
 * from TypeScript sources (tests, `tsx`), through tsx's loader, which worker
 * threads do not inherit.
 */
function spawnWriter(start: WorkerStart): Worker {
  const fromSource = import.meta.url.endsWith(".ts");
  if (!fromSource) return new Worker(new URL("./ledger-worker.js", import.meta.url), { workerData: start });
  const entry = JSON.stringify(new URL("./ledger-worker.ts", import.meta.url).href);
  // Resolved here: the worker's own resolution starts from the working directory, which may be anywhere.
  const tsx = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  return new Worker(`import(${tsx}).then(({ register }) => { register(); return import(${entry}); });`, {
    eval: true,
    workerData: start,
  });
}
