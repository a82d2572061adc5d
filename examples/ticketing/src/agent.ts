// An agent: creates a ticket over Connect with the typed client, retries the
// same request (a replay: the handler does not run again), and verifies the
// receipt offline with the executor's public key.
import { randomUUID } from "node:crypto";
import { createOpenExecClient, verifyReceiptOffline } from "openexec/client";

const baseUrl = process.env.OPENEXEC_URL ?? "http://127.0.0.1:5000";
const client = createOpenExecClient(baseUrl, { protocol: "connect" });

const request = {
  action: "ticket.create",
  payload: { title: "printer on fire", priority: "high" },
  // One nonce per intended action; a retry reuses it.
  nonce: `agent-${randomUUID()}`,
};
const first = await client.execution.execute(request);
const retry = await client.execution.execute(request);

const { key, publicKeyPem } = await client.info.getReceiptKey({});
const bundle = await client.log.getReceiptBundle({ execId: first.id });
if (bundle.signedReceipt === undefined) throw new Error("the bundle has no receipt");
const verdict = verifyReceiptOffline({
  publicKeyPem,
  signedReceipt: bundle.signedReceipt,
  result: first.result,
  checkpoint: bundle.checkpoint,
  inclusionProof: bundle.inclusionProof && {
    logIndex: Number(bundle.inclusionProof.logIndex),
    treeSize: Number(bundle.inclusionProof.treeSize),
    hashes: bundle.inclusionProof.hashes,
  },
});

process.stdout.write(
  `${JSON.stringify({
    id: first.id,
    status: first.status,
    result: first.result,
    replayed: retry.replayed,
    same_id: retry.id === first.id,
    receipt_key: key?.keyId,
    receipt_valid: verdict.valid,
    problems: verdict.problems,
  })}\n`,
);
