// What the executor asks the ledger to write (LedgerWrite, one of a batch)
// and what each write answers (WriteResult): the vocabulary shared by the
// recorder, which decides, and write-batch, which applies a batch.
import type { JsonValue } from "@bufbuild/protobuf";
import type { DenialRow, ExecutionRow } from "./ports.js";

/** What is recorded before (or, for ledger-only actions, together with) a run. */
export interface ReservationFacts {
  readonly executionId: string;
  readonly tenantId: string;
  readonly nonce: string;
  readonly action: string;
  readonly payloadDigest: Uint8Array;
  readonly approval: { readonly approvalId: string; readonly digest: Uint8Array } | undefined;
  readonly logicalTimeMs: number;
}

/**
 * What a handler asks the ledger to commit, as data: the recorder applies it
 * inside the execution's own transaction, so it happens exactly once.
 */
export type LedgerEffect =
  | { readonly kind: "result"; readonly result: JsonValue; readonly resultDigest: Uint8Array }
  /** Adds `delta` to the tenant's counter `key`; the result is {"key": key, "value": new total}. */
  | { readonly kind: "counter_add"; readonly key: string; readonly delta: number };

export type LedgerCompletion =
  | { readonly kind: "executed"; readonly effect: LedgerEffect }
  | { readonly kind: "failed"; readonly reason: string };

/** A denial as the executor reports it; the recorder adds its receipt. */
export type DenialFacts = Omit<DenialRow, "receipt">;

/** One write, as the executor asks for it; a batch of them commits in one transaction. */
export type LedgerWrite =
  /** Reserve the nonce before an external handler runs, leased to `leaseOwner`. */
  | {
      readonly kind: "reserve";
      readonly reservation: ReservationFacts;
      readonly leaseOwner: string;
      readonly leaseUntilMs: number;
    }
  /** Finish a reservation this process holds. */
  | { readonly kind: "complete"; readonly executionId: string; readonly completion: LedgerCompletion }
  /** Reserve and finish at once (ledger-only actions: nothing ran outside the ledger). */
  | { readonly kind: "record"; readonly reservation: ReservationFacts; readonly completion: LedgerCompletion }
  | { readonly kind: "deny"; readonly denial: DenialFacts }
  | {
      readonly kind: "renew";
      readonly owner: string;
      readonly executionIds: readonly string[];
      readonly untilMs: number;
    }
  /** Turn reservations whose lease expired before `nowMs` into interrupted executions. */
  | { readonly kind: "interrupt_expired"; readonly nowMs: number; readonly limit: number };

export type WriteOutcome =
  | { readonly kind: "reserved" }
  /** The nonce is taken: the row that holds it (a replay or a conflict, the executor decides). */
  | { readonly kind: "existing"; readonly row: ExecutionRow }
  /** The approval id was consumed by another execution. */
  | { readonly kind: "approval_used" }
  | { readonly kind: "recorded"; readonly row: ExecutionRow }
  | { readonly kind: "denied"; readonly row: DenialRow }
  /** The ids whose lease was extended: those still pending and held by the renewing owner. */
  | { readonly kind: "renewed"; readonly held: readonly string[] }
  | { readonly kind: "interrupted"; readonly rows: readonly ExecutionRow[] };

export type WriteResult =
  | { readonly ok: true; readonly outcome: WriteOutcome }
  | { readonly ok: false; readonly error: unknown };
