import assert from "node:assert/strict";
import { createHash, generateKeyPairSync } from "node:crypto";
import { describe, it } from "node:test";
import type { LedgerWrite } from "../src/ledger/ledger-write.js";
import type { LedgerStorage } from "../src/ledger/ports.js";
import { openPostgresStorage, type PostgresConnectionOptions } from "../src/ledger/postgres-storage.js";
import { LedgerRecorder } from "../src/ledger/recorder.js";
import { loadReceiptKey } from "../src/receipts/receipt-key.js";
import { ledgerContract } from "./ledger-contract.js";
import { adminQuery, freshSchema, type PostgresSchema, postgresSkipReason } from "./support/postgres.js";
import { scratchDir } from "./support/test-server.js";

const skip = await postgresSkipReason();
const identity = { logOrigin: "openexec/contract", receiptKeyId: "contract" };

ledgerContract(
  "PostgreSQL",
  async () => {
    const schema = await freshSchema();
    const options: PostgresConnectionOptions = {
      url: schema.url,
      poolSize: 4,
      statementTimeoutMs: 5000,
      connectTimeoutMs: 5000,
    };
    let storage = await openPostgresStorage(options, identity);
    return {
      storage,
      async reopen() {
        await storage.close();
        storage = await openPostgresStorage(options, identity);
        return storage;
      },
      async cleanup() {
        await storage.close();
        await schema.drop();
      },
    };
  },
  { skip },
);

/** A ledger of its own in a fresh schema for `work`, closed and dropped after. */
async function withStorage(work: (storage: LedgerStorage, schema: PostgresSchema) => Promise<void>): Promise<void> {
  const schema = await freshSchema();
  const storage = await openPostgresStorage(
    { url: schema.url, poolSize: 2, statementTimeoutMs: 5000, connectTimeoutMs: 5000 },
    identity,
  );
  try {
    await work(storage, schema);
  } finally {
    await storage.close();
    await schema.drop();
  }
}

describe("PostgreSQL: statements sent ahead of COMMIT (pipelined)", { skip }, () => {
  it("a failing append of the log commits nothing, fails every write with its cause, and leaves no gap", async () => {
    await withStorage(async (storage, schema) => {
      const { privateKey } = generateKeyPairSync("ed25519");
      const dir = scratchDir("openexec-pipeline-");
      const key = loadReceiptKey(privateKey.export({ format: "pem", type: "pkcs8" }).toString(), `${dir.path}/k.pem`);
      dir.cleanup();
      const recorder = await LedgerRecorder.open(storage, {
        signer: { keyId: key.public.keyId, sign: key.sign },
        logOrigin: identity.logOrigin,
      });
      const record = (nonce: string): LedgerWrite => ({
        kind: "record",
        reservation: {
          executionId: `pipelined-${nonce}`,
          tenantId: "acme",
          nonce,
          action: "echo",
          payloadDigest: createHash("sha256").update(nonce).digest(),
          approval: undefined,
          logicalTimeMs: 1_700_000_000_000,
        },
        completion: { kind: "executed", effect: { kind: "result", result: {}, resultDigest: Buffer.alloc(32) } },
      });
      // The append (leaves, tiles, size) is the batch's last statement, sent ahead of COMMIT.
      await adminQuery(
        schema.url,
        `CREATE FUNCTION refuse_leaf() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'leaf refused by test'; END $$
         LANGUAGE plpgsql;
         CREATE TRIGGER refuse_leaf BEFORE INSERT ON log_leaves FOR EACH ROW EXECUTE FUNCTION refuse_leaf();`,
      );
      const failed = await recorder.commit(storage, [record("a"), record("b")]);
      assert.deepEqual(
        failed.map((result) => result.ok),
        [false, false],
      );
      const cause = failed[0]?.ok === false ? failed[0].error : undefined;
      assert.match(String((cause as Error | undefined)?.cause ?? cause), /leaf refused by test/);
      assert.deepEqual(await adminQuery(schema.url, "SELECT execution_id FROM executions"), []);
      assert.deepEqual(await adminQuery(schema.url, "SELECT size::int AS size FROM log_state"), [{ size: 0 }]);

      await adminQuery(schema.url, "DROP TRIGGER refuse_leaf ON log_leaves");
      const [committed] = await recorder.commit(storage, [record("c")]);
      assert.ok(committed?.ok);
      assert.deepEqual(await adminQuery(schema.url, "SELECT leaf_index::int AS idx FROM log_leaves"), [{ idx: 0 }]);
    });
  });
  it("a statement node-postgres fails without sending it (a value it cannot bind) commits nothing", async () => {
    await withStorage(async (storage, schema) => {
      const unbindable = {
        toPostgres() {
          throw new Error("cannot bind this value");
        },
      } as unknown as string;
      await assert.rejects(
        storage.transaction(async (tx) => {
          await tx.writeCounters([{ tenantId: "acme", key: "pipelined", value: 1 }]);
          // Sent ahead of COMMIT; node-postgres fails it while binding, so the server never sees it.
          await tx.appendLog([{ index: 0, hash: new Uint8Array(32), kind: "execution", entryId: unbindable }], [], 1);
        }),
        /cannot bind this value/,
      );
      assert.deepEqual(await adminQuery(schema.url, "SELECT key FROM counters"), []);
      assert.deepEqual(await adminQuery(schema.url, "SELECT size::int AS size FROM log_state"), [{ size: 0 }]);
    });
  });
});
