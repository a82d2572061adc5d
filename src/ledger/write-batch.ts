import type { JsonValue } from "@bufbuild/protobuf";
import { ExecutionStatus } from "../../gen/openexec/v1/receipt_pb.js";
import { canonicalJsonDigest } from "../json/canonical-digest.js";
import type { ReceiptFacts } from "../receipts/receipt.js";
import { LedgerBugError } from "./errors.js";
import type { LedgerCompletion, LedgerWrite, ReservationFacts, WriteResult } from "./ledger-write.js";
import type {
  ApprovalKey,
  CounterRow,
  DenialRow,
  ExecutionFinish,
  ExecutionKey,
  ExecutionRow,
  LeafRow,
  LedgerTransaction,
  ReceiptRow,
} from "./ports.js";

/** Encodes and signs a receipt at the log's next index, and notes its leaf. */
export type IssueReceipt = (
  kind: LeafRow["kind"],
  entryId: string,
  facts: Omit<ReceiptFacts, "logIndex" | "logOrigin">,
) => ReceiptRow;

/**
 * A row the batch expected to write was not written as decided (another
 * writer got there first, which the log's lock rules out): the caller undoes
 * the batch and applies its writes one at a time, each deciding afresh.
 */
export class BatchRaceError extends Error {
  override readonly name = "BatchRaceError";
}

/**
 * Applies a batch of writes with a fixed number of statements, whatever its
 * size: it reads everything the batch needs (one statement per kind of row),
 * decides every write in memory, in order, exactly as if each ran after the
 * one before it, then writes each kind of row in one statement. A write that
 * is refused (a nonce taken, an approval used, a completion of a row that is
 * not pending) is answered as such and writes nothing; the others go on.
 *
 * Throws when storage fails or a write does not land as decided
 * (BatchRaceError): the caller rolls the batch back.
 */
export async function applyWriteBatch(
  tx: LedgerTransaction,
  writes: readonly LedgerWrite[],
  issue: IssueReceipt,
): Promise<WriteResult[]> {
  const state = await BatchState.read(tx, writes);
  const decided = writes.map((write) => decide(state, write, issue));
  await state.write(tx);
  const results: WriteResult[] = [];
  for (const decision of decided) {
    if (!decision.ok) results.push(decision);
    else if (decision.outcome.kind === "renew") {
      results.push({ ok: true, outcome: { kind: "renewed", held: await state.renew(tx, decision.outcome.renew) } });
    } else results.push({ ok: true, outcome: decision.outcome });
  }
  return results;
}

type Decision =
  | WriteResult
  | {
      readonly ok: true;
      readonly outcome: { readonly kind: "renew"; readonly renew: Extract<LedgerWrite, { kind: "renew" }> };
    };

const keyOf = (tenantId: string, second: string) => `${tenantId}\u0000${second}`;

/** What a batch has read, and what it has decided to write so far: each write sees the ones before it. */
class BatchState {
  readonly #byKey = new Map<string, ExecutionRow>();
  readonly #byId = new Map<string, ExecutionRow>();
  readonly #usedApprovals = new Set<string>();
  readonly #counters = new Map<string, CounterRow | undefined>();
  readonly #expired: ExecutionRow[];
  readonly #inserts: ExecutionRow[] = [];
  readonly #finishes: { executionId: string; finish: ExecutionFinish }[] = [];
  readonly #denials: DenialRow[] = [];
  readonly #touchedCounters = new Set<string>();

  private constructor(expired: ExecutionRow[]) {
    this.#expired = expired;
  }

  static async read(tx: LedgerTransaction, writes: readonly LedgerWrite[]): Promise<BatchState> {
    const keys: ExecutionKey[] = [];
    const approvals: ApprovalKey[] = [];
    const ids: string[] = [];
    let sweep: Extract<LedgerWrite, { kind: "interrupt_expired" }> | undefined;
    for (const write of writes) {
      if (write.kind === "reserve" || write.kind === "record") {
        keys.push({ tenantId: write.reservation.tenantId, nonce: write.reservation.nonce });
        if (write.reservation.approval !== undefined) {
          approvals.push({ tenantId: write.reservation.tenantId, approvalId: write.reservation.approval.approvalId });
        }
      } else if (write.kind === "complete") ids.push(write.executionId);
      else if (write.kind === "interrupt_expired") sweep = write;
    }
    const [byKey, byId, used, expired] = [
      keys.length === 0 ? [] : await tx.findExecutions(keys),
      ids.length === 0 ? [] : await tx.findExecutionsById(ids),
      approvals.length === 0 ? [] : await tx.usedApprovals(approvals),
      // One sweep per batch reads the expired leases (the ledger never queues two).
      sweep === undefined ? [] : await tx.expiredReservations(sweep.nowMs, sweep.limit),
    ];
    const state = new BatchState(expired);
    for (const row of [...byKey, ...byId, ...expired]) state.#remember(row);
    for (const use of used) state.#usedApprovals.add(keyOf(use.tenantId, use.approvalId));

    // Counters the batch's effects touch: the tenant of a completion is its pending row's.
    const counterKeys = new Map<string, { tenantId: string; key: string }>();
    for (const write of writes) {
      const completion = write.kind === "record" || write.kind === "complete" ? write.completion : undefined;
      if (completion?.kind !== "executed" || completion.effect.kind !== "counter_add") continue;
      const tenantId =
        write.kind === "record"
          ? write.reservation.tenantId
          : state.#byId.get((write as { executionId: string }).executionId)?.tenantId;
      if (tenantId === undefined) continue;
      counterKeys.set(keyOf(tenantId, completion.effect.key), { tenantId, key: completion.effect.key });
    }
    if (counterKeys.size > 0) {
      for (const key of counterKeys.keys()) state.#counters.set(key, undefined);
      for (const row of await tx.readCounters([...counterKeys.values()])) {
        state.#counters.set(keyOf(row.tenantId, row.key), row);
      }
    }
    return state;
  }

  #remember(row: ExecutionRow): void {
    this.#byKey.set(keyOf(row.tenantId, row.nonce), row);
    this.#byId.set(row.executionId, row);
  }

  existing(reservation: ReservationFacts): ExecutionRow | undefined {
    return this.#byKey.get(keyOf(reservation.tenantId, reservation.nonce));
  }

  approvalUsed(reservation: ReservationFacts): boolean {
    const { approval } = reservation;
    return approval !== undefined && this.#usedApprovals.has(keyOf(reservation.tenantId, approval.approvalId));
  }

  byId(executionId: string): ExecutionRow | undefined {
    return this.#byId.get(executionId);
  }

  pending(executionId: string): ExecutionRow | undefined {
    const row = this.#byId.get(executionId);
    return row?.status === "pending" ? row : undefined;
  }

  expired(): readonly ExecutionRow[] {
    return this.#expired;
  }

  insert(row: ExecutionRow): void {
    this.#inserts.push(row);
    this.#remember(row);
    if (row.approvalId !== undefined) this.#usedApprovals.add(keyOf(row.tenantId, row.approvalId));
  }

  finish(row: ExecutionRow, finish: ExecutionFinish): ExecutionRow {
    const finished: ExecutionRow = { ...row, ...finish, leaseOwner: undefined, leaseUntilMs: undefined };
    this.#finishes.push({ executionId: row.executionId, finish });
    this.#remember(finished);
    return finished;
  }

  deny(row: DenialRow): void {
    this.#denials.push(row);
  }

  counter(tenantId: string, key: string): number | undefined {
    return this.#counters.get(keyOf(tenantId, key))?.value;
  }

  setCounter(tenantId: string, key: string, value: number): void {
    this.#counters.set(keyOf(tenantId, key), { tenantId, key, value });
    this.#touchedCounters.add(keyOf(tenantId, key));
  }

  /** Writes what was decided, one statement per kind of row; throws BatchRaceError if a row did not land. */
  async write(tx: LedgerTransaction): Promise<void> {
    if (this.#inserts.length > 0 && (await tx.insertExecutions(this.#inserts)) !== this.#inserts.length) {
      throw new BatchRaceError("an execution row the batch inserts already exists");
    }
    if (this.#finishes.length > 0 && (await tx.finishExecutions(this.#finishes)) !== this.#finishes.length) {
      throw new BatchRaceError("a row the batch finishes is no longer pending");
    }
    if (this.#denials.length > 0) await tx.insertDenials(this.#denials);
    const counters = [...this.#touchedCounters].map((key) => this.#counters.get(key) as CounterRow);
    if (counters.length > 0) await tx.writeCounters(counters);
  }

  /** After the batch's rows are written: a lease renewal names what its owner still holds. */
  renew(tx: LedgerTransaction, write: Extract<LedgerWrite, { kind: "renew" }>): Promise<string[]> {
    return tx.renewLeases(write.owner, write.executionIds, write.untilMs);
  }
}

/** What one write does, given everything the batch decided before it. */
function decide(state: BatchState, write: LedgerWrite, issue: IssueReceipt): Decision {
  try {
    switch (write.kind) {
      case "reserve":
      case "record": {
        const { reservation } = write;
        const existing = state.existing(reservation);
        if (existing !== undefined) return { ok: true, outcome: { kind: "existing", row: existing } };
        if (state.approvalUsed(reservation)) return { ok: true, outcome: { kind: "approval_used" } };
        if (write.kind === "reserve") {
          state.insert(pendingRow(reservation, write.leaseOwner, write.leaseUntilMs));
          return { ok: true, outcome: { kind: "reserved" } };
        }
        const pending = pendingRow(reservation, undefined, undefined);
        const row: ExecutionRow = {
          ...pending,
          ...finishOf(state, pending, write.completion, issue),
          leaseOwner: undefined,
          leaseUntilMs: undefined,
        };
        state.insert(row);
        return { ok: true, outcome: { kind: "recorded", row } };
      }
      case "complete": {
        const stored = state.byId(write.executionId);
        if (stored === undefined) throw new LedgerBugError(`execution ${write.executionId} is not in the ledger`);
        // Interrupted meanwhile: this process's lease ran out (it could not renew it, e.g. while the
        // database was unreachable) and another replica's sweep recorded the interruption, with its
        // receipt. That outcome stands: the caller is answered with it, as every retry will be.
        if (stored.status !== "pending") return { ok: true, outcome: { kind: "existing", row: stored } };
        const row = state.finish(stored, finishOf(state, stored, write.completion, issue));
        return { ok: true, outcome: { kind: "recorded", row } };
      }
      case "deny": {
        const { denial } = write;
        const receipt = issue("denial", denial.attemptId, {
          executionId: denial.attemptId,
          tenantId: denial.tenantId,
          action: denial.action,
          nonce: denial.nonce,
          payloadDigest: denial.payloadDigest,
          approvalDigest: denial.approvalDigest,
          resultDigest: undefined,
          status: ExecutionStatus.DENIED,
          reason: denial.reason,
          logicalTime: new Date(denial.logicalTimeMs),
        });
        const row: DenialRow = { ...denial, receipt };
        state.deny(row);
        return { ok: true, outcome: { kind: "denied", row } };
      }
      case "renew":
        return { ok: true, outcome: { kind: "renew", renew: write } };
      case "interrupt_expired": {
        const rows: ExecutionRow[] = [];
        for (const expired of state.expired()) {
          // Finished earlier in this batch (its owner's completion came first): not interrupted.
          const pending = state.pending(expired.executionId);
          if (pending === undefined) continue;
          const receipt = issue("execution", pending.executionId, {
            ...receiptFactsOf(pending),
            resultDigest: undefined,
            status: ExecutionStatus.INTERRUPTED,
            reason: "interrupted",
          });
          const finish: ExecutionFinish = {
            status: "interrupted",
            reason: "interrupted",
            resultJson: undefined,
            resultDigest: undefined,
            receipt,
          };
          rows.push(state.finish(pending, finish));
        }
        return { ok: true, outcome: { kind: "interrupted", rows } };
      }
    }
  } catch (error) {
    return { ok: false, error };
  }
}

/** Applies the effect (in the batch's state) or records the failure, and issues the receipt. */
function finishOf(
  state: BatchState,
  row: ExecutionRow,
  completion: LedgerCompletion,
  issue: IssueReceipt,
): ExecutionFinish {
  const outcome = applyEffect(state, row.tenantId, completion);
  const receipt = issue("execution", row.executionId, {
    ...receiptFactsOf(row),
    resultDigest: outcome.status === "executed" ? outcome.resultDigest : undefined,
    status: outcome.status === "executed" ? ExecutionStatus.EXECUTED : ExecutionStatus.FAILED,
    reason: outcome.status === "failed" ? outcome.reason : undefined,
  });
  return outcome.status === "executed"
    ? {
        status: "executed",
        reason: undefined,
        resultJson: JSON.stringify(outcome.result),
        resultDigest: outcome.resultDigest,
        receipt,
      }
    : { status: "failed", reason: outcome.reason, resultJson: undefined, resultDigest: undefined, receipt };
}

type AppliedEffect =
  | { readonly status: "executed"; readonly result: JsonValue; readonly resultDigest: Uint8Array }
  | { readonly status: "failed"; readonly reason: string };

/** The effect's arithmetic, committed with the execution that records it. */
function applyEffect(state: BatchState, tenantId: string, completion: LedgerCompletion): AppliedEffect {
  if (completion.kind === "failed") return { status: "failed", reason: completion.reason };
  const { effect } = completion;
  if (effect.kind === "result") return { status: "executed", result: effect.result, resultDigest: effect.resultDigest };
  const total = (state.counter(tenantId, effect.key) ?? 0) + effect.delta;
  if (!Number.isSafeInteger(total)) return { status: "failed", reason: "counter_overflow" };
  state.setCounter(tenantId, effect.key, total);
  const result = { key: effect.key, value: total };
  return { status: "executed", result, resultDigest: canonicalJsonDigest(result) };
}

function pendingRow(
  r: ReservationFacts,
  leaseOwner: string | undefined,
  leaseUntilMs: number | undefined,
): ExecutionRow {
  return {
    executionId: r.executionId,
    tenantId: r.tenantId,
    nonce: r.nonce,
    action: r.action,
    payloadDigest: r.payloadDigest,
    approvalId: r.approval?.approvalId,
    approvalDigest: r.approval?.digest,
    logicalTimeMs: r.logicalTimeMs,
    status: "pending",
    leaseOwner,
    leaseUntilMs,
    reason: undefined,
    resultJson: undefined,
    resultDigest: undefined,
    receipt: undefined,
  };
}

function receiptFactsOf(row: ExecutionRow) {
  return {
    executionId: row.executionId,
    tenantId: row.tenantId,
    action: row.action,
    nonce: row.nonce,
    payloadDigest: row.payloadDigest,
    approvalDigest: row.approvalDigest,
    logicalTime: new Date(row.logicalTimeMs),
  };
}
