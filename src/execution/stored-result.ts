import { timingSafeEqual } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { ReceiptSchema } from "../../gen/openexec/v1/receipt_pb.js";
import { canonicalJsonDigest } from "../json/canonical-digest.js";
import type { FinishedExecution } from "../ledger/store.js";

/**
 * True when a stored executed record's result is the one its receipt signs:
 * the canonical digest of the stored result equals the stored result digest
 * and the receipt's result_digest. A ledger edited after the fact (result_json,
 * result_digest) fails this, and the stored result must then not be served.
 */
export function storedResultMatchesReceipt(record: Extract<FinishedExecution, { status: "executed" }>): boolean {
  try {
    const digest = canonicalJsonDigest(record.result);
    const signed = fromBinary(ReceiptSchema, record.receipt.body).resultDigest;
    return equal(digest, record.resultDigest) && equal(digest, signed);
  } catch {
    // A result that has no canonical encoding, or receipt bytes that do not decode: not intact.
    return false;
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
