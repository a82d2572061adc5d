import { fromBinary } from "@bufbuild/protobuf";
import { ReceiptSchema } from "../../gen/openexec/v1/receipt_pb.js";
import { Rejection } from "../errors/reason.js";
import type { LedgerStore } from "../ledger/store.js";
import type { EncodedReceipt } from "../receipts/receipt.js";
import type { InclusionProofAnswer, TransparencyLog } from "./transparency-log.js";

/**
 * What a third party needs to check one receipt without the server. The result
 * stays out: the holder of an execution id may not be entitled to its result,
 * and whoever checks a result already has it.
 */
export interface ReceiptBundle {
  readonly receipt: EncodedReceipt;
  readonly inclusion: InclusionProofAnswer;
}

/** The receipt of an execution or denied attempt, with its inclusion proof against the latest checkpoint. */
export async function receiptBundle(
  store: LedgerStore,
  log: TransparencyLog,
  executionId: string,
): Promise<ReceiptBundle> {
  const receipt = await issuedReceipt(store, executionId);
  return { receipt, inclusion: await log.inclusionProof(logIndexOf(receipt), 0) };
}

/** The receipt issued under an execution (or denied attempt) id; execution_not_found when there is none yet. */
export async function issuedReceipt(store: LedgerStore, executionId: string): Promise<EncodedReceipt> {
  const record = await store.findById(executionId);
  if (record === undefined || record.status === "pending") {
    throw new Rejection("execution_not_found", "no receipt has been issued under this id");
  }
  return record.receipt;
}

/** The log index a stored receipt carries. */
export function logIndexOf(receipt: EncodedReceipt): number {
  return Number(fromBinary(ReceiptSchema, receipt.body).logIndex);
}
