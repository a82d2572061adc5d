import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import Database from "better-sqlite3";
import { StoreUnavailableError } from "../src/ledger/store.js";
import { type CommitGuard, WriteBatcher } from "../src/ledger/write-batcher.js";
import { scratchDir } from "./support/test-server.js";

/** WriteBatcher on a real SQLite file (WAL, synchronous=FULL, as the ledger opens it). */
describe("WriteBatcher", () => {
  let dir: { path: string; cleanup: () => void };
  let path: string;
  let db: Database.Database;
  beforeEach(() => {
    dir = scratchDir("openexec-batcher-");
    path = join(dir.path, "batch.db");
    db = new Database(path);
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
    db.exec(`
      CREATE TABLE parent (id TEXT PRIMARY KEY);
      CREATE TABLE rows (id TEXT PRIMARY KEY,
        parent TEXT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)`);
  });
  afterEach(() => {
    if (db.open) db.close();
    dir.cleanup();
  });

  const insert = (id: string, parent: string | null = null) =>
    db.prepare("INSERT INTO rows (id, parent) VALUES (?, ?)").run(id, parent);
  /** What another connection sees: only committed rows. */
  const committedIds = () => {
    const reader = new Database(path, { readonly: true });
    try {
      return reader
        .prepare<[], { id: string }>("SELECT id FROM rows ORDER BY id")
        .all()
        .map((row) => row.id);
    } finally {
      reader.close();
    }
  };

  it("one failing write does not roll back its batch neighbours (each write has its own savepoint)", async () => {
    const batcher = new WriteBatcher(db);
    const boom = new Error("write refused after inserting");
    const results = await Promise.allSettled([
      batcher.run(() => insert("a")),
      batcher.run(() => {
        insert("b");
        throw boom;
      }),
      batcher.run(() => insert("c")),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ["fulfilled", "rejected", "fulfilled"],
    );
    assert.equal((results[1] as PromiseRejectedResult).reason, boom);
    // b's own insert is undone with it; a and c are committed.
    assert.deepEqual(committedIds(), ["a", "c"]);
  });

  it("a failed commit rejects the whole batch, writes that succeeded included (none is answered before the commit)", async () => {
    const batcher = new WriteBatcher(db);
    // A deferred foreign key is checked at COMMIT: every write succeeds, the commit fails.
    const results = await Promise.allSettled([
      batcher.run(() => insert("x")),
      batcher.run(() => insert("y", "no-such-parent")),
      batcher.run(() => insert("z")),
    ]);
    for (const result of results) {
      assert.equal(result.status, "rejected");
      assert.ok((result as PromiseRejectedResult).reason instanceof StoreUnavailableError);
      assert.match((result as PromiseRejectedResult).reason.message, /^ledger write failed: FOREIGN KEY/);
    }
    assert.deepEqual(committedIds(), []);
    assert.equal(db.inTransaction, false);
    // The next batch commits normally.
    await batcher.run(() => insert("after"));
    assert.deepEqual(committedIds(), ["after"]);
  });

  it("answers only after the commit: what a write resolved with is visible to another connection", async () => {
    const batcher = new WriteBatcher(db);
    const seen: string[][] = [];
    await Promise.all(
      ["p", "q", "r"].map((id) =>
        batcher
          .run(() => insert(id))
          .then(() => {
            seen.push(committedIds());
          }),
      ),
    );
    assert.deepEqual(seen, [
      ["p", "q", "r"],
      ["p", "q", "r"],
      ["p", "q", "r"],
    ]);
  });

  it("a batch the guard refuses after its commit (ledger file removed) is not acknowledged", async () => {
    const settled: unknown[] = [];
    let gone = false;
    const guard: CommitGuard = {
      assertDurable: () => {
        if (gone) throw new StoreUnavailableError("the ledger file was removed");
      },
      settled: (failure) => settled.push(failure),
    };
    const batcher = new WriteBatcher(db, guard);
    await batcher.run(() => insert("kept"));
    rmSync(path);
    // The guard notices only after this write has committed (into the unlinked file).
    const write = batcher.run(() => {
      insert("lost");
      gone = true;
    });
    await assert.rejects(write, { name: "StoreUnavailableError", message: "the ledger file was removed" });
    // It committed, but into a file no one will open again: nobody was told it is durable.
    assert.deepEqual(
      db
        .prepare<[], { id: string }>("SELECT id FROM rows ORDER BY id")
        .all()
        .map((r) => r.id),
      ["kept", "lost"],
    );
    // Later batches are refused before they run.
    await assert.rejects(
      batcher.run(() => insert("never")),
      { name: "StoreUnavailableError" },
    );
    assert.equal(db.prepare("SELECT count(*) AS n FROM rows WHERE id = 'never'").pluck().get(), 0);
    assert.equal(settled[0], undefined);
    assert.ok(settled[1] instanceof StoreUnavailableError);
  });

  it("reports a write's storage fault to the guard even when its batch commits", async () => {
    const settled: unknown[] = [];
    const batcher = new WriteBatcher(db, { assertDurable: () => undefined, settled: (f) => settled.push(f) });
    const readOnly = new Database(path, { readonly: true });
    try {
      const results = await Promise.allSettled([
        batcher.run(() => insert("fine")),
        batcher.run(() => readOnly.prepare("INSERT INTO rows (id) VALUES ('ro')").run()),
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ["fulfilled", "rejected"],
      );
      assert.equal((settled[0] as { code?: string }).code, "SQLITE_READONLY");
      await batcher.run(() => insert("fine-2"));
      assert.equal(settled[1], undefined);
    } finally {
      readOnly.close();
    }
  });
});
