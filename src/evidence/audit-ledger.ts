import { timingSafeEqual } from "node:crypto";
import { fromBinary, type JsonValue } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Authorization, ExecutionStatus, ReceiptSchema } from "../../gen/openexec/v1/receipt_pb.js";
import { canonicalJsonDigest } from "../json/canonical-digest.js";
import { isStoredColumnError } from "../ledger/errors.js";
import type { LedgerStore, StoredCheckpoint } from "../ledger/store.js";
import { authorizationOf, sha256, verifyReceiptSignature } from "../receipts/receipt.js";
import type { VerificationKey } from "../signing/ed25519-keys.js";
import { verifySignedCheckpoint } from "../tlog/checkpoint.js";
import { emptyRoot, leafHash, MerkleFrontier } from "../tlog/merkle-tree.js";

/** Where the ledger stops agreeing with itself. */
export interface AuditDivergence {
  /** The log leaf, or the checkpoint's tree size, where it was found. */
  readonly leaf_index?: number;
  readonly tree_size?: number;
  /** The table and row it names. */
  readonly table?: "executions" | "denials" | "log_leaves" | "log_state" | "checkpoints" | "counters" | "freezes";
  readonly id?: string;
  /** The column holding a value of the wrong type (the ledger was edited outside OpenExec). */
  readonly column?: string;
  readonly problem: string;
}

/** The report `openexec audit` prints (snake_case, like every JSON this project writes). */
export interface AuditReport {
  readonly ok: boolean;
  readonly leaves: number;
  readonly checkpoints: number;
  /** Hex root of the recomputed tree. */
  readonly root_hash: string;
  readonly first_divergence: AuditDivergence | undefined;
}

/**
 * Walks the whole ledger: every log leaf against the receipt it names, every
 * receipt against its row and the executor's key, the tree rebuilt from the
 * receipts themselves, every checkpoint against that tree and its signature.
 * Stops at the first divergence and names it.
 */
export async function auditLedger(store: LedgerStore, key: VerificationKey): Promise<AuditReport> {
  const checkpoints = new Map<number, StoredCheckpoint>();
  const frontier = new MerkleFrontier();
  const report = (divergence: AuditDivergence | undefined): AuditReport => ({
    ok: divergence === undefined,
    leaves: frontier.size,
    checkpoints: checkpoints.size,
    root_hash: frontier.root().toString("hex"),
    first_divergence: divergence,
  });
  try {
    return await walk(store, key, checkpoints, frontier, report);
  } catch (error) {
    // A stored value of the wrong type, met wherever it is read: a divergence naming its row and column.
    if (!isStoredColumnError(error)) throw error;
    return report({ table: error.table, id: error.rowId, column: error.column, problem: error.problem });
  }
}

async function walk(
  store: LedgerStore,
  key: VerificationKey,
  checkpoints: Map<number, StoredCheckpoint>,
  frontier: MerkleFrontier,
  report: (divergence: AuditDivergence | undefined) => AuditReport,
): Promise<AuditReport> {
  for await (const checkpoint of store.checkpoints()) checkpoints.set(checkpoint.treeSize, checkpoint);
  let origin: string | undefined;

  /** The total each executed counter.add recorded last, by tenant and key, in log order. */
  const counterTotals = new Map<string, number>();
  const empty = checkpoints.get(0);
  if (empty !== undefined && !empty.rootHash.equals(emptyRoot())) {
    return report({ tree_size: 0, table: "checkpoints", problem: "the empty tree's checkpoint has a wrong root" });
  }

  for await (const entry of store.logEntries()) {
    const index = frontier.size;
    const table = entry.kind === "execution" ? "executions" : "denials";
    const at = { leaf_index: index, table, id: entry.entryId } as const;
    if (entry.leafIndex !== index) {
      return report({ leaf_index: index, table: "log_leaves", problem: `leaf ${index} is missing` });
    }
    const record = await store.findById(entry.entryId);
    if (
      record === undefined ||
      record.status === "pending" ||
      (record.status === "denied") !== (entry.kind === "denial")
    ) {
      return report({ ...at, problem: "the row this leaf names is missing" });
    }
    const { receipt } = record;
    if (!equal(sha256(receipt.body), receipt.digest))
      return report({ ...at, problem: "receipt digest does not match its bytes" });
    if (!equal(leafHash(receipt.body), entry.leafHash)) {
      return report({ ...at, problem: "the log leaf does not hash this receipt" });
    }
    if (!verifyReceiptSignature(key, receipt.body, receipt.signature)) {
      return report({ ...at, problem: "the receipt signature does not verify with the executor key" });
    }
    const facts = fromBinary(ReceiptSchema, receipt.body);
    origin ??= facts.logOrigin;
    const mismatch = [
      [facts.logIndex === BigInt(index), "log index"],
      [facts.logOrigin === origin, "log origin"],
      [facts.receiptKeyId === key.keyId, "receipt key"],
      [facts.executionId === record.executionId, "execution id"],
      [facts.tenantId === record.tenantId, "tenant"],
      [facts.action === record.action, "action"],
      [facts.nonce === record.nonce, "nonce"],
      [equal(facts.payloadDigest, record.payloadDigest), "payload digest"],
      [equal(facts.approvalDigest, record.approvalDigest ?? new Uint8Array(0)), "approval digest"],
      [
        facts.logicalTime !== undefined && timestampMs(facts.logicalTime) === record.logicalTime.getTime(),
        "logical time",
      ],
      [facts.status === statusOf(record.status), "status"],
      [
        facts.authorization === authorizationOf(facts.status, record.approvalDigest) ||
          // Receipts issued before 0.3 do not say how an execution was authorised.
          facts.authorization === Authorization.UNSPECIFIED,
        "authorization",
      ],
      [
        facts.reason === ("reason" in record ? record.reason : record.status === "interrupted" ? "interrupted" : ""),
        "reason",
      ],
      [
        record.status !== "executed" ||
          (equal(facts.resultDigest, record.resultDigest) &&
            equal(canonicalJsonDigest(record.result), record.resultDigest)),
        "result",
      ],
    ].find(([same]) => !same);
    if (mismatch !== undefined) return report({ ...at, problem: `the row's ${mismatch[1]} differs from its receipt` });
    // A consumed approval stays consumed: its single-use id must still be recorded.
    if (record.status !== "denied" && record.approvalDigest !== undefined && record.approvalDigest.length > 0) {
      const approvalId = await store.approvalIdOf(record.executionId);
      if (approvalId === undefined || approvalId === "") {
        return report({ ...at, problem: "the row's approval id is missing though its receipt records an approval" });
      }
    }
    if (record.status === "executed" && record.action === "counter.add") {
      const total = counterResult(record.result);
      if (total === undefined) return report({ ...at, problem: "the row's counter.add result is not {key, value}" });
      counterTotals.set(counterId(record.tenantId, total.key), total.value);
    }

    frontier.append(entry.leafHash);
    const checkpoint = checkpoints.get(frontier.size);
    if (checkpoint !== undefined) {
      const problem = checkCheckpoint(checkpoint, frontier.root(), origin, key);
      if (problem !== undefined) return report({ tree_size: frontier.size, table: "checkpoints", problem });
    }
  }
  const beyond = [...checkpoints.keys()].find((size) => size > frontier.size);
  if (beyond !== undefined) {
    return report({
      tree_size: beyond,
      table: "log_leaves",
      problem: `a checkpoint covers ${beyond} leaves but the log holds ${frontier.size}`,
    });
  }
  // The newest checkpoint covers the whole log (the server signs one at shutdown).
  const newest = Math.max(-1, ...checkpoints.keys());
  if (frontier.size > 0 && newest < frontier.size) {
    return report({
      leaf_index: Math.max(newest, 0),
      tree_size: frontier.size,
      table: "checkpoints",
      problem:
        newest < 0
          ? `the log holds ${frontier.size} leaves but no checkpoint is stored`
          : `no checkpoint covers the whole log: the newest covers ${newest} of ${frontier.size} leaves`,
    });
  }
  // The recorded size numbers the next leaf: any other value would reuse or skip an index.
  const recordedSize = await store.logSize();
  if (recordedSize !== frontier.size) {
    return report({
      tree_size: recordedSize,
      table: "log_state",
      problem: `the log's recorded size is ${recordedSize} but it holds ${frontier.size} leaves`,
    });
  }
  // Every finished execution and every denial is a leaf of the log.
  for await (const unlogged of store.unloggedEntries()) {
    return report({
      table: unlogged.kind === "execution" ? "executions" : "denials",
      id: unlogged.entryId,
      problem: "the row has no log leaf",
    });
  }
  // Each counter is the total the last executed counter.add for its key recorded, and nothing else.
  for await (const counter of store.counters()) {
    const id = counterId(counter.tenantId, counter.key);
    const expected = counterTotals.get(id);
    if (expected === undefined) {
      return report({
        table: "counters",
        id: counterName(id),
        problem: "the counter has no executed counter.add in the log",
      });
    }
    if (counter.value !== expected) {
      return report({
        table: "counters",
        id: counterName(id),
        problem: "the counter differs from the total its last executed counter.add recorded",
      });
    }
    counterTotals.delete(id);
  }
  const [lost] = counterTotals.keys();
  if (lost !== undefined) {
    return report({
      table: "counters",
      id: counterName(lost),
      problem: "the counter an executed counter.add recorded is missing",
    });
  }
  return report(undefined);
}

/** A counter's identity: tenant and key, unambiguously. */
function counterId(tenantId: string, key: string): string {
  return JSON.stringify([tenantId, key]);
}

/** How a counter is named in a report: `<tenant_id>/<key>`. */
function counterName(id: string): string {
  const [tenantId, key] = JSON.parse(id) as [string, string];
  return `${tenantId}/${key}`;
}

/** The {key, value} a counter.add result records, if it has that shape. */
function counterResult(result: JsonValue): { key: string; value: number } | undefined {
  if (result === null || typeof result !== "object" || Array.isArray(result)) return undefined;
  const { key, value } = result;
  if (typeof key !== "string" || typeof value !== "number" || !Number.isSafeInteger(value)) return undefined;
  return { key, value };
}

function checkCheckpoint(
  checkpoint: StoredCheckpoint,
  root: Buffer,
  origin: string | undefined,
  key: VerificationKey,
): string | undefined {
  if (!equal(checkpoint.rootHash, root)) return "the checkpoint's root differs from the recomputed tree";
  if (origin === undefined) return undefined;
  const signed = verifySignedCheckpoint(
    checkpoint.note,
    { name: origin, publicKey: key.key, publicKeyRaw: key.raw },
    origin,
  );
  if (signed === undefined) return "the checkpoint's signature does not verify";
  if (signed.size !== checkpoint.treeSize || !equal(signed.rootHash, root))
    return "the signed checkpoint says otherwise";
  return undefined;
}

function statusOf(status: "executed" | "failed" | "interrupted" | "denied"): ExecutionStatus {
  switch (status) {
    case "executed":
      return ExecutionStatus.EXECUTED;
    case "failed":
      return ExecutionStatus.FAILED;
    case "interrupted":
      return ExecutionStatus.INTERRUPTED;
    case "denied":
      return ExecutionStatus.DENIED;
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
