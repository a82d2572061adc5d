import assert from "node:assert/strict";
import { createHash, generateKeyPairSync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { ExecutionStatus, ReceiptSchema } from "../gen/openexec/v1/receipt_pb.js";
import type {
  LedgerCompletion,
  LedgerWrite,
  ReservationFacts,
  WriteOutcome,
  WriteResult,
} from "../src/ledger/ledger-write.js";
import type { ExecutionRow, LedgerStorage, LedgerTransaction } from "../src/ledger/ports.js";
import { LedgerRecorder } from "../src/ledger/recorder.js";
import { verifyReceiptSignature } from "../src/receipts/receipt.js";
import { loadReceiptKey } from "../src/receipts/receipt-key.js";
import { parseSignedCheckpoint } from "../src/tlog/checkpoint.js";
import { leafHash, verifyConsistency, verifyInclusion } from "../src/tlog/merkle-tree.js";
import { consistencyPlan, inclusionPlan } from "../src/tlog/proof-plan.js";
import { proofFromTiles } from "../src/tlog/tiled-tree.js";
import { scratchDir } from "./support/test-server.js";

/** A fresh, empty ledger storage, and how to open the same ledger again. */
export interface StorageFixture {
  readonly storage: LedgerStorage;
  reopen(): Promise<LedgerStorage>;
  cleanup(): Promise<void>;
}

const digest = (text: string) => createHash("sha256").update(text).digest();

/**
 * Every ledger semantic, against one storage adapter through the recorder:
 * SQLite today, PostgreSQL next. Assertions read stored rows, never logs.
 */
export function ledgerContract(
  name: string,
  newFixture: (dir: string) => Promise<StorageFixture>,
  options: { readonly skip?: string | false } = {},
): void {
  describe(`ledger contract: ${name}`, { skip: options.skip }, () => {
    const dir = scratchDir("openexec-contract-");
    const { privateKey } = generateKeyPairSync("ed25519");
    const key = loadReceiptKey(
      privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
      `${dir.path}/unused.pem`,
    );
    const origin = `openexec/${key.public.keyId}`;
    const issuer = { signer: { keyId: key.public.keyId, sign: key.sign }, logOrigin: origin };
    let fixture: StorageFixture;
    let storage: LedgerStorage;
    let recorder: LedgerRecorder;
    let sequence = 0;

    before(async () => {
      fixture = await newFixture(dir.path);
      storage = fixture.storage;
      recorder = await LedgerRecorder.open(storage, issuer);
    });
    after(async () => {
      await fixture.cleanup();
      dir.cleanup();
    });

    const reservation = (nonce: string, overrides: Partial<ReservationFacts> = {}): ReservationFacts => ({
      executionId: `exec-${++sequence}`,
      tenantId: "acme",
      nonce,
      action: "echo",
      payloadDigest: digest(nonce),
      approval: undefined,
      logicalTimeMs: 1_700_000_000_000 + sequence,
      ...overrides,
    });
    const executed = (result: object): LedgerCompletion => ({
      kind: "executed",
      effect: { kind: "result", result: result as never, resultDigest: digest(JSON.stringify(result)) },
    });
    const commit = (...writes: LedgerWrite[]) => recorder.commit(storage, writes);
    /** A checkpoint of everything committed (signed now unless the latest covers it). */
    const sign = async () => {
      const checkpoint = await recorder.checkpoint(storage, key.noteSigner(origin));
      assert.ok(checkpoint, "a checkpoint is returned");
      return checkpoint;
    };
    const one = async (write: LedgerWrite): Promise<WriteOutcome> => {
      const [result] = await commit(write);
      assert.ok(result?.ok, `write failed: ${result?.ok === false ? String(result.error) : "no result"}`);
      return result.outcome;
    };
    const counterIn = async (tx: LedgerTransaction, key: string) =>
      (await tx.readCounters([{ tenantId: "acme", key }]))[0]?.value;
    const receiptOf = (row: ExecutionRow) => fromBinary(ReceiptSchema, row.receipt?.body ?? new Uint8Array());

    describe("reserve, replay, conflict", () => {
      it("reserves a new nonce as a pending row leased to its owner", async () => {
        const r = reservation("r-1");
        assert.deepEqual(await one({ kind: "reserve", reservation: r, leaseOwner: "p1", leaseUntilMs: 5000 }), {
          kind: "reserved",
        });
        const row = await storage.findExecution("acme", "r-1");
        assert.equal(row?.status, "pending");
        assert.equal(row?.executionId, r.executionId);
        assert.equal(row?.leaseOwner, "p1");
        assert.equal(row?.leaseUntilMs, 5000);
        assert.equal(row?.receipt, undefined);
      });

      it("a taken nonce answers the row that holds it, and writes nothing", async () => {
        const again = await one({
          kind: "reserve",
          reservation: reservation("r-1"),
          leaseOwner: "p2",
          leaseUntilMs: 9000,
        });
        assert.equal(again.kind, "existing");
        assert.equal(again.kind === "existing" && again.row.leaseOwner, "p1");
        const recorded = await one({ kind: "record", reservation: reservation("r-1"), completion: executed({}) });
        assert.equal(recorded.kind, "existing");
      });

      it("the same nonce in another tenant is another key", async () => {
        const outcome = await one({
          kind: "record",
          reservation: reservation("r-1", { tenantId: "other" }),
          completion: executed({ ok: 1 }),
        });
        assert.equal(outcome.kind, "recorded");
      });
    });

    describe("finishing", () => {
      it("completes a reservation with result, digest and a signed, logged receipt", async () => {
        const r = reservation("c-1");
        await one({ kind: "reserve", reservation: r, leaseOwner: "p1", leaseUntilMs: 5000 });
        const done = await one({ kind: "complete", executionId: r.executionId, completion: executed({ v: 1 }) });
        assert.equal(done.kind, "recorded");
        const row = await storage.findExecutionById(r.executionId);
        assert.equal(row?.status, "executed");
        assert.equal(row?.resultJson, '{"v":1}');
        assert.equal(row?.leaseOwner, undefined);
        const receipt = row?.receipt;
        assert.ok(receipt !== undefined);
        assert.deepEqual(Buffer.from(receipt.digest), createHash("sha256").update(receipt.body).digest());
        assert.ok(verifyReceiptSignature(key.public, receipt.body, receipt.signature));
        const facts = receiptOf(row as ExecutionRow);
        assert.equal(facts.status, ExecutionStatus.EXECUTED);
        assert.equal(facts.executionId, r.executionId);
        assert.equal(facts.logOrigin, origin);
      });

      it("completing a row that is not pending fails that write only", async () => {
        const r = reservation("c-2");
        const [bad, good] = await commit(
          { kind: "complete", executionId: "no-such-execution", completion: executed({}) },
          { kind: "record", reservation: r, completion: executed({ fine: true }) },
        );
        assert.equal(bad?.ok, false);
        assert.equal((bad as Extract<WriteResult, { ok: false }>).error instanceof Error, true);
        assert.equal(good?.ok, true);
        assert.equal((await storage.findExecution("acme", "c-2"))?.status, "executed");
      });

      it("records a failure with its reason and no result", async () => {
        const outcome = await one({
          kind: "record",
          reservation: reservation("f-1"),
          completion: { kind: "failed", reason: "handler_error" },
        });
        assert.ok(outcome.kind === "recorded");
        assert.equal(outcome.row.status, "failed");
        assert.equal(outcome.row.reason, "handler_error");
        assert.equal(outcome.row.resultJson, undefined);
        assert.equal(receiptOf(outcome.row).reason, "handler_error");
      });
    });

    describe("effects", () => {
      const add = (nonce: string, delta: number): LedgerWrite => ({
        kind: "record",
        reservation: reservation(nonce, { action: "counter.add" }),
        completion: { kind: "executed", effect: { kind: "counter_add", key: "k", delta } },
      });

      it("counter.add commits with its record; its result is the new total", async () => {
        const first = await one(add("e-1", 5));
        const second = await one(add("e-2", -2));
        assert.ok(first.kind === "recorded" && second.kind === "recorded");
        assert.equal(first.row.resultJson, '{"key":"k","value":5}');
        assert.equal(second.row.resultJson, '{"key":"k","value":3}');
      });

      it("a replayed nonce never applies its delta again", async () => {
        assert.equal((await one(add("e-1", 5))).kind, "existing");
        const third = await one(add("e-3", 0));
        assert.ok(third.kind === "recorded");
        assert.equal(third.row.resultJson, '{"key":"k","value":3}');
      });

      it("an overflow is a failure that leaves the counter alone", async () => {
        const big = await one(add("e-4", Number.MAX_SAFE_INTEGER));
        assert.ok(big.kind === "recorded");
        assert.equal(big.row.status, "failed");
        assert.equal(big.row.reason, "counter_overflow");
        const after = await one(add("e-5", 0));
        assert.ok(after.kind === "recorded");
        assert.equal(after.row.resultJson, '{"key":"k","value":3}');
      });
    });

    describe("one batch: each write sees the ones before it", () => {
      const ok = (result: WriteResult | undefined): WriteOutcome => {
        assert.ok(result?.ok, `write failed: ${result?.ok === false ? String(result.error) : "no result"}`);
        return result.outcome;
      };

      it("a nonce twice in one batch: the first records, the second finds the first's row", async () => {
        const first = reservation("b-dup");
        const [a, b] = await commit(
          { kind: "record", reservation: first, completion: executed({ n: 1 }) },
          { kind: "record", reservation: reservation("b-dup"), completion: executed({ n: 2 }) },
        );
        const recorded = ok(a);
        const found = ok(b);
        assert.ok(recorded.kind === "recorded" && found.kind === "existing");
        assert.equal(found.row.executionId, first.executionId);
        assert.equal(found.row.resultJson, '{"n":1}');
        assert.equal((await storage.findExecution("acme", "b-dup"))?.executionId, first.executionId);
      });

      it("an approval id twice in one batch: the second is approval_used and writes nothing", async () => {
        const approval = { approvalId: "b-appr", digest: digest("b-appr") };
        const [a, b] = await commit(
          { kind: "record", reservation: reservation("b-a1", { approval }), completion: executed({}) },
          { kind: "record", reservation: reservation("b-a2", { approval }), completion: executed({}) },
        );
        assert.equal(ok(a).kind, "recorded");
        assert.deepEqual(ok(b), { kind: "approval_used" });
        assert.equal(await storage.findExecution("acme", "b-a2"), undefined);
      });

      it("counter effects in one batch add up in order, and the stored total is the last", async () => {
        const add = (nonce: string, delta: number): LedgerWrite => ({
          kind: "record",
          reservation: reservation(nonce, { action: "counter.add" }),
          completion: { kind: "executed", effect: { kind: "counter_add", key: "batch", delta } },
        });
        const results = (await commit(add("b-c1", 2), add("b-c2", 3), add("b-c3", 4))).map(ok);
        assert.deepEqual(
          results.map((r) => (r.kind === "recorded" ? r.row.resultJson : r.kind)),
          ['{"key":"batch","value":2}', '{"key":"batch","value":5}', '{"key":"batch","value":9}'],
        );
        assert.equal(await storage.transaction((tx) => counterIn(tx, "batch")), 9);
      });

      it("a reservation and its completion decided in one batch finish the row", async () => {
        const r = reservation("b-rc");
        const [reserved, completed] = await commit(
          { kind: "reserve", reservation: r, leaseOwner: "p", leaseUntilMs: 1 },
          { kind: "complete", executionId: r.executionId, completion: executed({ done: true }) },
        );
        assert.deepEqual(ok(reserved), { kind: "reserved" });
        assert.equal(ok(completed).kind, "recorded");
        const row = await storage.findExecutionById(r.executionId);
        assert.equal(row?.status, "executed");
        assert.equal(row?.leaseOwner, undefined);
      });

      it("a write whose row cannot land fails alone; its neighbours commit with gap-free indices", async () => {
        const taken = reservation("b-taken");
        assert.equal(
          ok((await commit({ kind: "record", reservation: taken, completion: executed({}) }))[0]).kind,
          "recorded",
        );
        const sizeBefore = await storage.logSize();
        // Another key, but the execution id of a stored row: the insert cannot land, whatever was read.
        const clash = reservation("b-clash", { executionId: taken.executionId });
        const [a, b, c] = await commit(
          { kind: "record", reservation: reservation("b-n1"), completion: executed({}) },
          { kind: "record", reservation: clash, completion: executed({}) },
          { kind: "record", reservation: reservation("b-n2"), completion: executed({}) },
        );
        assert.equal(ok(a).kind, "recorded");
        assert.equal(b?.ok, false);
        assert.equal(ok(c).kind, "recorded");
        assert.equal(await storage.findExecution("acme", "b-clash"), undefined);
        assert.equal(await storage.logSize(), sizeBefore + 2);
        const indices = [a, c].map((result) => {
          const outcome = ok(result);
          return outcome.kind === "recorded" ? Number(receiptOf(outcome.row).logIndex) : -1;
        });
        assert.deepEqual(indices, [sizeBefore, sizeBefore + 1]);
      });
    });

    describe("approvals and denials", () => {
      it("an approval id is single use per tenant", async () => {
        const approval = { approvalId: "appr-1", digest: digest("appr-1") };
        assert.equal(
          (await one({ kind: "record", reservation: reservation("a-1", { approval }), completion: executed({}) })).kind,
          "recorded",
        );
        assert.deepEqual(
          await one({ kind: "record", reservation: reservation("a-2", { approval }), completion: executed({}) }),
          { kind: "approval_used" },
        );
        assert.equal(await storage.findExecution("acme", "a-2"), undefined);
      });

      it("a denial is recorded with a receipt and reserves nothing", async () => {
        const outcome = await one({
          kind: "deny",
          denial: {
            attemptId: "deny-1",
            tenantId: "acme",
            nonce: "d-1",
            action: "echo",
            payloadDigest: digest("d"),
            approvalDigest: undefined,
            reason: "action_not_allowed",
            logicalTimeMs: 1,
          },
        });
        assert.equal(outcome.kind, "denied");
        const row = await storage.findDenialById("deny-1");
        assert.equal(row?.reason, "action_not_allowed");
        assert.equal(fromBinary(ReceiptSchema, row?.receipt.body ?? new Uint8Array()).status, ExecutionStatus.DENIED);
        assert.equal(await storage.findExecution("acme", "d-1"), undefined);
      });
    });

    describe("leases", () => {
      it("only expired leases are interrupted, with a receipt; live ones and other owners' renewals are kept", async () => {
        const mine = reservation("l-1");
        const theirs = reservation("l-2");
        await one({ kind: "reserve", reservation: mine, leaseOwner: "p1", leaseUntilMs: 10_000 });
        await one({ kind: "reserve", reservation: theirs, leaseOwner: "p2", leaseUntilMs: 10_000 });
        // A renewal by someone who does not hold the lease changes nothing.
        assert.deepEqual(await one({ kind: "renew", owner: "p2", executionIds: [mine.executionId], untilMs: 99_000 }), {
          kind: "renewed",
          held: [],
        });
        assert.deepEqual(
          await one({ kind: "renew", owner: "p2", executionIds: [theirs.executionId], untilMs: 20_000 }),
          { kind: "renewed", held: [theirs.executionId] },
        );
        const early = await one({ kind: "interrupt_expired", nowMs: 9_999, limit: 100 });
        assert.ok(early.kind === "interrupted");
        assert.ok(!early.rows.some((row) => [mine.executionId, theirs.executionId].includes(row.executionId)));
        const late = await one({ kind: "interrupt_expired", nowMs: 15_000, limit: 100 });
        assert.ok(late.kind === "interrupted");
        assert.ok(late.rows.some((row) => row.executionId === mine.executionId));
        assert.ok(!late.rows.some((row) => row.executionId === theirs.executionId));
        const row = await storage.findExecutionById(mine.executionId);
        assert.equal(row?.status, "interrupted");
        assert.equal(receiptOf(row as ExecutionRow).status, ExecutionStatus.INTERRUPTED);
        assert.equal((await storage.findExecutionById(theirs.executionId))?.status, "pending");
        // An interrupted execution is never completed afterwards: completing it answers the interrupted row.
        const late2 = await one({ kind: "complete", executionId: mine.executionId, completion: executed({}) });
        assert.equal(late2.kind, "existing");
        assert.equal((late2 as Extract<WriteOutcome, { kind: "existing" }>).row.status, "interrupted");
        assert.equal((await storage.findExecutionById(mine.executionId))?.status, "interrupted");
      });
      it("a renewal names the ids it renewed: not another owner's, a finished one's, an interrupted one's or an unknown one's", async () => {
        const [held, other, finished, swept] = ["renew-1", "renew-2", "renew-3", "renew-4"].map((nonce) =>
          reservation(nonce),
        ) as [ReservationFacts, ReservationFacts, ReservationFacts, ReservationFacts];
        for (const [r, owner, untilMs] of [
          [held, "p1", 50_000],
          [finished, "p1", 50_000],
          [other, "p2", 50_000],
          [swept, "p1", 40_000],
        ] as const) {
          assert.deepEqual(await one({ kind: "reserve", reservation: r, leaseOwner: owner, leaseUntilMs: untilMs }), {
            kind: "reserved",
          });
        }
        await one({ kind: "complete", executionId: finished.executionId, completion: executed({}) });
        // Another process's sweep after p1's lease on `swept` ran out.
        const sweep = await one({ kind: "interrupt_expired", nowMs: 45_000, limit: 100 });
        assert.ok(sweep.kind === "interrupted" && sweep.rows.some((row) => row.executionId === swept.executionId));
        const ids = [held, other, finished, swept].map((r) => r.executionId);
        const renewal = await one({
          kind: "renew",
          owner: "p1",
          executionIds: [...ids, "no-such-id"],
          untilMs: 60_000,
        });
        assert.deepEqual(renewal, { kind: "renewed", held: [held.executionId] });
        assert.equal((await storage.findExecutionById(held.executionId))?.leaseUntilMs, 60_000);
        assert.equal((await storage.findExecutionById(other.executionId))?.leaseUntilMs, 50_000);
      });
    });

    describe("storage ports", () => {
      it("a failed savepoint undoes only its own writes; the transaction commits the rest", async () => {
        await storage.transaction(async (tx) => {
          await assert.rejects(
            tx.savepoint(async () => {
              await tx.writeCounters([{ tenantId: "acme", key: "sp-undone", value: 1 }]);
              throw new Error("this write fails after writing");
            }),
          );
          await tx.writeCounters([{ tenantId: "acme", key: "sp-kept", value: 2 }]);
        });
        const [undone, kept] = await storage.transaction(async (tx) => [
          await counterIn(tx, "sp-undone"),
          await counterIn(tx, "sp-kept"),
        ]);
        assert.equal(undone, undefined);
        assert.equal(kept, 2);
      });

      it("a transaction that throws leaves nothing behind", async () => {
        await assert.rejects(
          storage.transaction(async (tx) => {
            await tx.writeCounters([{ tenantId: "acme", key: "tx-undone", value: 1 }]);
            throw new Error("the whole transaction fails");
          }),
        );
        assert.equal(await storage.transaction((tx) => counterIn(tx, "tx-undone")), undefined);
      });

      it("freezes: set, replaced, listed by scope with a numeric time, lifted once", async () => {
        await storage.setFreeze({ scope: "echo", reason: "first", frozenAtMs: 1_700_000_000_001 });
        await storage.setFreeze({ scope: "*", reason: "all", frozenAtMs: 1_700_000_000_002 });
        await storage.setFreeze({ scope: "echo", reason: "replaced", frozenAtMs: 1_700_000_000_003 });
        assert.deepEqual(await storage.freezes(), [
          { scope: "*", reason: "all", frozenAtMs: 1_700_000_000_002 },
          { scope: "echo", reason: "replaced", frozenAtMs: 1_700_000_000_003 },
        ]);
        assert.equal(await storage.clearFreeze("*"), true);
        assert.equal(await storage.clearFreeze("*"), false);
        assert.equal(await storage.clearFreeze("echo"), true);
        assert.deepEqual(await storage.freezes(), []);
      });
    });

    describe("one log", () => {
      it("receipts take gap-free log indices in commit order, across batches", async () => {
        const outcomes = await commit(
          ...Array.from(
            { length: 300 },
            (_, i): LedgerWrite => ({
              kind: "record",
              reservation: reservation(`log-${i}`),
              completion: executed({ i }),
            }),
          ),
        );
        const size = await storage.logSize();
        assert.equal(size, recorder.logSize);
        const indices = outcomes.map((o) => {
          assert.ok(o.ok && o.outcome.kind === "recorded");
          return Number(receiptOf(o.outcome.row).logIndex);
        });
        assert.deepEqual(
          indices,
          Array.from({ length: 300 }, (_, i) => size - 300 + i),
        );
      });

      it("tiles prove every receipt's inclusion and the log's consistency against signed checkpoints", async () => {
        const first = await sign();
        assert.deepEqual(await sign(), first, "one checkpoint per size");
        await commit({ kind: "record", reservation: reservation("log-more"), completion: executed({}) });
        const second = await sign();
        assert.equal(second.treeSize, first.treeSize + 1);
        assert.deepEqual(await storage.latestCheckpoint(), second);
        assert.deepEqual(await storage.checkpointAt(first.treeSize), first);
        const parsed = parseSignedCheckpoint(second.note);
        assert.ok(typeof parsed !== "string");
        assert.equal(parsed.size, second.treeSize);

        const row = await storage.findExecution("acme", "log-7");
        const index = Number(receiptOf(row as ExecutionRow).logIndex);
        const proof = await proofFromTiles(inclusionPlan(index, second.treeSize), storage);
        assert.ok(
          verifyInclusion(
            leafHash(row?.receipt?.body ?? new Uint8Array()),
            index,
            second.treeSize,
            proof,
            second.rootHash,
          ),
        );
        const consistency = await proofFromTiles(consistencyPlan(first.treeSize, second.treeSize), storage);
        assert.ok(verifyConsistency(first.treeSize, second.treeSize, first.rootHash, second.rootHash, consistency));
      });

      it("two writers on one ledger share one gap-free log (each catches up before it numbers)", async () => {
        const other = await LedgerRecorder.open(storage, issuer);
        const a = await one({ kind: "record", reservation: reservation("w-a"), completion: executed({}) });
        const [b] = await other.commit(storage, [
          { kind: "record", reservation: reservation("w-b"), completion: executed({}) },
        ]);
        const c = await one({ kind: "record", reservation: reservation("w-c"), completion: executed({}) });
        assert.ok(a.kind === "recorded" && b?.ok && b.outcome.kind === "recorded" && c.kind === "recorded");
        const indices = [a.row, b.outcome.row, c.row].map((row) => Number(receiptOf(row).logIndex));
        assert.deepEqual(indices, [indices[0], (indices[0] as number) + 1, (indices[0] as number) + 2]);
        const checkpoint = await sign();
        const proof = await proofFromTiles(inclusionPlan(indices[1] as number, checkpoint.treeSize), storage);
        const leaf = leafHash(b.outcome.row.receipt?.body ?? new Uint8Array());
        assert.ok(verifyInclusion(leaf, indices[1] as number, checkpoint.treeSize, proof, checkpoint.rootHash));
      });

      it("reopened, the ledger and its log continue where they were", async () => {
        const size = await storage.logSize();
        const root = (await sign()).rootHash;
        storage = await fixture.reopen();
        recorder = await LedgerRecorder.open(storage, issuer);
        assert.equal(recorder.logSize, size);
        assert.equal((await storage.findExecution("acme", "log-7"))?.status, "executed");
        await one({ kind: "record", reservation: reservation("after-reopen"), completion: executed({}) });
        const next = await sign();
        assert.equal(next.treeSize, size + 1);
        const proof = await proofFromTiles(consistencyPlan(size, size + 1), storage);
        assert.ok(verifyConsistency(size, size + 1, root, next.rootHash, proof));
      });
    });
  });
}
