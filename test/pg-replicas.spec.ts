/**
 * The PostgreSQL ledger shared by replicas, proven with real server processes
 * on the machine's PostgreSQL: duplicates across replicas and protocols run
 * once, the replicas keep one transparency log, a replica with another
 * identity refuses to start, and a duplicate of an execution running on
 * another replica waits for its outcome.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { SignedEnvelopeSchema } from "../gen/openexec/v1/envelope_pb.js";
import { ExecutionService } from "../gen/openexec/v1/execution_pb.js";
import { ExecutionStatus } from "../gen/openexec/v1/receipt_pb.js";
import { reasonOf } from "../src/api/connect-errors.js";
import { verifyReceiptOffline } from "../src/receipts/verify-offline.js";
import { parsePublicKeyPem } from "../src/signing/ed25519-keys.js";
import { parseSignedCheckpoint, verifySignedCheckpoint } from "../src/tlog/checkpoint.js";
import { verifyConsistency } from "../src/tlog/merkle-tree.js";
import { type AnyJson, clientFor, getJson, type ProtocolName, postJson } from "./support/clients.js";
import {
  adminQuery,
  freshSchema,
  type PostgresSchema,
  postgresSkipReason,
  sharedPostgresUrl,
} from "./support/postgres.js";
import {
  auditSharedLedger,
  generateReceiptKeyPem,
  type Replica,
  serveCommand,
  spawnReplicaProcess,
  startReplicas,
  stopAll,
} from "./support/replica.js";

const skip = await postgresSkipReason();

/** The URL of `schema` whose connections also carry `openexec.replica` (read back by a column default). */
function replicaUrl(schema: string, replica: string): string {
  const parsed = new URL(sharedPostgresUrl);
  parsed.searchParams.set("options", `-c search_path=${schema} -c openexec.replica=${replica}`);
  return parsed.toString();
}

type Way = "rest" | Extract<ProtocolName, "connect-json" | "grpc" | "grpc-web">;
const ways: readonly Way[] = ["rest", "connect-json", "grpc", "grpc-web"];

/** What every answer to one request must agree on. */
interface Answer {
  readonly id: string;
  readonly result: JsonValue;
  readonly receipt: string;
  readonly executed: boolean;
  readonly replayed: boolean;
}

describe("PostgreSQL: replicas on one ledger", { skip, timeout: 180_000 }, () => {
  let schema: PostgresSchema;
  let replicas: Replica[] = [];
  /** Replica 3 gives up waiting on another replica's pending execution after 200 ms. */
  let impatient: Replica;
  let keyPem: string;
  const clients = new Map<string, Client<typeof ExecutionService>>();

  before(async () => {
    schema = await freshSchema();
    keyPem = generateReceiptKeyPem();
    const started = await startReplicas(
      4,
      { OPENEXEC_RECEIPT_KEY: keyPem, OPENEXEC_CHECKPOINT_INTERVAL_MS: "100" },
      (i) => ({
        OPENEXEC_DB_URL: replicaUrl(schema.name, `r${i}`),
        ...(i === 3 ? { OPENEXEC_IN_PROGRESS_WAIT_MS: "200" } : {}),
      }),
    );
    replicas = started.slice(0, 3);
    impatient = started[3] as Replica;
    // Which replica signed each checkpoint: the signing session's openexec.replica setting.
    await adminQuery(
      schema.url,
      "ALTER TABLE checkpoints ADD COLUMN signed_by TEXT DEFAULT current_setting('openexec.replica', true)",
    );
  });
  after(async () => {
    await stopAll([...replicas, impatient]);
    await schema?.drop();
  });

  function client(replica: Replica, way: Exclude<Way, "rest">): Client<typeof ExecutionService> {
    const key = `${replica.url} ${way}`;
    let c = clients.get(key);
    if (c === undefined) {
      c = clientFor(ExecutionService, way, replica.url);
      clients.set(key, c);
    }
    return c;
  }

  async function execute(replica: Replica, way: Way, request: { action: string; payload: AnyJson; nonce: string }) {
    if (way === "rest") {
      const answer = await postJson(`${replica.url}/execute`, request);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      return {
        id: answer.body.id,
        result: answer.body.result,
        receipt: answer.body.receipt,
        executed: answer.body.status === "executed",
        replayed: answer.body.replayed,
      } satisfies Answer;
    }
    const answer = await client(replica, way).execute(request);
    return {
      id: answer.id,
      result: answer.result === undefined ? null : toJson(ValueSchema, answer.result),
      receipt: answer.receipt,
      executed: answer.status === ExecutionStatus.EXECUTED,
      replayed: answer.replayed,
    } satisfies Answer;
  }

  it("runs 64 concurrent duplicates over 3 replicas and 4 protocols exactly once, 20 times", async () => {
    const delta = 7;
    const key = `dup-${randomBytes(3).toString("hex")}`;
    for (let trial = 1; trial <= 20; trial++) {
      const nonce = `dup-${trial}-${randomBytes(6).toString("hex")}`;
      const request = { action: "counter.add", payload: { key, delta }, nonce };
      // Request i goes to replica i % 3 over way i % 4: all 12 pairs, each at least 5 times.
      const answers = await Promise.all(
        Array.from({ length: 64 }, (_, i) => execute(replicas[i % 3] as Replica, ways[i % 4] as Way, request)),
      );
      const first = answers[0] as Answer;
      for (const answer of answers) {
        assert.equal(answer.id, first.id, `trial ${trial}: one execution id`);
        assert.equal(answer.receipt, first.receipt, `trial ${trial}: one receipt`);
        assert.deepEqual(answer.result, { key, value: trial * delta }, `trial ${trial}: the counter moved once`);
        assert.equal(answer.executed, true);
      }
      assert.equal(answers.filter((a) => !a.replayed).length, 1, `trial ${trial}: exactly one answer ran it`);
      const stored = await adminQuery(schema.url, "SELECT value FROM counters WHERE tenant_id = 'demo' AND key = $1", [
        key,
      ]);
      assert.deepEqual(stored, [{ value: String(trial * delta) }]);
      const rows = await adminQuery(schema.url, "SELECT execution_id, status FROM executions WHERE nonce = $1", [
        nonce,
      ]);
      assert.deepEqual(rows, [{ execution_id: first.id, status: "executed" }]);
    }
  });

  it("keeps one log: receipts from each replica verify against a checkpoint from another; checkpoints signed by different replicas are consistent", async () => {
    const publicKeyPem = await (await fetch(`${replicas[0]?.url}/receipts/key.pem`)).text();
    const key = parsePublicKeyPem(publicKeyPem);
    // Rounds of executions on every replica, until checkpoints signed by at least two replicas exist.
    const executed: { replica: number; body: AnyJson }[] = [];
    for (let round = 0; round < 30; round++) {
      for (let r = 0; r < 3; r++) {
        const answer = await postJson(`${replicas[r]?.url}/execute`, {
          action: "echo",
          payload: { round, replica: r },
          nonce: `log-${round}-${r}-${randomBytes(4).toString("hex")}`,
        });
        assert.equal(answer.status, 200);
        executed.push({ replica: r, body: answer.body });
      }
      await new Promise((resolve) => setTimeout(resolve, 150));
      const signers = await adminQuery(schema.url, "SELECT DISTINCT signed_by FROM checkpoints WHERE tree_size > 0");
      if (round >= 2 && signers.length >= 2) break;
    }

    // One checkpoint, from replica 1, covering every receipt.
    let note = "";
    for (let attempt = 0; attempt < 50; attempt++) {
      const response = await fetch(`${replicas[1]?.url}/log/checkpoint`);
      assert.equal(response.status, 200);
      note = await response.text();
      const parsed = parseSignedCheckpoint(note);
      assert.notEqual(typeof parsed, "string");
      if (typeof parsed !== "string" && parsed.size >= executed.length) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const checkpoint = verifySignedCheckpoint(note, {
      name: `openexec/${key.keyId}`,
      publicKey: key.key,
      publicKeyRaw: key.raw,
    });
    assert.ok(checkpoint !== undefined, "the checkpoint is signed by the ledger's receipt key");
    assert.ok(checkpoint.size >= executed.length, `the checkpoint covers all ${executed.length} receipts`);

    for (const { replica, body } of executed) {
      // The proof from a third replica, at the size of the checkpoint replica 1 served.
      const prover = replicas[(replica + 2) % 3] as Replica;
      const proof = await getJson(`${prover.url}/log/inclusion?exec_id=${body.id}&tree_size=${checkpoint.size}`);
      assert.equal(proof.status, 200, JSON.stringify(proof.body));
      const verdict = verifyReceiptOffline({
        publicKeyPem,
        signedReceipt: fromJson(SignedEnvelopeSchema, body.signed_receipt),
        result: body.result,
        checkpoint: note,
        inclusionProof: {
          logIndex: proof.body.log_index,
          treeSize: proof.body.tree_size,
          hashes: proof.body.hashes.map((h: string) => Buffer.from(h, "hex")),
        },
      });
      assert.deepEqual(verdict.problems, [], `receipt of ${body.id} from replica ${replica}`);
      assert.equal(verdict.valid, true);
    }

    // Every checkpoint any replica signed, in order of size: each extends the one before.
    const signed = await adminQuery<{ tree_size: string; note: string; signed_by: string | null }>(
      schema.url,
      "SELECT tree_size, note, signed_by FROM checkpoints WHERE tree_size > 0 ORDER BY tree_size",
    );
    const bySigner = new Set(signed.map((row) => row.signed_by));
    assert.ok(bySigner.size >= 2, `checkpoints signed by ${[...bySigner].join(", ")}`);
    assert.ok(!bySigner.has(null), "every checkpoint was signed by a replica");
    const verified = signed.map((row) => {
      const v = verifySignedCheckpoint(row.note, {
        name: `openexec/${key.keyId}`,
        publicKey: key.key,
        publicKeyRaw: key.raw,
      });
      assert.ok(v !== undefined, `checkpoint ${row.tree_size} verifies`);
      assert.equal(v.size, Number(row.tree_size));
      return { ...v, signedBy: row.signed_by };
    });
    let crossSigner = 0;
    for (let i = 1; i < verified.length; i++) {
      const older = verified[i - 1] as (typeof verified)[number];
      const newer = verified[i] as (typeof verified)[number];
      if (older.signedBy !== newer.signedBy) crossSigner++;
      const prover = replicas[i % 3] as Replica;
      const proof = await getJson(`${prover.url}/log/consistency?old_size=${older.size}&new_size=${newer.size}`);
      assert.equal(proof.status, 200);
      const hashes = proof.body.hashes.map((h: string) => Buffer.from(h, "hex"));
      assert.ok(
        verifyConsistency(older.size, newer.size, older.rootHash, newer.rootHash, hashes),
        `checkpoint ${newer.size} (${newer.signedBy}) extends ${older.size} (${older.signedBy})`,
      );
    }
    assert.ok(crossSigner >= 1, "at least one consecutive pair was signed by different replicas");
    // The whole shared ledger audits clean: leaves, receipts, rows, checkpoints.
    const audit = await auditSharedLedger(schema.url, publicKeyPem);
    assert.equal(audit.first_divergence, undefined);
    assert.equal(audit.ok, true);
    assert.ok(audit.leaves >= executed.length);
    assert.ok(audit.checkpoints >= signed.length);
  });
  async function waitForStatus(nonce: string, status: string): Promise<void> {
    for (let attempt = 0; attempt < 200; attempt++) {
      const rows = await adminQuery(schema.url, "SELECT status FROM executions WHERE nonce = $1", [nonce]);
      if (rows[0]?.status === status) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    assert.fail(`execution ${nonce} never became ${status}`);
  }

  it("answers a duplicate of an execution pending on another replica: its outcome, or in_progress after OPENEXEC_IN_PROGRESS_WAIT_MS", async () => {
    const [a, b] = replicas as [Replica, Replica];
    const slow = () => ({
      action: "test.slow",
      payload: { ms: 1500 },
      nonce: `slow-${randomBytes(6).toString("hex")}`,
    });
    const waited = slow();
    const refusedRequest = slow();
    const onA = postJson(`${a.url}/execute`, waited);
    const onA2 = postJson(`${a.url}/execute`, refusedRequest);
    await Promise.all([waitForStatus(waited.nonce, "pending"), waitForStatus(refusedRequest.nonce, "pending")]);

    // Replica B waits (woken by the notification of A's commit) and answers A's outcome.
    const onB = postJson(`${b.url}/execute`, waited);
    // The impatient replica gives up after 200 ms.
    const refused = await postJson(`${impatient.url}/execute`, refusedRequest);
    // A conflict with a request in progress (docs/ERRORS.md): 409, Connect and gRPC `aborted`.
    assert.equal(refused.status, 409);
    assert.equal(refused.body.code, "aborted");
    assert.equal(refused.body.reason, "in_progress");
    await assert.rejects(client(impatient, "grpc").execute(refusedRequest), (error: unknown) => {
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, Code.Aborted);
      assert.equal(reasonOf(error), "in_progress");
      return true;
    });

    const [first, duplicate, second] = await Promise.all([onA, onB, onA2]);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.replayed, false);
    assert.deepEqual(first.body.result, { ok: true });
    assert.equal(duplicate.status, 200, JSON.stringify(duplicate.body));
    assert.equal(duplicate.body.replayed, true);
    assert.equal(duplicate.body.id, first.body.id);
    assert.equal(duplicate.body.receipt, first.body.receipt);
    assert.deepEqual(duplicate.body.result, { ok: true });
    const rows = await adminQuery(schema.url, "SELECT execution_id, status FROM executions WHERE nonce = $1", [
      waited.nonce,
    ]);
    assert.deepEqual(rows, [{ execution_id: first.body.id, status: "executed" }]);

    // Once A finished the other one, the impatient replica replays it.
    assert.equal(second.status, 200);
    assert.equal(second.body.replayed, false);
    const again = await postJson(`${impatient.url}/execute`, refusedRequest);
    assert.equal(again.status, 200);
    assert.equal(again.body.replayed, true);
    assert.equal(again.body.id, second.body.id);
    assert.equal(again.body.receipt, second.body.receipt);
  });

  /** Starts `openexec serve` (the real CLI), which must refuse to start: its exit code and stderr. */
  async function refusedStart(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
    const started = spawnReplicaProcess(env, serveCommand);
    const listened = await started.listening.then(
      () => true,
      () => false,
    );
    const { child } = started;
    if (listened || (child.exitCode === null && child.signalCode === null)) {
      child.kill("SIGKILL");
      await started.exited;
      assert.fail(`the server ${listened ? "started" : "neither started nor exited"}:\n${started.stderr()}`);
    }
    return { code: await started.exited, stderr: started.stderr() };
  }

  it("refuses to start a replica with another receipt key or log origin (exit 1), or without OPENEXEC_RECEIPT_KEY (exit 2)", async () => {
    const identity = await adminQuery(schema.url, "SELECT log_origin, receipt_key_id FROM ledger_identity");
    const [otherKey, otherOrigin, noKey] = await Promise.all([
      refusedStart({ OPENEXEC_DB_URL: schema.url, OPENEXEC_RECEIPT_KEY: generateReceiptKeyPem() }),
      refusedStart({
        OPENEXEC_DB_URL: schema.url,
        OPENEXEC_RECEIPT_KEY: keyPem,
        OPENEXEC_LOG_ORIGIN: "example.com/another-log",
      }),
      refusedStart({ OPENEXEC_DB_URL: schema.url }),
    ]);
    assert.equal(otherKey.code, 1);
    assert.match(
      otherKey.stderr,
      /signed with receipt key \S+, not \S+: every replica must start with the same OPENEXEC_RECEIPT_KEY/,
    );
    assert.equal(otherOrigin.code, 1);
    assert.match(otherOrigin.stderr, /log origin is "openexec\/\S+", not "example.com\/another-log"/);
    assert.match(otherOrigin.stderr, /OPENEXEC_LOG_ORIGIN/);
    assert.equal(noKey.code, 2);
    assert.match(noKey.stderr, /OPENEXEC_RECEIPT_KEY/);
    // The ledger is as it was, and the replicas still serve it.
    assert.deepEqual(await adminQuery(schema.url, "SELECT log_origin, receipt_key_id FROM ledger_identity"), identity);
    const still = await postJson(`${replicas[2]?.url}/execute`, {
      action: "echo",
      payload: {},
      nonce: `after-${randomBytes(4).toString("hex")}`,
    });
    assert.equal(still.status, 200);
  });
});
