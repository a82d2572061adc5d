import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type InclusionProof,
  InclusionProofSchema,
  type TransparencyLogService,
} from "../../gen/openexec/v1/transparency_log_pb.js";
import { Rejection } from "../errors/reason.js";
import { issuedReceipt, logIndexOf, receiptBundle } from "../evidence/receipt-bundle.js";
import type { InclusionProofAnswer, TransparencyLog } from "../evidence/transparency-log.js";
import type { LedgerStore } from "../ledger/store.js";
import { signedReceiptOf } from "./execute-response.js";

/** openexec.v1.TransparencyLogService: checkpoints, proofs and offline-verification bundles. */
export function createTransparencyLogService(deps: {
  readonly store: LedgerStore;
  readonly log: TransparencyLog;
}): ServiceImpl<typeof TransparencyLogService> {
  const { store, log } = deps;
  return {
    async getCheckpoint() {
      const checkpoint = await log.checkpoint();
      return {
        checkpoint: checkpoint.note,
        origin: log.origin,
        treeSize: BigInt(checkpoint.treeSize),
        rootHash: checkpoint.rootHash,
      };
    },
    async getInclusionProof(request) {
      const receipt = await issuedReceipt(store, request.execId);
      const answer = await log.inclusionProof(logIndexOf(receipt), toSize(request.treeSize));
      return { proof: toProof(answer), checkpoint: answer.checkpoint.note };
    },
    async getConsistencyProof(request) {
      const oldSize = toSize(request.oldSize);
      const newSize = toSize(request.newSize);
      return {
        oldSize: request.oldSize,
        newSize: request.newSize,
        hashes: await log.consistencyProof(oldSize, newSize),
      };
    },
    async getReceiptBundle(request) {
      const bundle = await receiptBundle(store, log, request.execId);
      return {
        signedReceipt: signedReceiptOf(bundle.receipt),
        checkpoint: bundle.inclusion.checkpoint.note,
        inclusionProof: toProof(bundle.inclusion),
      };
    },
  };
}

function toProof(answer: InclusionProofAnswer): InclusionProof {
  return create(InclusionProofSchema, {
    logIndex: BigInt(answer.logIndex),
    treeSize: BigInt(answer.treeSize),
    hashes: answer.hashes,
  });
}

function toSize(value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Rejection("log_range_invalid", "tree size out of range");
  return Number(value);
}
