import type { JsonValue } from "@bufbuild/protobuf";
import { ExecutionStatus } from "../../gen/openexec/v1/receipt_pb.js";
import { canonicalJsonDigest } from "../json/canonical-digest.js";
import { encodeReceipt, type ReceiptFacts, type ReceiptSigner } from "../receipts/receipt.js";
import { formatCheckpointBody, type NoteSigner, signCheckpoint } from "../tlog/checkpoint.js";
import { leafHash, verifyConsistency } from "../tlog/merkle-tree.js";
import { consistencyPlan } from "../tlog/proof-plan.js";
import { hashesAtLevel, tileWidth } from "../tlog/tile-path.js";
import { proofFromTiles, TreeEdge } from "../tlog/tiled-tree.js";
import { LedgerBugError, StoreUnavailableError } from "./errors.js";
import type {
  CheckpointRow,
  DenialRow,
  ExecutionFinish,
  ExecutionRow,
  LeafRow,
  LedgerStorage,
  LedgerTransaction,
  LogStorageReads,
  ReceiptRow,
} from "./ports.js";

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
  | { readonly kind: "renewed"; readonly held: number }
  | { readonly kind: "interrupted"; readonly rows: readonly ExecutionRow[] };

export type WriteResult =
  | { readonly ok: true; readonly outcome: WriteOutcome }
  | { readonly ok: false; readonly error: unknown };

/** Who signs what the ledger issues. */
export interface ReceiptIssuer {
  /** Undefined: receipts are unsigned (tests of storage alone). */
  readonly signer: ReceiptSigner | undefined;
  readonly logOrigin: string;
}

/**
 * The one place that decides what an outcome writes: the execution row, its
 * effect, the receipt with its log index and signature, the log leaf and the
 * tiles. Storage only persists. One recorder writes a log at a time (the
 * SQLite writer; on PostgreSQL, whoever holds the log's state row lock), and
 * keeps the tree's right edge in memory between batches.
 */
export class LedgerRecorder {
  readonly #issuer: ReceiptIssuer;
  #edge: TreeEdge;

  private constructor(issuer: ReceiptIssuer, edge: TreeEdge) {
    this.#issuer = issuer;
    this.#edge = edge;
  }

  /** A recorder for `storage`'s log: its edge read from one stored tile per level. */
  static async open(storage: LedgerStorage, issuer: ReceiptIssuer): Promise<LedgerRecorder> {
    return new LedgerRecorder(issuer, await restoreEdge(storage, await storage.logSize()));
  }

  /** The log's size after the last committed batch. */
  get logSize(): number {
    return this.#edge.size;
  }

  /**
   * Commits `writes` in one transaction, each in its own savepoint: a write
   * that fails is answered with its error and leaves no trace, the others
   * commit. When the transaction itself fails, every write fails with it and
   * the in-memory edge is put back.
   */
  async commit(storage: LedgerStorage, writes: readonly LedgerWrite[]): Promise<WriteResult[]> {
    const before = this.#edge;
    try {
      return await storage.transaction(async (tx) => {
        const size = await tx.lockLog();
        // Another writer appended since (replicas on one database): catch up from its tiles.
        if (size !== this.#edge.size) this.#edge = await restoreEdge(tx, size);
        const leaves: LeafRow[] = [];
        const results: WriteResult[] = [];
        for (const write of writes) {
          try {
            const issued: LeafRow[] = [];
            const outcome = await tx.savepoint(() => this.#apply(tx, write, leaves.length, issued));
            leaves.push(...issued);
            results.push({ ok: true, outcome });
          } catch (error) {
            results.push({ ok: false, error });
          }
        }
        if (leaves.length > 0) {
          const edge = this.#edge.clone();
          const tiles = edge.append(leaves.map((leaf) => leaf.hash));
          await tx.appendLog(leaves, tiles, edge.size);
          this.#edge = edge;
        }
        return results;
      });
    } catch (error) {
      this.#edge = before;
      const failure =
        error instanceof StoreUnavailableError || error instanceof LedgerBugError
          ? error
          : new StoreUnavailableError("ledger commit failed", { cause: error });
      return writes.map(() => ({ ok: false, error: failure }));
    }
  }

  /**
   * Signs and stores a checkpoint of the tree as committed, unless one exists
   * at this size, or another replica holds the publication (or published less
   * than `minIntervalMs` ago): then the latest stored one is returned. A new
   * checkpoint must extend the last one (checked with a consistency proof from
   * the stored tiles before signing): a log whose stored tree no longer agrees
   * with what it signed is never signed again.
   */
  async checkpoint(
    storage: LedgerStorage,
    signer: NoteSigner,
    options: { readonly minIntervalMs?: number; readonly nowMs?: number } = {},
  ): Promise<CheckpointRow | undefined> {
    return storage.transaction(async (tx) => {
      if (!(await tx.claimPublication(options.nowMs ?? Date.now(), options.minIntervalMs ?? 0))) {
        return tx.latestCheckpoint();
      }
      const latest = await tx.latestCheckpoint();
      const size = await tx.readLogSize();
      if (latest !== undefined && latest.treeSize === size) return latest;
      // Other replicas append too: the edge at the committed size, from its tiles.
      const edge = size === this.#edge.size ? this.#edge : await restoreEdge(tx, size);
      const rootHash = edge.root();
      if (latest !== undefined) {
        const proof =
          latest.treeSize > size ? undefined : await proofFromTiles(consistencyPlan(latest.treeSize, size), tx);
        if (proof === undefined || !verifyConsistency(latest.treeSize, size, latest.rootHash, rootHash, proof)) {
          throw new LedgerBugError(
            `the log's stored tree of ${size} leaves does not extend its checkpoint of ${latest.treeSize}; refusing to sign (run openexec audit)`,
          );
        }
      }
      const body = formatCheckpointBody({ origin: signer.name, size, rootHash });
      const row: CheckpointRow = { treeSize: size, rootHash, note: signCheckpoint(body, signer) };
      await tx.insertCheckpoint(row);
      return row;
    });
  }

  async #apply(
    tx: LedgerTransaction,
    write: LedgerWrite,
    batchLeaves: number,
    issued: LeafRow[],
  ): Promise<WriteOutcome> {
    const issue = (kind: LeafRow["kind"], entryId: string, facts: Omit<ReceiptFacts, "logIndex" | "logOrigin">) =>
      this.#issue(kind, entryId, facts, this.#edge.size + batchLeaves + issued.length, issued);
    switch (write.kind) {
      case "reserve": {
        const taken = await checkTaken(tx, write.reservation);
        if (taken !== undefined) return taken;
        const row = pendingRow(write.reservation, write.leaseOwner, write.leaseUntilMs);
        if (!(await tx.insertExecution(row))) return existingAfterRace(tx, write.reservation);
        return { kind: "reserved" };
      }
      case "record": {
        const taken = await checkTaken(tx, write.reservation);
        if (taken !== undefined) return taken;
        const pending = pendingRow(write.reservation, undefined, undefined);
        const finish = await this.#finish(tx, pending, write.completion, issue);
        const row: ExecutionRow = { ...pending, ...finish, leaseOwner: undefined, leaseUntilMs: undefined };
        if (!(await tx.insertExecution(row))) return existingAfterRace(tx, write.reservation);
        return { kind: "recorded", row };
      }
      case "complete": {
        const pending = await tx.findExecutionById(write.executionId);
        if (pending === undefined) throw new LedgerBugError(`execution ${write.executionId} is not pending`);
        // Interrupted meanwhile: this process's lease ran out (it could not renew it, e.g. while the
        // database was unreachable) and another replica's sweep recorded the interruption, with its
        // receipt. That outcome stands: the caller is answered with it, as every retry will be.
        if (pending.status !== "pending") return { kind: "existing", row: pending };
        const finish = await this.#finish(tx, pending, write.completion, issue);
        if (!(await tx.finishExecution(pending.executionId, finish))) {
          throw new LedgerBugError(`execution ${write.executionId} was not finished`);
        }
        return { kind: "recorded", row: { ...pending, ...finish, leaseOwner: undefined, leaseUntilMs: undefined } };
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
        await tx.insertDenial(row);
        return { kind: "denied", row };
      }
      case "renew":
        return { kind: "renewed", held: await tx.renewLeases(write.owner, write.executionIds, write.untilMs) };
      case "interrupt_expired": {
        const rows: ExecutionRow[] = [];
        for (const pending of await tx.expiredReservations(write.nowMs, write.limit)) {
          const finish: ExecutionFinish = {
            status: "interrupted",
            reason: "interrupted",
            resultJson: undefined,
            resultDigest: undefined,
            receipt: issue("execution", pending.executionId, {
              ...receiptFactsOf(pending),
              resultDigest: undefined,
              status: ExecutionStatus.INTERRUPTED,
              reason: "interrupted",
            }),
          };
          if (!(await tx.finishExecution(pending.executionId, finish))) continue;
          rows.push({ ...pending, ...finish, leaseOwner: undefined, leaseUntilMs: undefined });
        }
        return { kind: "interrupted", rows };
      }
    }
  }

  /** Applies the effect (inside the transaction) or records the failure, and issues the receipt. */
  async #finish(
    tx: LedgerTransaction,
    row: ExecutionRow,
    completion: LedgerCompletion,
    issue: (kind: "execution", entryId: string, facts: Omit<ReceiptFacts, "logIndex" | "logOrigin">) => ReceiptRow,
  ): Promise<ExecutionFinish> {
    const outcome = await applyEffect(tx, row.tenantId, completion);
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

  /** Encodes and signs a receipt at the next log index, and notes its leaf. */
  #issue(
    kind: LeafRow["kind"],
    entryId: string,
    facts: Omit<ReceiptFacts, "logIndex" | "logOrigin">,
    logIndex: number,
    issued: LeafRow[],
  ): ReceiptRow {
    const receipt = encodeReceipt({ ...facts, logIndex, logOrigin: this.#issuer.logOrigin }, this.#issuer.signer);
    issued.push({ index: logIndex, hash: leafHash(receipt.body), kind, entryId });
    return receipt;
  }
}

/** The nonce or the approval is already taken: what to answer instead of reserving. */
async function checkTaken(tx: LedgerTransaction, reservation: ReservationFacts): Promise<WriteOutcome | undefined> {
  const existing = await tx.findExecution(reservation.tenantId, reservation.nonce);
  if (existing !== undefined) return { kind: "existing", row: existing };
  if (
    reservation.approval !== undefined &&
    (await tx.isApprovalUsed(reservation.tenantId, reservation.approval.approvalId))
  ) {
    return { kind: "approval_used" };
  }
  return undefined;
}

/** An insert lost to a concurrent one (another replica): answer with the row that won. */
async function existingAfterRace(tx: LedgerTransaction, reservation: ReservationFacts): Promise<WriteOutcome> {
  const existing = await tx.findExecution(reservation.tenantId, reservation.nonce);
  if (existing !== undefined) return { kind: "existing", row: existing };
  // The conflict was on the approval id.
  return { kind: "approval_used" };
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

type AppliedEffect =
  | { readonly status: "executed"; readonly result: JsonValue; readonly resultDigest: Uint8Array }
  | { readonly status: "failed"; readonly reason: string };

/** The effect's arithmetic, inside the transaction that records it. */
async function applyEffect(
  tx: LedgerTransaction,
  tenantId: string,
  completion: LedgerCompletion,
): Promise<AppliedEffect> {
  if (completion.kind === "failed") return { status: "failed", reason: completion.reason };
  const { effect } = completion;
  if (effect.kind === "result") return { status: "executed", result: effect.result, resultDigest: effect.resultDigest };
  const total = ((await tx.readCounter(tenantId, effect.key)) ?? 0) + effect.delta;
  if (!Number.isSafeInteger(total)) return { status: "failed", reason: "counter_overflow" };
  await tx.writeCounter(tenantId, effect.key, total);
  const result = { key: effect.key, value: total };
  return { status: "executed", result, resultDigest: canonicalJsonDigest(result) };
}

/** The tree's right edge at `size`: one partial tile per level. */
async function restoreEdge(reader: Pick<LogStorageReads, "readTiles">, size: number): Promise<TreeEdge> {
  const ids: { level: number; index: number }[] = [];
  for (let level = 0; hashesAtLevel(size, level) > 0; level++) {
    ids.push({ level, index: Math.floor(hashesAtLevel(size, level) / tileWidth) });
  }
  const tiles = await reader.readTiles(ids);
  const byLevel = new Map(ids.map((id, i) => [id.level, tiles[i]]));
  return TreeEdge.restore(size, (level) => byLevel.get(level));
}
