import type Database from "better-sqlite3";
import { StoreUnavailableError } from "./store.js";

type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

interface QueuedWrite {
  readonly write: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Group commit for SQLite. Writes queued during one turn of the event loop run
 * in a single transaction (each in its own savepoint, so one failing write does
 * not undo the others) and are acknowledged only after that transaction has
 * committed, i.e. after its one fsync under synchronous=FULL.
 */
export class WriteBatcher {
  #queue: QueuedWrite[] = [];
  #scheduled = false;
  #idle: Promise<void> = Promise.resolve();
  #markIdle: (() => void) | undefined;
  /** Built once: the batch transaction, and the savepoint each write runs in. */
  readonly #inTransaction: (batch: QueuedWrite[]) => Outcome[];

  constructor(db: Database.Database) {
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
      outcomes = this.#inTransaction(batch);
    } catch (error) {
      // The commit itself failed: nothing in the batch is durable.
      const failure = new StoreUnavailableError(`ledger write failed: ${(error as Error).message}`, {
        cause: error,
      });
      for (const item of batch) item.reject(failure);
      this.#markIdle?.();
      return;
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i];
      if (outcome?.ok) item.resolve(outcome.value);
      else item.reject(outcome?.error);
    });
    if (!this.#scheduled) this.#markIdle?.();
  }
}
