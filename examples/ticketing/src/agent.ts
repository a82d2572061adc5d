// An agent: creates a ticket over Connect with the typed client, retries the
// same request (a replay: the handler does not run again), and verifies the
// receipt offline with the executor's public key.
import { randomUUID } from "node:crypto";
import {
  createOpenExecClient,
  ExecutionStatus,
  receiptEvidence,
  resultOf,
  verifyReceiptOffline,
} from "openexec/client";

const baseUrl = process.env.OPENEXEC_URL ?? "http://127.0.0.1:5000";
const client = createOpenExecClient(baseUrl, { protocol: "connect" });

const request = {
  action: "ticket.create",
  payload: { title: "printer on fire", priority: "high" },
  // One nonce per intended action; a retry reuses it, so the ticket is opened once.
  nonce: `agent-${randomUUID()}`,
};
const first = await client.execution.execute(request);
const retry = await client.execution.execute(request);

// Offline verification: the executor's key, the receipt bundle (receipt, signed checkpoint,
// inclusion proof) and the result the agent holds; nothing else is trusted.
const { publicKeyPem } = await client.info.getReceiptKey({});
const bundle = await client.log.getReceiptBundle({ execId: first.id });
const evidence = receiptEvidence(publicKeyPem, bundle, resultOf(first));
if (typeof evidence === "string") throw new Error(evidence);
const verdict = verifyReceiptOffline(evidence);

process.stdout.write(
  `${JSON.stringify({
    id: first.id,
    status: ExecutionStatus[first.status],
    result: resultOf(first),
    replayed: retry.replayed && retry.id === first.id,
    receipt_valid: verdict.valid,
    problems: verdict.problems,
  })}\n`,
);
