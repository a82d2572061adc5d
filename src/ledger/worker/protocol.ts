/**
 * The messages between the main thread and the ledger's writer thread, and how
 * values cross: structured clone keeps Uint8Array and Date but turns a Buffer
 * into a plain Uint8Array and an Error into a plain object, so records and
 * errors are rebuilt on arrival.
 */
import {
  LedgerBugError,
  LedgerIdentityError,
  LedgerInUseError,
  SchemaTooNewError,
  StoreUnavailableError,
} from "../errors.js";
import type { ServedIdentity } from "../ledger-identity.js";
import type { DeniedAttempt, ExecutionRecord, StoredCheckpoint } from "../store.js";

/** What the writer thread is started with. */
export interface WorkerStart {
  readonly path: string;
  /** The receipt signing key (PEM PKCS#8): receipts and checkpoints are signed in the writer. */
  readonly receiptKeyPem: string;
  readonly logOrigin: string;
  readonly leaseMs: number;
  /** Mode, tenant and approval key ids: checked against the ledger's at open. */
  readonly identity: ServedIdentity;
}

/** A call of a Ledger method in the writer thread. */
export interface WorkerCall {
  readonly id: number;
  readonly method: string;
  readonly args: readonly unknown[];
}

/**
 * What the main thread posts: the calls made during one turn of its event
 * loop, in order (one message per turn, not one per call: each message costs
 * a wake-up of the other thread).
 */
export type WorkerCalls = readonly WorkerCall[];

/** The answer to one call. */
export type WorkerAnswer =
  | { readonly kind: "result"; readonly id: number; readonly value: unknown }
  | { readonly kind: "error"; readonly id: number; readonly error: SerializedError };

/** Before "ready" or "failed", the writer may post warnings (opening a ledger open to group or others). */
export type WorkerMessage =
  | { readonly kind: "ready"; readonly schemaVersion: number }
  | { readonly kind: "failed"; readonly error: SerializedError }
  /** The answers settled during one turn of the writer's event loop (a group commit answers many at once). */
  | { readonly kind: "answers"; readonly answers: readonly WorkerAnswer[] }
  | { readonly kind: "warning"; readonly message: string }
  | { readonly kind: "lease_error"; readonly error: SerializedError };

/**
 * Collects items and posts them as one array at the end of the current turn
 * of the event loop (setImmediate: after every I/O callback of this turn).
 */
export class TurnBatcher<T> {
  readonly #post: (items: T[]) => void;
  #items: T[] = [];

  constructor(post: (items: T[]) => void) {
    this.#post = post;
  }

  push(item: T): void {
    this.#items.push(item);
    if (this.#items.length === 1) setImmediate(() => this.flush());
  }

  /** Posts what is queued now (nothing when empty). */
  flush(): void {
    if (this.#items.length === 0) return;
    const items = this.#items;
    this.#items = [];
    this.#post(items);
  }
}

export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly code: string | undefined;
  readonly causeCode: string | undefined;
}

export function serializeError(error: unknown): SerializedError {
  const e = error instanceof Error ? error : new Error(String(error));
  const code = (e as { code?: unknown }).code;
  const causeCode = (e.cause as { code?: unknown } | undefined)?.code;
  return {
    name: e.name,
    message: e.message,
    code: typeof code === "string" ? code : undefined,
    causeCode: typeof causeCode === "string" ? causeCode : undefined,
  };
}

const errorTypes: Record<string, new (message: string, options?: { cause?: unknown }) => Error> = {
  StoreUnavailableError,
  LedgerBugError,
  LedgerInUseError,
  LedgerIdentityError,
  SchemaTooNewError,
};

/** The error as the caller's code switches on it: same class (for the ledger's own), message and codes. */
export function deserializeError(error: SerializedError): Error {
  const Type = errorTypes[error.name];
  const cause =
    error.causeCode === undefined ? undefined : Object.assign(new Error(error.causeCode), { code: error.causeCode });
  const rebuilt = Type === undefined ? new Error(error.message) : new Type(error.message, { cause });
  if (Type === undefined) Object.defineProperty(rebuilt, "name", { value: error.name });
  if (error.code !== undefined) Object.assign(rebuilt, { code: error.code });
  return rebuilt;
}

export const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);

/** Buffers back where the domain types have them (digests), after a structured clone. */
export function rebuildRecord<T extends ExecutionRecord | DeniedAttempt | undefined>(record: T): T {
  if (record === undefined) return record;
  const base = {
    ...record,
    payloadDigest: asBuffer(record.payloadDigest),
    approvalDigest: record.approvalDigest === undefined ? undefined : asBuffer(record.approvalDigest),
  };
  if (record.status === "pending") return base as T;
  const receipt = { ...record.receipt, digest: asBuffer(record.receipt.digest) };
  if (record.status === "executed") return { ...base, receipt, resultDigest: asBuffer(record.resultDigest) } as T;
  return { ...base, receipt } as T;
}

export function rebuildCheckpoint(checkpoint: StoredCheckpoint | undefined): StoredCheckpoint | undefined {
  return checkpoint === undefined ? undefined : { ...checkpoint, rootHash: asBuffer(checkpoint.rootHash) };
}
