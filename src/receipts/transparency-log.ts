import { createPublicKey } from "node:crypto";
import { Rejection } from "../errors/reason.js";
import type { LedgerStore, StoredCheckpoint } from "../ledger/store.js";
import type { Logger } from "../log/logger.js";
import { formatCheckpointBody, type NoteSigner, signCheckpoint, verifySignedCheckpoint } from "./checkpoint.js";
import { consistencyProof, inclusionProof, MerkleFrontier } from "./merkle-tree.js";

export interface InclusionProofAnswer {
  readonly logIndex: number;
  readonly treeSize: number;
  readonly hashes: Buffer[];
  /** The signed checkpoint of `treeSize`. */
  readonly checkpoint: StoredCheckpoint;
}

/**
 * The receipts log: leaves are appended by the store inside each execution's
 * own transaction; this signs checkpoints of the tree and answers proofs.
 * The tree's right edge (a MerkleFrontier) is kept in memory and caught up
 * from the store, so a checkpoint costs O(new leaves + log n), not O(n).
 */
export class TransparencyLog {
  readonly #store: LedgerStore;
  readonly #signer: NoteSigner;
  readonly #logger: Logger;
  #frontier = new MerkleFrontier();
  /** Serialises checkpointing, so two callers never sign the same size twice. */
  #latest: Promise<StoredCheckpoint> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(store: LedgerStore, signer: NoteSigner, logger: Logger) {
    this.#store = store;
    this.#signer = signer;
    this.#logger = logger;
  }

  /** The log's origin: the first line of its checkpoints and its note key name. */
  get origin(): string {
    return this.#signer.name;
  }

  /**
   * Refuses a ledger whose log was kept under another origin or receipt key:
   * its receipts would stop verifying and its history could not be extended.
   */
  async assertContinuity(): Promise<void> {
    const latest = await this.#store.latestCheckpoint();
    if (latest === undefined) return;
    const verifier = {
      name: this.origin,
      publicKey: createPublicKey(this.#signer.privateKey),
      publicKeyRaw: this.#signer.publicKeyRaw,
    };
    if (verifySignedCheckpoint(latest.note, verifier, this.origin) === undefined) {
      const origin = latest.note.split("\n", 1)[0];
      throw new Error(
        `this ledger's log is "${origin}", signed by another receipt key or under another origin than ` +
          `"${this.origin}"; start with the OPENEXEC_RECEIPT_KEY and OPENEXEC_LOG_ORIGIN it was created with`,
      );
    }
  }

  /** Signs a checkpoint every `intervalMs` while the log grows. */
  start(intervalMs = 1000): void {
    this.#timer = setInterval(() => {
      this.checkpoint().catch((error: unknown) =>
        this.#logger.error({ err: error instanceof Error ? error.name : "" }, "checkpoint failed"),
      );
    }, intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** A checkpoint covering every leaf written so far: the stored one, or a new one if the log grew. */
  checkpoint(): Promise<StoredCheckpoint> {
    const previous = this.#latest ?? Promise.resolve(undefined);
    const next = previous.catch(() => undefined).then(() => this.#checkpointNow());
    this.#latest = next;
    return next;
  }

  async #checkpointNow(): Promise<StoredCheckpoint> {
    const size = await this.#store.logSize();
    if (size > this.#frontier.size) {
      for (const hash of await this.#store.leafHashes(this.#frontier.size, size)) this.#frontier.append(hash);
    }
    const latest = await this.#store.latestCheckpoint();
    if (latest !== undefined && latest.treeSize === this.#frontier.size) return latest;
    const rootHash = this.#frontier.root();
    const body = formatCheckpointBody({ origin: this.origin, size: this.#frontier.size, rootHash });
    const checkpoint = { treeSize: this.#frontier.size, rootHash, note: signCheckpoint(body, this.#signer) };
    await this.#store.saveCheckpoint(checkpoint);
    return checkpoint;
  }

  /** The proof that leaf `logIndex` is in the tree of a checkpoint (the latest when `treeSize` is 0). */
  async inclusionProof(logIndex: number, treeSize: number): Promise<InclusionProofAnswer> {
    const checkpoint = treeSize === 0 ? await this.checkpoint() : await this.#store.checkpointAt(treeSize);
    if (checkpoint === undefined) {
      throw new Rejection("checkpoint_not_found", `no checkpoint was signed at tree size ${treeSize}`);
    }
    if (logIndex >= checkpoint.treeSize) {
      throw new Rejection("log_range_invalid", `leaf ${logIndex} is not in the tree of size ${checkpoint.treeSize}`);
    }
    const leaves = await this.#store.leafHashes(0, checkpoint.treeSize);
    return {
      logIndex,
      treeSize: checkpoint.treeSize,
      hashes: inclusionProof(leaves, logIndex, checkpoint.treeSize),
      checkpoint,
    };
  }

  /** The proof that the tree of `newSize` extends the tree of `oldSize`. */
  async consistencyProof(oldSize: number, newSize: number): Promise<Buffer[]> {
    const size = await this.#store.logSize();
    if (!(0 <= oldSize && oldSize <= newSize && newSize <= size)) {
      throw new Rejection("log_range_invalid", `sizes must satisfy 0 <= old_size <= new_size <= ${size}`);
    }
    return consistencyProof(await this.#store.leafHashes(0, newSize), oldSize, newSize);
  }
}
