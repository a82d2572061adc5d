/**
 * Fencing an external effect by its lease, on the machine's PostgreSQL: a
 * handler's signal aborts when its process loses the execution's lease, so a
 * replica paused past its lease (SIGSTOP) does not act for an execution
 * another replica has meanwhile recorded interrupted. In process: the two
 * ways a lease is lost (its confirmed end passed while the process could not
 * run; a renewal that no longer names it). With replicas: the whole story,
 * and the same action unpaused as the control.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Ledger, unsignedIssuer } from "../src/ledger/ledger.js";
import { openPostgresStorage } from "../src/ledger/postgres-storage.js";
import { SqliteLedgerStore } from "../src/ledger/sqlite-store.js";
import type { Reservation } from "../src/ledger/store.js";
import { postJson } from "./support/clients.js";
import { adminQuery, freshSchema, type PostgresSchema, postgresSkipReason } from "./support/postgres.js";
import { generateReceiptKeyPem, type Replica, startReplicas } from "./support/replica.js";
import { scratchDir } from "./support/test-server.js";

const skip = await postgresSkipReason();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Blocks this thread for `ms`: to its timers, as if the process had been paused (SIGSTOP). */
function pauseThread(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function reservationOf(executionId: string): Reservation {
  return {
    executionId,
    tenantId: "acme",
    nonce: `n-${executionId}`,
    action: "test.fenced",
    payloadDigest: Buffer.alloc(32, 7),
    approval: undefined,
    logicalTime: new Date(),
  };
}

/** Resolves when `signal` aborts, with the time it did; rejects after `ms`. */
function aborted(signal: AbortSignal, ms: number): Promise<number> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) resolve(Date.now());
    const timer = setTimeout(() => reject(new Error(`the signal did not abort within ${ms} ms`)), ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve(Date.now());
    });
  });
}

describe("lease signal: a ledger on PostgreSQL (in process)", { skip, timeout: 60_000 }, () => {
  let schema: PostgresSchema;
  const ledgers: Ledger[] = [];

  async function openLedger(leaseMs: number): Promise<Ledger> {
    const storage = await openPostgresStorage(
      { url: schema.url, poolSize: 2, statementTimeoutMs: 5000, connectTimeoutMs: 5000 },
      { logOrigin: "openexec/lease-fencing", receiptKeyId: "lease-fencing" },
    );
    const ledger = new Ledger(storage, { issuer: unsignedIssuer, leaseMs, exclusive: false });
    ledgers.push(ledger);
    return ledger;
  }

  before(async () => {
    schema = await freshSchema();
  });
  after(async () => {
    for (const ledger of ledgers) await ledger.close();
    await schema?.drop();
  });

  it("aborts, before any later-due timer runs, once the process was paused past the lease's confirmed end", async () => {
    const ledger = await openLedger(1000);
    ledger.startLeases((error) => assert.fail(error as Error));
    const id = `paused-${randomBytes(4).toString("hex")}`;
    assert.deepEqual(await ledger.reserve(reservationOf(id)), { kind: "reserved" });
    const signal = ledger.leaseSignal(id);
    assert.equal(signal.aborted, false);
    // A handler's timer, due after the lease's end; then the whole thread stops past both.
    const seen = new Promise<boolean>((resolve) => setTimeout(() => resolve(signal.aborted), 1200));
    pauseThread(1600);
    assert.equal(await seen, true, "the handler's timer saw the signal aborted");
    assert.equal((signal.reason as Error).name, "LeaseLostError");
    await ledger.complete(id, { kind: "failed", reason: "handler_error" });
  });

  it("aborts when a renewal no longer names the execution (another process interrupted it), before its lease ends", async () => {
    // Renewed every second, so the confirmed end is always at least 2 s ahead.
    const mine = await openLedger(3000);
    const theirs = await openLedger(3000);
    mine.startLeases((error) => assert.fail(error as Error));
    const id = `swept-${randomBytes(4).toString("hex")}`;
    const reservedAt = Date.now();
    assert.deepEqual(await mine.reserve(reservationOf(id)), { kind: "reserved" });
    const signal = mine.leaseSignal(id);
    // As if this process had stopped renewing: the row's lease ran out, and another process sweeps it.
    await adminQuery(schema.url, "UPDATE executions SET lease_until_ms = 0 WHERE execution_id = $1", [id]);
    assert.equal(await theirs.interruptExpired(), 1);
    assert.equal(signal.aborted, false);
    const at = await aborted(signal, 5000);
    assert.ok(at - reservedAt < 2500, `aborted ${at - reservedAt} ms after the reservation, not at the lease's end`);
    assert.equal((signal.reason as Error).name, "LeaseLostError");
    // Completing answers what the other process recorded.
    const finished = await mine.complete(id, {
      kind: "executed",
      effect: { kind: "result", result: {}, resultDigest: Buffer.alloc(32) },
    });
    assert.equal(finished.status, "interrupted");
  });

  it("never aborts on SQLite, which no other process can open", async () => {
    const dir = scratchDir();
    const ledger = SqliteLedgerStore.open(join(dir.path, "ledger.db"), unsignedIssuer, { leaseMs: 1000 });
    try {
      ledger.startLeases((error) => assert.fail(error as Error));
      const id = "exclusive-1";
      assert.deepEqual(await ledger.reserve(reservationOf(id)), { kind: "reserved" });
      const signal = ledger.leaseSignal(id);
      pauseThread(1500);
      await sleep(500);
      assert.equal(signal.aborted, false);
      const finished = await ledger.complete(id, { kind: "failed", reason: "handler_error" });
      assert.equal(finished.status, "failed");
    } finally {
      await ledger.close();
      dir.cleanup();
    }
  });
});

describe("lease fencing: replicas on PostgreSQL", { skip, timeout: 120_000 }, () => {
  let schema: PostgresSchema;
  let dir: { path: string; cleanup: () => void };
  let effectsFile: string;
  let replicas: Replica[] = [];

  before(async () => {
    schema = await freshSchema();
    dir = scratchDir();
    effectsFile = join(dir.path, "effects.log");
    writeFileSync(effectsFile, "");
    replicas = await startReplicas(2, {
      OPENEXEC_DB_URL: schema.url,
      OPENEXEC_RECEIPT_KEY: generateReceiptKeyPem(),
      OPENEXEC_LEASE_MS: "1000",
      OPENEXEC_TEST_EFFECTS_FILE: effectsFile,
    });
  });
  after(async () => {
    // A stopped replica ignores SIGTERM until continued: continue, then kill.
    for (const replica of replicas) {
      if (replica.child.exitCode === null && replica.child.signalCode === null) replica.child.kill("SIGCONT");
    }
    await Promise.all(replicas.map((replica) => replica.kill()));
    await schema?.drop();
    dir?.cleanup();
  });

  const effects = () => readFileSync(effectsFile, "utf8").split("\n").filter(Boolean);
  const rowsOf = (nonce: string) =>
    adminQuery<{ execution_id: string; status: string; has_receipt: boolean }>(
      schema.url,
      "SELECT execution_id, status, receipt IS NOT NULL AS has_receipt FROM executions WHERE nonce = $1",
      [nonce],
    );

  async function waitForRow(nonce: string, status: string): Promise<string> {
    for (let attempt = 0; attempt < 400; attempt++) {
      const [row] = await rowsOf(nonce);
      if (row?.status === status) return row.execution_id;
      await sleep(10);
    }
    assert.fail(`execution ${nonce} never became ${status}`);
  }

  it("does the effect once when the replica keeps its lease (control)", async () => {
    const [a] = replicas as [Replica, Replica];
    const request = { action: "test.fenced", payload: { ms: 3000 }, nonce: `kept-${randomBytes(6).toString("hex")}` };
    const answer = await postJson(`${a.url}/execute`, request);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(answer.body.result, { done: true });
    assert.deepEqual(await rowsOf(request.nonce), [
      { execution_id: answer.body.id, status: "executed", has_receipt: true },
    ]);
    assert.equal(effects().filter((line) => line === answer.body.id).length, 1);
  });

  it("a replica paused past its lease does not act: another records the execution interrupted, and that is the answer", async () => {
    const [a, b] = replicas as [Replica, Replica];
    const request = { action: "test.fenced", payload: { ms: 3000 }, nonce: `paused-${randomBytes(6).toString("hex")}` };
    const onA = postJson(`${a.url}/execute`, request);
    const executionId = await waitForRow(request.nonce, "pending");
    const reservedAt = Date.now();
    assert.ok(a.child.kill("SIGSTOP"));
    try {
      // B waits for the pending execution, which its sweep records interrupted once A's lease runs out.
      const onB = await postJson(`${b.url}/execute`, request);
      assert.equal(onB.status, 409, JSON.stringify(onB.body));
      assert.equal(onB.body.reason, "interrupted");
      await waitForRow(request.nonce, "interrupted");
      // Past the end of A's handler wait too: as A continues, its handler's timer is overdue.
      await sleep(Math.max(0, reservedAt + 3500 - Date.now()));
    } finally {
      a.child.kill("SIGCONT");
    }
    const answer = await onA;
    assert.equal(answer.status, 409, JSON.stringify(answer.body));
    assert.equal(answer.body.reason, "interrupted");
    assert.deepEqual(await rowsOf(request.nonce), [
      { execution_id: executionId, status: "interrupted", has_receipt: true },
    ]);
    assert.deepEqual(
      effects().filter((line) => line === executionId),
      [],
      "the paused replica did not act",
    );
  });
});
