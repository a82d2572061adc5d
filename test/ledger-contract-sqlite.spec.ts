import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import { openSqliteStorage } from "../src/ledger/sqlite-storage.js";
import { SqliteLedgerStore } from "../src/ledger/sqlite-store.js";
import { loadReceiptKey } from "../src/receipts/receipt-key.js";
import { rootFromLeafHashes, verifyInclusion } from "../src/tlog/merkle-tree.js";
import { inclusionPlan } from "../src/tlog/proof-plan.js";
import { proofFromTiles } from "../src/tlog/tiled-tree.js";
import { ledgerContract } from "./ledger-contract.js";
import { scratchDir } from "./support/test-server.js";

ledgerContract("SQLite", async (dir) => {
  const path = join(dir, "ledger.db");
  let storage = openSqliteStorage(path);
  return {
    storage,
    async reopen() {
      await storage.close();
      storage = openSqliteStorage(path);
      return storage;
    },
    cleanup: () => storage.close(),
  };
});

describe("SQLite: a ledger from before tiles", () => {
  it("gets its tiles built once from its leaves, and proves against them", async () => {
    const dir = scratchDir();
    try {
      const path = join(dir.path, "old.db");
      const ledger = SqliteLedgerStore.open(path);
      for (let i = 0; i < 300; i++) {
        await ledger.reserveAndComplete(
          {
            executionId: `old-${i}`,
            tenantId: "demo",
            nonce: `n-${i}`,
            action: "echo",
            payloadDigest: Buffer.alloc(32, i % 256),
            approval: undefined,
            logicalTime: new Date(0),
          },
          { kind: "executed", effect: { kind: "result", result: { i }, resultDigest: Buffer.alloc(32) } },
        );
      }
      await ledger.close();
      // What a schema-4 ledger holds: leaves, but no tiles and no recorded size.
      const db = new Database(path);
      const leaves = db
        .prepare<[], { leaf_hash: Buffer }>("SELECT leaf_hash FROM log_leaves ORDER BY leaf_index")
        .all()
        .map((row) => row.leaf_hash);
      db.exec("DELETE FROM log_tiles; UPDATE log_state SET size = 0;");
      db.close();

      const storage = openSqliteStorage(path);
      try {
        assert.equal(await storage.logSize(), 300);
        const proof = await proofFromTiles(inclusionPlan(123, 300), storage);
        assert.ok(verifyInclusion(leaves[123] as Buffer, 123, 300, proof, rootFromLeafHashes(leaves)));
      } finally {
        await storage.close();
      }
    } finally {
      dir.cleanup();
    }
  });
});

describe("SQLite: a damaged log", () => {
  it("a stored tree that no longer extends the last checkpoint is never signed", async () => {
    const dir = scratchDir();
    try {
      const path = join(dir.path, "ledger.db");
      const { privateKey } = generateKeyPairSync("ed25519");
      const key = loadReceiptKey(privateKey.export({ format: "pem", type: "pkcs8" }).toString(), join(dir.path, "k"));
      const origin = `openexec/${key.public.keyId}`;
      const issuer = { signer: { keyId: key.public.keyId, sign: key.sign }, logOrigin: origin };
      const record = (ledger: ReturnType<typeof SqliteLedgerStore.open>, i: number) =>
        ledger.reserveAndComplete(
          {
            executionId: `d-${i}`,
            tenantId: "demo",
            nonce: `d-${i}`,
            action: "echo",
            payloadDigest: Buffer.alloc(32, i),
            approval: undefined,
            logicalTime: new Date(0),
          },
          { kind: "executed", effect: { kind: "result", result: { i }, resultDigest: Buffer.alloc(32) } },
        );
      const first = SqliteLedgerStore.open(path, issuer);
      for (let i = 0; i < 3; i++) await record(first, i);
      const signed = await first.checkpoint(key.noteSigner(origin));
      await first.close();
      // A hash under the signed checkpoint changes in the stored tiles.
      const db = new Database(path);
      const tile = db.prepare("SELECT hashes FROM log_tiles WHERE level = 0 AND tile_index = 0").get() as {
        hashes: Buffer;
      };
      tile.hashes.fill(0, 0, 32);
      db.prepare("UPDATE log_tiles SET hashes = ? WHERE level = 0 AND tile_index = 0").run(tile.hashes);
      db.close();

      const second = SqliteLedgerStore.open(path, issuer);
      try {
        await record(second, 3);
        await assert.rejects(second.checkpoint(key.noteSigner(origin)), { name: "LedgerBugError" });
        assert.deepEqual(await second.latestCheckpoint(), signed);
      } finally {
        await second.close();
      }
    } finally {
      dir.cleanup();
    }
  });
});
