import type Database from "better-sqlite3";
import { StoreUnavailableError } from "./store.js";

type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

interface QueuedWrite {
  readonly write: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/** What the store tells the batcher about its storage, and hears back from it. */
export interface CommitGuard {
  /**
   * Called before each batch runs and again after it commits, before anyone
   * hears back: throwing refuses the whole batch (e.g. the ledger file is gone,
   * so a commit went into an unlinked file and is not durable).
   */
  assertDurable(): void;
  /** How each batch ended: undefined after a commit in which no write hit a storage fault. */
  settled(failure: unknown): void;
}

const noGuard: CommitGuard = { assertDurable: () => undefined, settled: () => undefined };

/**
 * Group commit for SQLite. Writes queued during one turn of the event loop run
 * in a single transaction (each in its own savepoint, so one failing write does
 * not undo the others) and are acknowledged only after that transaction has
 * committed, i.e. after its one fsync under synchronous=FULL, and after the
 * guard has confirmed that the commit went into the ledger file.
 */
export class WriteBatcher {
  #queue: QueuedWrite[] = [];
  #scheduled = false;
  #idle: Promise<void> = Promise.resolve();
  #markIdle: (() => void) | undefined;
  readonly #guard: CommitGuard;
  /** Built once: the batch transaction, and the savepoint each write runs in. */
  readonly #inTransaction: (batch: QueuedWrite[]) => Outcome[];

  constructor(db: Database.Database, guard: CommitGuard = noGuard) {
    this.#guard = guard;
    const inSavepoint = db.transaction((write: () => unknown) => write());
    this.#inTransaction = db.transaction((batch: QueuedWrite[]) =>
      batch.map((item): Outcome => {
        try {
          // A nested better-sqlite3 transaction is a savepoint.
          return { ok: true, value: inSavepoint(item.write) };
        } catch (error) {
          return { ok: false, error };
        }
      }),
    ).immediate;
  }

  run<T>(write: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ write, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        this.#idle = new Promise((done) => {
          this.#markIdle = done;
        });
        setImmediate(() => this.#flush());
      }
    });
  }

  /** Resolves once everything queued so far is committed or refused. */
  drain(): Promise<void> {
    return this.#idle;
  }

  #flush(): void {
    const batch = this.#queue;
    this.#queue = [];
    this.#scheduled = false;
    let outcomes: Outcome[];
    try {
      this.#guard.assertDurable();
      outcomes = this.#inTransaction(batch);
      this.#guard.assertDurable();
    } catch (error) {
      // The commit failed, or what it committed is not in the ledger file: nothing in the batch is durable.
      const failure =
        error instanceof StoreUnavailableError
          ? error
          : new StoreUnavailableError(`ledger write failed: ${(error as Error).message}`, { cause: error });
      this.#guard.settled(failure);
      for (const item of batch) item.reject(failure);
      if (!this.#scheduled) this.#markIdle?.();
      return;
    }
    const fault = outcomes.find((outcome) => !outcome.ok && isStorageFault(outcome.error));
    this.#guard.settled(fault?.ok === false ? fault.error : undefined);
    batch.forEach((item, i) => {
      const outcome = outcomes[i];
      if (outcome?.ok) item.resolve(outcome.value);
      else item.reject(outcome?.error);
    });
    if (!this.#scheduled) this.#markIdle?.();
  }
}

/** A SQLite error that says the storage, not the write, is at fault (I/O, full, read-only, corrupt, ...). */
export function isStorageFault(error: unknown): boolean {
  if (!(error instanceof Error) || error.name !== "SqliteError") return false;
  const code = (error as Error & { code?: unknown }).code;
  return typeof code === "string" && /^SQLITE_(IOERR|FULL|READONLY|CANTOPEN|CORRUPT|NOTADB|PERM)/.test(code);
}
