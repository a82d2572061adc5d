import { encodeReceipt, type ReceiptSigner } from "../receipts/receipt.js";
import { formatCheckpointBody, type NoteSigner, signCheckpoint } from "../tlog/checkpoint.js";
import { leafHash, verifyConsistency } from "../tlog/merkle-tree.js";
import { consistencyPlan } from "../tlog/proof-plan.js";
import { hashesAtLevel, tileWidth } from "../tlog/tile-path.js";
import { proofFromTiles, TreeEdge } from "../tlog/tiled-tree.js";
import { LedgerBugError, StoreUnavailableError } from "./errors.js";
import type { LedgerWrite, WriteResult } from "./ledger-write.js";
import type { CheckpointRow, LeafRow, LedgerStorage, LedgerTransaction, LogStorageReads } from "./ports.js";
import { applyWriteBatch, BatchRaceError, type IssueReceipt } from "./write-batch.js";

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
  readonly #issuer_: ReceiptIssuer;
  #edge: TreeEdge;

  private constructor(issuer: ReceiptIssuer, edge: TreeEdge) {
    this.#issuer_ = issuer;
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
   * Commits `writes` in one transaction. The batch is decided and written as
   * a whole (a few statements, whatever its size; write-batch.ts) inside a
   * savepoint; should that fail, each write is applied in a savepoint of its
   * own, so that a write that fails is answered with its error and leaves no
   * trace while the others commit. When the transaction itself fails, every
   * write fails with it and the in-memory edge is put back.
   */
  async commit(storage: LedgerStorage, writes: readonly LedgerWrite[]): Promise<WriteResult[]> {
    const before = this.#edge;
    try {
      return await storage.transaction(async (tx) => {
        // A transaction run again (a serialization failure) starts from the edge as committed.
        this.#edge = before;
        const size = await tx.lockLog();
        // Another writer appended since (replicas on one database): catch up from its tiles.
        if (size !== this.#edge.size) this.#edge = await restoreEdge(tx, size);
        const leaves: LeafRow[] = [];
        const results = await this.#apply(tx, writes, leaves);
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

  /** The whole batch at once; if it does not land, one write at a time. Appends the leaves issued to `leaves`. */
  async #apply(tx: LedgerTransaction, writes: readonly LedgerWrite[], leaves: LeafRow[]): Promise<WriteResult[]> {
    const issued: LeafRow[] = [];
    try {
      const results = await tx.savepoint(() => applyWriteBatch(tx, writes, this.#issuer(leaves, issued)));
      leaves.push(...issued);
      return results;
    } catch (error) {
      if (writes.length === 1 && !(error instanceof BatchRaceError)) return [{ ok: false, error }];
    }
    const results: WriteResult[] = [];
    for (const write of writes) results.push(await this.#applyOne(tx, write, leaves));
    return results;
  }

  async #applyOne(tx: LedgerTransaction, write: LedgerWrite, leaves: LeafRow[]): Promise<WriteResult> {
    for (let attempt = 1; ; attempt++) {
      const issued: LeafRow[] = [];
      try {
        const [result] = await tx.savepoint(() => applyWriteBatch(tx, [write], this.#issuer(leaves, issued)));
        leaves.push(...issued);
        return result ?? { ok: false, error: new LedgerBugError("a write had no result") };
      } catch (error) {
        // Another writer's row appeared between reading and writing: decide again, seeing it.
        if (error instanceof BatchRaceError && attempt === 1) continue;
        return { ok: false, error };
      }
    }
  }

  /** Issues receipts at the indices after the committed log, the batch's earlier leaves and `issued`. */
  #issuer(leaves: readonly LeafRow[], issued: LeafRow[]): IssueReceipt {
    return (kind, entryId, facts) => {
      const logIndex = this.#edge.size + leaves.length + issued.length;
      const receipt = encodeReceipt({ ...facts, logIndex, logOrigin: this.#issuer_.logOrigin }, this.#issuer_.signer);
      issued.push({ index: logIndex, hash: leafHash(receipt.body), kind, entryId });
      return receipt;
    };
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
