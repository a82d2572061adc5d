/**
 * A ledger's identity covers what it serves: its mode and tenant (and, for
 * information, the approval key ids). A server configured otherwise refuses
 * to start (exit 1, naming the difference), on SQLite and PostgreSQL alike;
 * a ledger from before the identity recorded them adopts the first server's.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { postJson } from "./support/clients.js";
import { adminQuery, freshSchema, type PostgresSchema, postgresSkipReason } from "./support/postgres.js";
import { generateReceiptKeyPem } from "./support/replica.js";
import { scratchDir, spawnServer } from "./support/test-server.js";

const skip = await postgresSkipReason();

function governancePem(): string {
  return generateKeyPairSync("ed25519").publicKey.export({ format: "pem", type: "spki" }).toString();
}

const clawshield = (tenant: string, keys: Record<string, string>) => ({
  OPENEXEC_MODE: "clawshield",
  CLAWSHIELD_TENANT_ID: tenant,
  OPENEXEC_APPROVAL_KEYS: JSON.stringify(keys),
});

/** Starts a server, executes once (so the ledger holds a row), stops it. */
async function serveOnce(env: Record<string, string>): Promise<void> {
  const server = await spawnServer(env);
  try {
    const answer = await postJson(`${server.url}/execute`, { action: "echo", payload: {}, nonce: "x" });
    // Demo mode runs it; clawshield mode records a denial (no approval): either writes the ledger.
    assert.ok(answer.status === 200 || answer.status === 403, JSON.stringify(answer.body));
  } finally {
    server.child.kill("SIGTERM");
    assert.equal(await server.exited, 0);
  }
}

/** Starts a server that must refuse to start: its stderr (the start rejects once it exited 1). */
async function refused(env: Record<string, string>): Promise<string> {
  const error = await spawnServer(env).then(
    async (server) => {
      server.child.kill("SIGKILL");
      await server.exited;
      assert.fail(`the server started:\n${server.stderr()}`);
    },
    (error: unknown) => error as Error,
  );
  assert.match(error.message, /server exited with 1 before listening/);
  return error.message;
}

describe("ledger identity (SQLite)", () => {
  it("a server in another mode or for another tenant is refused (writer thread on and off); key rotation is not", async () => {
    const dir = scratchDir();
    const db = { OPENEXEC_DB_URL: `sqlite:///${join(dir.path, "ledger.db")}` };
    const a = governancePem();
    try {
      await serveOnce({ ...db, ...clawshield("acme", { a }) });
      const demo = await refused({ ...db, CLAWSHIELD_TENANT_ID: "acme" });
      assert.match(demo, /the ledger was created in clawshield mode; this server is in demo mode/);
      const otherTenant = await refused({ ...db, ...clawshield("globex", { a }), OPENEXEC_LEDGER_THREAD: "off" });
      assert.match(otherTenant, /the ledger was created for tenant "acme"; this server's tenant is "globex"/);
      // Rotation: another key ring (even one sharing no key id) starts, and is recorded.
      await serveOnce({ ...db, ...clawshield("acme", { b: governancePem() }) });
      const ledger = new Database(join(dir.path, "ledger.db"), { readonly: true });
      try {
        assert.deepEqual(ledger.prepare("SELECT mode, tenant_id, approval_key_ids FROM ledger_identity").all(), [
          { mode: "clawshield", tenant_id: "acme", approval_key_ids: '["b"]' },
        ]);
      } finally {
        ledger.close();
      }
    } finally {
      dir.cleanup();
    }
  });

  it("a ledger from before schema step 7 adopts the first server's mode and tenant", async () => {
    const dir = scratchDir();
    const path = join(dir.path, "ledger.db");
    const db = { OPENEXEC_DB_URL: `sqlite:///${path}` };
    try {
      await serveOnce({ ...db, OPENEXEC_LEDGER_THREAD: "off" });
      const older = new Database(path);
      older.exec("DROP TABLE ledger_identity; DELETE FROM schema_migrations WHERE version = 7");
      older.close();
      await serveOnce({ ...db, ...clawshield("acme", { a: governancePem() }) });
      assert.match(await refused(db), /the ledger was created in clawshield mode; this server is in demo mode/);
    } finally {
      dir.cleanup();
    }
  });
});

describe("ledger identity (PostgreSQL)", { skip }, () => {
  let schema: PostgresSchema;
  const receiptKey = generateReceiptKeyPem();
  before(async () => {
    schema = await freshSchema();
  });
  after(async () => {
    await schema?.drop();
  });

  it("a clawshield replica of the same tenant beside a demo one is refused, and so is another tenant", async () => {
    const db = { OPENEXEC_DB_URL: schema.url, OPENEXEC_RECEIPT_KEY: receiptKey };
    const demo = await spawnServer({ ...db, CLAWSHIELD_TENANT_ID: "acme" });
    try {
      const claw = await refused({ ...db, ...clawshield("acme", { a: governancePem() }) });
      assert.match(claw, /the ledger was created in demo mode; this server is in clawshield mode/);
      const otherTenant = await refused({ ...db, CLAWSHIELD_TENANT_ID: "globex" });
      assert.match(otherTenant, /the ledger was created for tenant "acme"; this server's tenant is "globex"/);
      // The ledger's identity is as the first replica recorded it, and it still serves.
      assert.deepEqual(await adminQuery(schema.url, "SELECT mode, tenant_id, approval_key_ids FROM ledger_identity"), [
        { mode: "demo", tenant_id: "acme", approval_key_ids: "[]" },
      ]);
      assert.equal((await postJson(`${demo.url}/execute`, { action: "echo", payload: {}, nonce: "pg" })).status, 200);
    } finally {
      demo.child.kill("SIGTERM");
      await demo.exited;
    }

    // A ledger from before schema step 3 (no mode or tenant recorded) adopts the next replica's.
    await adminQuery(schema.url, "UPDATE ledger_identity SET mode = NULL, tenant_id = NULL, approval_key_ids = NULL");
    await serveOnce({ ...db, ...clawshield("acme", { a: governancePem() }) });
    assert.match(
      await refused({ ...db, CLAWSHIELD_TENANT_ID: "acme" }),
      /the ledger was created in clawshield mode; this server is in demo mode/,
    );
    // Key rotation: a ring of other key ids starts.
    await serveOnce({ ...db, ...clawshield("acme", { b: governancePem(), c: governancePem() }) });
    assert.deepEqual(await adminQuery(schema.url, "SELECT mode, tenant_id, approval_key_ids FROM ledger_identity"), [
      { mode: "clawshield", tenant_id: "acme", approval_key_ids: '["b","c"]' },
    ]);
  });
});
