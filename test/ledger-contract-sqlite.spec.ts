import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { openSqliteStorage } from "../src/ledger/sqlite-storage.js";
import { SqliteLedgerStore } from "../src/ledger/sqlite-store.js";
import { rootFromLeafHashes, verifyInclusion } from "../src/receipts/merkle-tree.js";
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
  it("gets its tiles built once from its leaves, and proves against its old checkpoints", async () => {
    const dir = scratchDir();
    try {
      const path = join(dir.path, "old.db");
      const old = SqliteLedgerStore.open(path);
      for (let i = 0; i < 300; i++) {
        await old.reserveAndComplete(
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
      const leaves = await old.leafHashes(0, 300);
      await old.close();

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
