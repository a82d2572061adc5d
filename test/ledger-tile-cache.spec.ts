import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { openSqliteStorage } from "../src/ledger/sqlite-storage.js";
import { SqliteLedgerStore } from "../src/ledger/sqlite-store.js";
import { FullTileCache, fullTileBytes } from "../src/tlog/full-tile-cache.js";
import { inclusionPlan } from "../src/tlog/proof-plan.js";
import { scratchDir } from "./support/test-server.js";

/** A ledger of `count` executions, its full tiles cached in `cache`. */
async function ledgerWith(path: string, cache: FullTileCache, count: number, from = 0) {
  const ledger = SqliteLedgerStore.open(path, undefined, { fullTileCache: cache });
  await append(ledger, from, count);
  return ledger;
}

async function append(ledger: ReturnType<typeof SqliteLedgerStore.open>, from: number, count: number) {
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      ledger.reserveAndComplete(
        {
          executionId: `tile-${from + i}`,
          tenantId: "demo",
          nonce: `n-${from + i}`,
          action: "echo",
          payloadDigest: Buffer.alloc(32, (from + i) % 256),
          approval: undefined,
          logicalTime: new Date(0),
        },
        { kind: "executed", effect: { kind: "result", result: { i }, resultDigest: Buffer.alloc(32) } },
      ),
    ),
  );
}

describe("SQLite: the full-tile cache", () => {
  it("serves a full tile from the cache once it has been read", async () => {
    const dir = scratchDir();
    const cache = new FullTileCache(8);
    const ledger = await ledgerWith(join(dir.path, "ledger.db"), cache, 300);
    try {
      const [stored] = await ledger.readTiles([{ level: 0, index: 0 }]);
      assert.equal(stored?.length, fullTileBytes);
      assert.equal(cache.get(0, 0), stored);
      // What the cache holds is what is served: a planted tile comes back, the table is not asked.
      const planted = new Uint8Array(fullTileBytes).fill(7);
      cache.remember(0, 0, planted);
      assert.deepEqual((await ledger.readTiles([{ level: 0, index: 0 }]))[0], planted);
    } finally {
      await ledger.close();
      dir.cleanup();
    }
  });

  it("never serves a partial tile stale: the edge grows with the log", async () => {
    const dir = scratchDir();
    const cache = new FullTileCache(8);
    const ledger = await ledgerWith(join(dir.path, "ledger.db"), cache, 300);
    try {
      const [before] = await ledger.readTiles([{ level: 0, index: 1 }]);
      assert.equal(before?.length, 44 * 32);
      assert.equal(cache.get(0, 1), undefined);
      await append(ledger, 300, 10);
      const [after] = await ledger.readTiles([{ level: 0, index: 1 }]);
      assert.equal(after?.length, 54 * 32);
      assert.deepEqual(after?.subarray(0, before?.length), before);
    } finally {
      await ledger.close();
      dir.cleanup();
    }
  });

  it("a removed ledger file is refused, even for tiles the cache holds", async () => {
    const dir = scratchDir();
    const path = join(dir.path, "ledger.db");
    const cache = new FullTileCache(8);
    const ledger = await ledgerWith(path, cache, 300);
    try {
      await ledger.proofHashes(inclusionPlan(5, 300));
      assert.ok(cache.get(0, 0) !== undefined);
      rmSync(path);
      await assert.rejects(ledger.readTiles([{ level: 0, index: 0 }]), { name: "StoreUnavailableError" });
      await assert.rejects(ledger.proofHashes(inclusionPlan(5, 300)), { name: "StoreUnavailableError" });
    } finally {
      await ledger.close().catch(() => undefined);
      dir.cleanup();
    }
  });

  it("never remembers a tile read inside a transaction: it may roll back", async () => {
    const dir = scratchDir();
    const cache = new FullTileCache(8);
    const storage = openSqliteStorage(join(dir.path, "ledger.db"), { fullTileCache: cache });
    try {
      const tile = { level: 0, index: 0, hashes: new Uint8Array(fullTileBytes).fill(9) };
      await assert.rejects(
        storage.transaction(async (tx) => {
          await tx.appendLog([], [tile], 256);
          assert.deepEqual((await tx.readTiles([{ level: 0, index: 0 }]))[0], tile.hashes);
          throw new Error("roll back");
        }),
      );
      assert.equal(cache.get(0, 0), undefined);
      assert.deepEqual(await storage.readTiles([{ level: 0, index: 0 }]), [undefined]);
    } finally {
      await storage.close();
      dir.cleanup();
    }
  });
});
