import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { JsonValue } from "@bufbuild/protobuf";
import { ExecutionStatus } from "../../gen/openexec/v1/receipt_pb.js";
import { parseStrictJson } from "../json/strict-json.js";
import { evidenceFromBundle, type OfflineReceiptEvidence, verifyReceiptOffline } from "../receipts/verify-offline.js";
import { UsageError } from "./ledger-access.js";

export const verifyReceiptHelp = `Usage: openexec verify-receipt --key PUBLIC_KEY_PEM --bundle FILE
       openexec verify-receipt --key PUBLIC_KEY_PEM --receipt FILE [--result FILE] [--checkpoint FILE] [--proof FILE]

Verifies a receipt offline, without the server: the executor's signature, the
result against the receipt's result digest, the checkpoint's signature and the
receipt's inclusion in the checkpoint's tree. Valid requires exactly one
signature (by --key), a checkpoint signed by that key for the receipt's log and
an inclusion proof that verifies against it; the result is checked when given.

  --key FILE         the executor's receipt public key (GET /receipts/key, public_key_pem)
  --bundle FILE      a bundle from GET /receipts/bundle?exec_id=ID (receipt, checkpoint, proof)
  --receipt FILE     a signed receipt: the signed_receipt JSON of an /execute answer
  --result FILE      the result JSON to check (with --bundle or --receipt)
  --checkpoint FILE  a signed checkpoint (GET /log/checkpoint)
  --proof FILE       an inclusion proof {log_index, tree_size, hashes} (GET /log/inclusion)

Prints {"valid":..., "problems":[...], ...}. Exit status: 0 valid, 1 invalid, 2 unusable input.
`;

export async function verifyReceiptCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      key: { type: "string" },
      bundle: { type: "string" },
      receipt: { type: "string" },
      result: { type: "string" },
      checkpoint: { type: "string" },
      proof: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(verifyReceiptHelp);
    return 0;
  }
  if (values.key === undefined || (values.bundle === undefined) === (values.receipt === undefined)) {
    throw new UsageError("give --key and exactly one of --bundle or --receipt (see --help)");
  }
  const publicKeyPem = readText(values.key);
  let evidence: OfflineReceiptEvidence;
  if (values.bundle !== undefined) {
    const parsed = evidenceFromBundle(publicKeyPem, readJson(values.bundle));
    if (typeof parsed === "string") throw new UsageError(parsed);
    // Bundles carry no result: --result adds the one to check.
    evidence = values.result === undefined ? parsed : { ...parsed, result: readJson(values.result) };
  } else {
    const proofJson = values.proof === undefined ? undefined : readJson(values.proof);
    const parsed = evidenceFromBundle(publicKeyPem, {
      signed_receipt: readJson(values.receipt as string),
      ...(values.result === undefined ? {} : { result: readJson(values.result) }),
      ...(values.checkpoint === undefined ? {} : { checkpoint: readText(values.checkpoint) }),
      ...(proofJson === undefined ? {} : { inclusion_proof: proofJson }),
    });
    if (typeof parsed === "string") throw new UsageError(parsed);
    evidence = parsed;
  }
  const verdict = verifyReceiptOffline(evidence);
  const receipt = verdict.receipt;
  process.stdout.write(
    `${JSON.stringify({
      valid: verdict.valid,
      problems: verdict.problems,
      ...(receipt === undefined
        ? {}
        : {
            execution_id: receipt.executionId,
            status: ExecutionStatus[receipt.status].toLowerCase(),
            log_index: Number(receipt.logIndex),
            log_origin: receipt.logOrigin,
            checked: {
              signature: true,
              result: evidence.result !== undefined,
              checkpoint: evidence.checkpoint !== undefined,
              inclusion: evidence.inclusionProof !== undefined,
            },
          }),
    })}\n`,
  );
  return verdict.valid ? 0 : 1;
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
}

function readJson(path: string): JsonValue {
  const text = readText(path);
  try {
    return parseStrictJson(text, { maxDepth: 64 });
  } catch (error) {
    throw new UsageError(`${path} is not JSON: ${(error as Error).message}`);
  }
}
