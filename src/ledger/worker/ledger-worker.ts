/**
 * The ledger's writer thread: it owns the SQLite connection (held with an
 * exclusive lock, so reads come here too), the group commit, the log's tree
 * edge and leaf indices, and receipt and checkpoint signing. The main thread
 * keeps HTTP, parsing and approval verification, and never blocks on disk.
 */
import { parentPort, workerData } from "node:worker_threads";
import { loadReceiptKey } from "../../receipts/receipt-key.js";
import type { Ledger } from "../ledger.js";
import { SqliteLedgerStore } from "../sqlite-store.js";
import {
  serializeError,
  TurnBatcher,
  type WorkerAnswer,
  type WorkerCall,
  type WorkerCalls,
  type WorkerMessage,
  type WorkerStart,
} from "./protocol.js";

const port = parentPort;
if (port === null) throw new Error("ledger-worker runs as a worker thread");
const start = workerData as WorkerStart;
const post = (message: WorkerMessage) => port.postMessage(message);
const answers = new TurnBatcher<WorkerAnswer>((batch) => post({ kind: "answers", answers: batch }));

/** Methods of the Ledger the main thread may call, by name: nothing else is reachable. */
const callable = new Set([
  "commitStats",
  "reserve",
  "complete",
  "reserveAndComplete",
  "recordDenial",
  "recoverInterrupted",
  "find",
  "findById",
  "approvalIdOf",
  "logSize",
  "readTiles",
  "proofHashes",
  "latestInclusion",
  "readEntries",
  "latestCheckpoint",
  "checkpointAt",
  "check",
  "freezes",
  "setFreeze",
  "clearFreeze",
]);
/** Whole-ledger scans, answered as arrays. */
const scans = new Set(["logEntries", "checkpoints", "counters", "unloggedEntries"]);

let ledger: Ledger;
try {
  const key = loadReceiptKey(start.receiptKeyPem, "");
  ledger = SqliteLedgerStore.open(
    start.path,
    { signer: { keyId: key.public.keyId, sign: key.sign }, logOrigin: start.logOrigin },
    {
      leaseMs: start.leaseMs,
      identity: start.identity,
      onWarning: (message) => post({ kind: "warning", message }),
    },
  );
  const answer = async (call: WorkerCall): Promise<unknown> => {
    if (call.method === "checkpoint")
      return ledger.checkpoint(key.noteSigner(String(call.args[0])), Number(call.args[1] ?? 0));
    if (call.method === "startLeases") {
      ledger.startLeases((error) => post({ kind: "lease_error", error: serializeError(error) }));
      return undefined;
    }
    if (call.method === "close") {
      await ledger.close();
      return undefined;
    }
    if (scans.has(call.method)) {
      const items: unknown[] = [];
      for await (const item of (ledger as unknown as Record<string, () => AsyncIterable<unknown>>)[call.method]?.() ??
        []) {
        items.push(item);
      }
      return items;
    }
    if (!callable.has(call.method)) throw new Error(`the ledger has no method ${call.method}`);
    const method = (ledger as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>)[call.method];
    return method?.apply(ledger, [...call.args]);
  };
  port.on("message", (calls: WorkerCalls) => {
    for (const call of calls) {
      answer(call).then(
        (value) => answers.push({ kind: "result", id: call.id, value }),
        (error: unknown) => answers.push({ kind: "error", id: call.id, error: serializeError(error) }),
      );
    }
  });
  post({ kind: "ready", schemaVersion: ledger.schemaVersion });
} catch (error) {
  post({ kind: "failed", error: serializeError(error) });
}
