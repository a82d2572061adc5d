import { createPublicKey } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Rejection } from "../errors/reason.js";
import type { LedgerStore, StoredCheckpoint } from "../ledger/store.js";
import type { Logger } from "../log/logger.js";
import { type NoteSigner, verifySignedCheckpoint } from "../tlog/checkpoint.js";
import { consistencyPlan, inclusionPlan } from "../tlog/proof-plan.js";

export interface InclusionProofAnswer {
  readonly logIndex: number;
  readonly treeSize: number;
  readonly hashes: Buffer[];
  /** The signed checkpoint of `treeSize`. */
  readonly checkpoint: StoredCheckpoint;
}

/** How long a question about a receipt no checkpoint covers yet waits for the next one. */
export const coverageWaitMs = 2000;

/**
 * The receipts log. Leaves and tiles are written by the ledger inside each
 * execution's own transaction; this publishes signed checkpoints on a timer
 * (at most `intervalMs` after the log grows) and at shutdown, and answers
 * proofs from O(log n) stored tiles. Reads never write: a GET or a read RPC
 * serves the latest stored checkpoint and never signs one.
 */
export class TransparencyLog {
  readonly #store: LedgerStore;
  readonly #signer: NoteSigner;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | undefined;
  /** Serialises publication, so two callers never sign the same size twice. */
  #publishing: Promise<StoredCheckpoint | undefined> | undefined;
  #newest: { readonly treeSize: number; readonly seenAtMs: number } | undefined;

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

  /** Publishes a checkpoint now (at start: the log is never without one), then every `intervalMs` while it grows. */
  async start(intervalMs = 1000): Promise<void> {
    await this.publish();
    // A failure is logged once, not at every tick, until publication works again.
    let failing = false;
    // Replicas on one database each run this timer; at most one signs per
    // interval (less a tenth, for timer jitter), the one that claims it.
    const minIntervalMs = Math.floor(intervalMs * 0.9);
    this.#timer = setInterval(() => {
      this.publish(minIntervalMs).then(
        () => {
          if (failing) this.#logger.info("checkpoint publication recovered");
          failing = false;
        },
        (error: unknown) => {
          if (!failing) {
            this.#logger.error(
              { err: error instanceof Error ? error.name : "", problem: error instanceof Error ? error.message : "" },
              "checkpoint failed",
            );
          }
          failing = true;
        },
      );
    }, intervalMs);
    this.#timer.unref();
  }

  /** The newest checkpoint publication has returned (this process's or another replica's), and when it was first seen. */
  newestCheckpoint(): { readonly treeSize: number; readonly seenAtMs: number } | undefined {
    return this.#newest;
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /**
   * Signs a checkpoint of everything committed, unless the latest covers it
   * (the timer's and shutdown's job), or another replica signed one less than
   * `minIntervalMs` ago. 0 (at start and shutdown) waits for a replica that
   * is publishing, then signs what its checkpoint does not cover.
   */
  publish(minIntervalMs = 0): Promise<StoredCheckpoint | undefined> {
    const previous = this.#publishing ?? Promise.resolve(undefined);
    const next = previous
      .catch(() => undefined)
      .then(() => this.#store.checkpoint(this.#signer, minIntervalMs))
      .then((checkpoint) => {
        if (checkpoint !== undefined && checkpoint.treeSize !== this.#newest?.treeSize) {
          this.#newest = { treeSize: checkpoint.treeSize, seenAtMs: Date.now() };
        }
        return checkpoint;
      });
    this.#publishing = next;
    return next;
  }

  /** The latest published checkpoint. */
  async checkpoint(): Promise<StoredCheckpoint> {
    const latest = await this.#store.latestCheckpoint();
    if (latest === undefined) {
      throw new Rejection("checkpoint_pending", "no checkpoint has been published yet; retry in a second");
    }
    return latest;
  }

  /**
   * The proof that leaf `logIndex` is in the tree of a checkpoint: the one of
   * `treeSize`, or (0) the latest, waiting (at most 2 s) for one that covers
   * the leaf when the leaf is newer than the latest checkpoint.
   */
  async inclusionProof(logIndex: number, treeSize: number): Promise<InclusionProofAnswer> {
    if (treeSize === 0) return this.#covering(logIndex);
    const checkpoint = await this.#store.checkpointAt(treeSize);
    if (checkpoint === undefined) {
      throw new Rejection("checkpoint_not_found", `no checkpoint was signed at tree size ${treeSize}`);
    }
    if (logIndex >= checkpoint.treeSize) {
      throw new Rejection("log_range_invalid", `leaf ${logIndex} is not in the tree of size ${checkpoint.treeSize}`);
    }
    return {
      logIndex,
      treeSize: checkpoint.treeSize,
      hashes: await this.#store.proofHashes(inclusionPlan(logIndex, checkpoint.treeSize)),
      checkpoint,
    };
  }

  /** The proof that the tree of `newSize` extends the tree of `oldSize`. */
  async consistencyProof(oldSize: number, newSize: number): Promise<Buffer[]> {
    const size = await this.#store.logSize();
    if (!(0 <= oldSize && oldSize <= newSize && newSize <= size)) {
      throw new Rejection("log_range_invalid", `sizes must satisfy 0 <= old_size <= new_size <= ${size}`);
    }
    return this.#store.proofHashes(consistencyPlan(oldSize, newSize));
  }

  /** The proof against the latest checkpoint once one covers `logIndex`; a clear refusal if none does within the wait. */
  async #covering(logIndex: number): Promise<InclusionProofAnswer> {
    const deadline = Date.now() + coverageWaitMs;
    for (;;) {
      // The checkpoint and the proof in one read: one call to the ledger's thread, not two.
      const { checkpoint, hashes } = await this.#store.latestInclusion(logIndex);
      if (checkpoint !== undefined && hashes !== undefined) {
        return { logIndex, treeSize: checkpoint.treeSize, hashes, checkpoint };
      }
      if (Date.now() >= deadline) {
        throw new Rejection(
          "checkpoint_pending",
          "no checkpoint covers this receipt yet; checkpoints are published every second, retry shortly",
        );
      }
      await sleep(50);
    }
  }
}
