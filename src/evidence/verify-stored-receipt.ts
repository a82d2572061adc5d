import { timingSafeEqual } from "node:crypto";
import { fromBinary, type JsonValue } from "@bufbuild/protobuf";
import { ReceiptSchema } from "../../gen/openexec/v1/receipt_pb.js";
import { canonicalJsonDigest } from "../json/canonical-digest.js";
import { CanonicalJsonError } from "../json/canonical-json.js";
import { JsonSyntaxError, parseStrictJson } from "../json/strict-json.js";
import type { LedgerStore } from "../ledger/store.js";
import { type EncodedReceipt, sha256, verifyReceiptSignature } from "../receipts/receipt.js";
import type { VerificationKey } from "../signing/ed25519-keys.js";
import { leafHash, verifyInclusion } from "../tlog/merkle-tree.js";
import type { TransparencyLog } from "./transparency-log.js";

/** A receipt check as the original /receipts/verify took it. */
export interface StoredReceiptClaim {
  readonly executionId: string;
  /** The claimed result: the JSON value, or a string holding its JSON text. Undefined: none given. */
  readonly result: JsonValue | undefined;
  /** The claimed hex receipt digest. */
  readonly receipt: string;
}

const hexDigest = /^[0-9a-f]{64}$/;

/**
 * True only when the execution exists and was executed, the receipt digest is
 * the one recorded for it (and still matches the recorded receipt bytes, which
 * carry this executor's valid signature and are a leaf of its transparency log),
 * and the claimed result is the recorded result. Every other case is false, never
 * an error: a verifier answers questions about evidence, it does not fail on them.
 */
export async function verifyStoredReceipt(
  evidence: { readonly store: LedgerStore; readonly receiptKey: VerificationKey; readonly log: TransparencyLog },
  claim: StoredReceiptClaim,
  maxResultDepth: number,
): Promise<boolean> {
  const { store, receiptKey, log } = evidence;
  const claimedDigest = claim.receipt.trim().toLowerCase();
  if (!hexDigest.test(claimedDigest) || claim.executionId === "") return false;
  const record = await store.findById(claim.executionId);
  if (record === undefined || record.status === "pending") return false;
  const { receipt } = record;
  if (!equal(Buffer.from(claimedDigest, "hex"), receipt.digest)) return false;
  if (!equal(sha256(receipt.body), receipt.digest)) return false;
  if (!signedBy(receiptKey, receipt)) return false;
  if (!(await inLog(log, receipt))) return false;
  // Only an executed receipt has a result: a denial, failure or interruption is
  // never valid here, whatever result is (or is not) claimed. Check those
  // receipts offline with a bundle (docs/RECEIPTS.md).
  if (record.status !== "executed") return false;
  return resultCandidates(claim.result, maxResultDepth).some((candidate) => {
    try {
      return equal(canonicalJsonDigest(candidate), record.resultDigest);
    } catch (error) {
      if (error instanceof CanonicalJsonError) return false;
      throw error;
    }
  });
}

/** The claimed value itself and, for a string, the value its JSON text denotes. */
function resultCandidates(result: JsonValue | undefined, maxDepth: number): JsonValue[] {
  if (result === undefined) return [];
  if (typeof result !== "string") return [result];
  try {
    return [result, parseStrictJson(result, { maxDepth })];
  } catch (error) {
    if (error instanceof JsonSyntaxError) return [result];
    throw error;
  }
}

/** The receipt names this log and is a leaf of the tree of its latest signed checkpoint. */
async function inLog(log: TransparencyLog, receipt: EncodedReceipt): Promise<boolean> {
  const { logIndex, logOrigin } = fromBinary(ReceiptSchema, receipt.body);
  if (logOrigin !== log.origin) return false;
  const proof = await log.inclusionProof(Number(logIndex), 0);
  return verifyInclusion(
    leafHash(receipt.body),
    proof.logIndex,
    proof.treeSize,
    proof.hashes,
    proof.checkpoint.rootHash,
  );
}

/** The stored receipt names this executor's key and carries its valid signature. */
function signedBy(key: VerificationKey, receipt: EncodedReceipt): boolean {
  if (fromBinary(ReceiptSchema, receipt.body).receiptKeyId !== key.keyId) return false;
  return verifyReceiptSignature(key, receipt.body, receipt.signature);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
