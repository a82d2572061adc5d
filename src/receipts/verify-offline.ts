import { fromBinary, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { type SignedEnvelope, SignedEnvelopeSchema } from "../../gen/openexec/v1/envelope_pb.js";
import { ExecutionStatus, type Receipt, ReceiptSchema } from "../../gen/openexec/v1/receipt_pb.js";
import { CanonicalJsonError, canonicalJsonBytes } from "../json/canonical-json.js";
import { KeyError, parsePublicKeyPem, type VerificationKey } from "../signing/ed25519-keys.js";
import { verifySignedCheckpoint } from "../tlog/checkpoint.js";
import { leafHash, verifyInclusion } from "../tlog/merkle-tree.js";
import { receiptPayloadType, sha256, verifyReceiptSignature } from "./receipt.js";

export interface InclusionProofEvidence {
  readonly logIndex: number;
  readonly treeSize: number;
  readonly hashes: Uint8Array[];
}

/**
 * What a third party holds about one receipt. The checkpoint and the inclusion
 * proof are optional here, but without them the verdict is invalid.
 */
export interface OfflineReceiptEvidence {
  /** The executor's receipt public key (PEM SPKI), obtained out of band or from GET /receipts/key. */
  readonly publicKeyPem: string;
  readonly signedReceipt: SignedEnvelope;
  /** The claimed result; undefined: not checked. */
  readonly result?: JsonValue | undefined;
  /** A C2SP signed checkpoint of the executor's log; required for a valid verdict. */
  readonly checkpoint?: string | undefined;
  /** The receipt's inclusion proof against `checkpoint`; required for a valid verdict. */
  readonly inclusionProof?: InclusionProofEvidence | undefined;
}

export interface OfflineVerdict {
  readonly valid: boolean;
  /** Each failed check, in words; empty when valid. */
  readonly problems: readonly string[];
  /** The decoded receipt, once its signature held. */
  readonly receipt: Receipt | undefined;
}

/**
 * Verifies a receipt without the server or its database: the executor's
 * signature over the exact receipt bytes, the result against the result
 * digest (when one is claimed), the checkpoint's signature, and the receipt's
 * inclusion in the checkpoint's tree. Valid only when the signature, the
 * checkpoint and the inclusion proof were all given and all hold: what was not
 * checked is never called valid. Also what `openexec verify-receipt` runs.
 */
export function verifyReceiptOffline(evidence: OfflineReceiptEvidence): OfflineVerdict {
  const problems: string[] = [];
  const fail = (problem: string): OfflineVerdict => ({
    valid: false,
    problems: [...problems, problem],
    receipt: undefined,
  });
  let key: VerificationKey;
  try {
    key = parsePublicKeyPem(evidence.publicKeyPem);
  } catch (error) {
    if (error instanceof KeyError) return fail(`the public key: ${error.message}`);
    throw error;
  }

  // 1. The executor signed these exact bytes.
  const envelope = evidence.signedReceipt;
  if (envelope.payloadType !== receiptPayloadType) return fail(`payload_type is not ${receiptPayloadType}`);
  // Exactly one signature (docs/RECEIPTS.md): a second entry, even one nothing checks, is refused.
  if (envelope.signatures.length !== 1) {
    return fail(`signatures must hold exactly one entry, not ${envelope.signatures.length}`);
  }
  const signature = envelope.signatures.find((s) => s.keyId === key.keyId);
  if (signature === undefined) return fail(`no signature by key ${key.keyId}`);
  if (!verifyReceiptSignature(key, envelope.payload, signature.sig)) {
    return fail("the receipt signature does not verify");
  }
  let receipt: Receipt;
  try {
    receipt = fromBinary(ReceiptSchema, envelope.payload);
  } catch {
    return fail("the signed payload is not a Receipt");
  }
  if (receipt.receiptKeyId !== key.keyId) problems.push("the receipt names another receipt key");

  // 2. The result, if one is claimed.
  if (evidence.result !== undefined) {
    if (receipt.status === ExecutionStatus.EXECUTED) {
      let digest: Buffer | undefined;
      try {
        digest = sha256(canonicalJsonBytes(evidence.result));
      } catch (error) {
        if (!(error instanceof CanonicalJsonError)) throw error;
      }
      if (digest === undefined || !digest.equals(receipt.resultDigest)) problems.push("the result does not match");
    } else if (evidence.result !== null) {
      problems.push("the receipt records no result, but one was claimed");
    }
  }

  // 3. The checkpoint and the inclusion proof: both required, since a receipt
  // not shown to be in the signed log is not valid evidence.
  if (evidence.checkpoint === undefined) problems.push("no checkpoint was given: the log inclusion is not checked");
  if (evidence.inclusionProof === undefined) {
    problems.push("no inclusion proof was given: the log inclusion is not checked");
  }
  if (evidence.checkpoint !== undefined) {
    const checkpoint = verifySignedCheckpoint(
      evidence.checkpoint,
      { name: receipt.logOrigin, publicKey: key.key, publicKeyRaw: key.raw },
      receipt.logOrigin,
    );
    if (checkpoint === undefined) {
      problems.push("the checkpoint is not signed by this executor for this receipt's log");
    } else if (evidence.inclusionProof !== undefined) {
      const proof = evidence.inclusionProof;
      if (BigInt(proof.logIndex) !== receipt.logIndex) problems.push("the proof is for another log index");
      else if (proof.treeSize !== checkpoint.size) problems.push("the proof is for another tree size");
      else if (
        !verifyInclusion(leafHash(envelope.payload), proof.logIndex, proof.treeSize, proof.hashes, checkpoint.rootHash)
      ) {
        problems.push("the inclusion proof does not verify against the checkpoint");
      }
    }
  }
  return { valid: problems.length === 0, problems, receipt };
}

/** Reads the bundle JSON served by GET /receipts/bundle (docs/RECEIPTS.md). */
export function evidenceFromBundle(publicKeyPem: string, bundle: unknown): OfflineReceiptEvidence | string {
  if (bundle === null || typeof bundle !== "object" || Array.isArray(bundle)) return "the bundle must be a JSON object";
  const { signed_receipt, result, checkpoint, inclusion_proof } = bundle as Record<string, unknown>;
  let signedReceipt: SignedEnvelope;
  try {
    signedReceipt = fromJson(SignedEnvelopeSchema, signed_receipt as JsonValue);
  } catch {
    return "signed_receipt is not a SignedEnvelope";
  }
  if (checkpoint !== undefined && typeof checkpoint !== "string") return "checkpoint must be the signed note text";
  const proof = inclusion_proof === undefined ? undefined : parseInclusionProof(inclusion_proof);
  if (typeof proof === "string") return proof;
  return { publicKeyPem, signedReceipt, result: result as JsonValue | undefined, checkpoint, inclusionProof: proof };
}

function parseInclusionProof(value: unknown): InclusionProofEvidence | string {
  const { log_index, tree_size, hashes } = (value ?? {}) as Record<string, unknown>;
  if (!Number.isSafeInteger(log_index) || !Number.isSafeInteger(tree_size) || !Array.isArray(hashes)) {
    return "inclusion_proof must be {log_index, tree_size, hashes}";
  }
  if (!hashes.every((h) => typeof h === "string" && /^[0-9a-f]{64}$/.test(h))) {
    return "inclusion_proof hashes must be 64 lowercase hex digits each";
  }
  return {
    logIndex: log_index as number,
    treeSize: tree_size as number,
    hashes: hashes.map((h) => Buffer.from(h as string, "hex")),
  };
}
