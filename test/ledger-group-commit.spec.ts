import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import type { Ledger } from "../src/ledger/ledger.js";
import { SqliteLedgerStore } from "../src/ledger/sqlite-store.js";
import type { Reservation } from "../src/ledger/store.js";
import { scratchDir } from "./support/test-server.js";

const reservation = (nonce: string): Reservation => ({
  executionId: `id-${nonce}`,
  tenantId: "demo",
  nonce,
  action: "echo",
  payloadDigest: Buffer.alloc(32, nonce.length),
  approval: undefined,
  logicalTime: new Date(0),
});
const executed = { kind: "executed", effect: { kind: "result", result: {}, resultDigest: Buffer.alloc(32) } } as const;

/** A ledger on a real SQLite file, and raw access to that file while the ledger is closed. */
async function withLedger(
  run: (ledger: Ledger, path: string) => Promise<void>,
  prepare?: (db: Database.Database) => void,
) {
  const dir = scratchDir();
  const path = join(dir.path, "ledger.db");
  try {
    await SqliteLedgerStore.open(path).close();
    if (prepare !== undefined) {
      const db = new Database(path);
      prepare(db);
      db.close();
    }
    const ledger = SqliteLedgerStore.open(path);
    try {
      await run(ledger, path);
    } finally {
      await ledger.close();
    }
  } finally {
    dir.cleanup();
  }
}

describe("group commit", () => {
  it("writes queued in one turn commit together; one failing write leaves its neighbours committed", async () => {
    await withLedger(async (ledger) => {
      const results = await Promise.allSettled([
        ledger.reserveAndComplete(reservation("g-1"), executed),
        ledger.complete("no-such-execution", executed),
        ledger.reserveAndComplete(reservation("g-2"), executed),
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ["fulfilled", "rejected", "fulfilled"],
      );
      assert.equal((results[1] as PromiseRejectedResult).reason.name, "LedgerBugError");
      assert.equal((await ledger.find("demo", "g-1"))?.status, "executed");
      assert.equal((await ledger.find("demo", "g-2"))?.status, "executed");
      // Both leaves are in the log, with consecutive indices.
      assert.equal(await ledger.logSize(), 2);
    });
  });

  it("a commit that fails rejects every write of its batch, stores none, and the log continues without a gap", async () => {
    await withLedger(
      async (ledger) => {
        const results = await Promise.allSettled([
          ledger.reserveAndComplete(reservation("c-1"), executed),
          ledger.reserveAndComplete(reservation("c-2"), executed),
        ]);
        for (const result of results) {
          assert.equal(result.status, "rejected");
          assert.equal((result as PromiseRejectedResult).reason.name, "StoreUnavailableError");
        }
        assert.equal(await ledger.find("demo", "c-1"), undefined);
        assert.equal(await ledger.find("demo", "c-2"), undefined);
        assert.equal(await ledger.logSize(), 0);
        // The failed commit made the store unready; its own probe write commits, so it is ready again.
        await ledger.check();
        // And the log goes on at index 0, with no gap from the rolled-back batch.
        await ledger.recordDenial({
          attemptId: "after",
          tenantId: "demo",
          nonce: "after",
          action: "echo",
          payloadDigest: Buffer.alloc(32),
          approvalDigest: undefined,
          reason: "action_not_allowed",
          logicalTime: new Date(0),
        });
        assert.equal(await ledger.logSize(), 1);
      },
      (db) => {
        // Every execution insert also inserts a row whose deferred foreign key can never hold:
        // each statement succeeds, the COMMIT fails.
        db.exec(`
          CREATE TABLE doomed (ref TEXT REFERENCES nowhere(id) DEFERRABLE INITIALLY DEFERRED);
          CREATE TABLE nowhere (id TEXT PRIMARY KEY);
          CREATE TRIGGER doom AFTER INSERT ON executions BEGIN INSERT INTO doomed VALUES ('x'); END;
        `);
      },
    );
  });
});
