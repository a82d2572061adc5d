/**
 * The PostgreSQL schema, as numbered steps (its own numbering; the SQLite
 * file has its own). A step, once released, never changes: new needs are new
 * steps. All pending steps run in one transaction under an advisory lock, so
 * replicas starting together migrate once and never see half a schema.
 *
 * BIGINT columns are read back as JavaScript numbers (see postgres-storage.ts):
 * every value stored in them (times in ms, log indices, counter totals) is a
 * safe integer, which the recorder checks before writing.
 */
export const postgresMigrations: readonly { readonly version: number; readonly name: string; readonly sql: string }[] =
  [
    {
      version: 1,
      name: "ledger, log and identity",
      sql: `
      CREATE TABLE executions (
        execution_id      TEXT PRIMARY KEY,
        tenant_id         TEXT NOT NULL,
        nonce             TEXT NOT NULL,
        action            TEXT NOT NULL,
        payload_digest    BYTEA NOT NULL,
        approval_id       TEXT,
        approval_digest   BYTEA,
        logical_time_ms   BIGINT NOT NULL,
        status            TEXT NOT NULL CHECK (status IN ('pending', 'executed', 'failed', 'interrupted')),
        lease_owner       TEXT,
        lease_until_ms    BIGINT,
        reason            TEXT,
        result_json       TEXT,
        result_digest     BYTEA,
        receipt           BYTEA,
        receipt_digest    BYTEA,
        receipt_signature BYTEA,
        UNIQUE (tenant_id, nonce)
      );
      CREATE UNIQUE INDEX executions_approval_id ON executions (tenant_id, approval_id)
        WHERE approval_id IS NOT NULL;
      CREATE INDEX executions_pending ON executions (lease_until_ms) WHERE status = 'pending';
      CREATE TABLE counters (
        tenant_id TEXT NOT NULL,
        key       TEXT NOT NULL,
        value     BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, key)
      );
      CREATE TABLE denials (
        attempt_id        TEXT PRIMARY KEY,
        tenant_id         TEXT NOT NULL,
        nonce             TEXT NOT NULL,
        action            TEXT NOT NULL,
        payload_digest    BYTEA NOT NULL,
        approval_digest   BYTEA,
        reason            TEXT NOT NULL,
        logical_time_ms   BIGINT NOT NULL,
        receipt           BYTEA NOT NULL,
        receipt_digest    BYTEA NOT NULL,
        receipt_signature BYTEA
      );
      CREATE TABLE log_leaves (
        leaf_index BIGINT PRIMARY KEY CHECK (leaf_index >= 0),
        leaf_hash  BYTEA NOT NULL CHECK (octet_length(leaf_hash) = 32),
        entry_kind TEXT NOT NULL CHECK (entry_kind IN ('execution', 'denial')),
        entry_id   TEXT NOT NULL,
        UNIQUE (entry_kind, entry_id)
      );
      CREATE TABLE log_tiles (
        level      INTEGER NOT NULL CHECK (level >= 0),
        tile_index BIGINT NOT NULL CHECK (tile_index >= 0),
        hashes     BYTEA NOT NULL
          CHECK (octet_length(hashes) % 32 = 0 AND octet_length(hashes) BETWEEN 32 AND 8192),
        PRIMARY KEY (level, tile_index)
      );
      -- The log's committed size (the next leaf index). Every write batch locks
      -- this row first: indices are assigned gap-free, one batch at a time.
      CREATE TABLE log_state (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        size BIGINT NOT NULL CHECK (size >= 0)
      );
      INSERT INTO log_state (id, size) VALUES (1, 0);
      CREATE TABLE checkpoints (
        tree_size     BIGINT PRIMARY KEY CHECK (tree_size >= 0),
        root_hash     BYTEA NOT NULL CHECK (octet_length(root_hash) = 32),
        note          TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
      );
      -- Who may sign the next checkpoint: the replica holding this row's lock.
      CREATE TABLE log_publication (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        published_at_ms BIGINT NOT NULL
      );
      INSERT INTO log_publication (id, published_at_ms) VALUES (1, 0);
      -- The receipt key and log origin the ledger was created with: every
      -- replica must sign with the same, or refuse to start.
      CREATE TABLE ledger_identity (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        log_origin     TEXT NOT NULL,
        receipt_key_id TEXT NOT NULL,
        created_at_ms  BIGINT NOT NULL
      );
    `,
    },
    {
      version: 2,
      name: "freezes",
      sql: `
      -- The operator's kill switch (openexec freeze), read by every replica about once a second:
      -- '*' freezes every action, otherwise one action's name.
      CREATE TABLE freezes (
        scope        TEXT PRIMARY KEY,
        reason       TEXT NOT NULL,
        frozen_at_ms BIGINT NOT NULL
      );
    `,
    },
    {
      version: 3,
      name: "ledger identity: mode, tenant, approval key ids",
      sql: `
      -- What the ledger serves (ledger-identity.ts): NULL until a server records
      -- them; a ledger from before this step adopts the first server's values.
      -- Mode and tenant must match at every start; approval_key_ids (a sorted
      -- JSON array) is the key ring of the server started last, for information.
      ALTER TABLE ledger_identity
        ADD COLUMN mode TEXT CHECK (mode IN ('demo', 'clawshield')),
        ADD COLUMN tenant_id TEXT,
        ADD COLUMN approval_key_ids TEXT;
    `,
    },
  ];

export const latestPostgresSchemaVersion = postgresMigrations.reduce((max, m) => Math.max(max, m.version), 0);
