/**
 * The SQLite schema, as numbered steps. A step, once released, never changes:
 * new needs are new steps. Each step runs in its own transaction with its row
 * in schema_migrations, so a crash leaves the ledger at a whole version.
 */
export const sqliteMigrations: readonly { readonly version: number; readonly name: string; readonly sql: string }[] = [
  {
    version: 1,
    name: "executions and counters",
    sql: `
      CREATE TABLE executions (
        execution_id    TEXT PRIMARY KEY,
        tenant_id       TEXT NOT NULL,
        nonce           TEXT NOT NULL,
        action          TEXT NOT NULL,
        payload_digest  BLOB NOT NULL,
        approval_id     TEXT,
        approval_digest BLOB,
        logical_time_ms INTEGER NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('pending', 'executed', 'failed', 'interrupted')),
        reason          TEXT,
        result_json     TEXT,
        result_digest   BLOB,
        receipt         BLOB,
        receipt_digest  BLOB,
        UNIQUE (tenant_id, nonce)
      );
      CREATE UNIQUE INDEX executions_approval_id ON executions (tenant_id, approval_id)
        WHERE approval_id IS NOT NULL;
      CREATE INDEX executions_pending ON executions (status) WHERE status = 'pending';
      CREATE TABLE counters (
        tenant_id TEXT NOT NULL,
        key       TEXT NOT NULL,
        value     INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, key)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    name: "denied attempts",
    sql: `
      CREATE TABLE denials (
        attempt_id      TEXT PRIMARY KEY,
        tenant_id       TEXT NOT NULL,
        nonce           TEXT NOT NULL,
        action          TEXT NOT NULL,
        payload_digest  BLOB NOT NULL,
        approval_digest BLOB,
        reason          TEXT NOT NULL,
        logical_time_ms INTEGER NOT NULL,
        receipt         BLOB NOT NULL,
        receipt_digest  BLOB NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: "receipt signatures",
    sql: `
      ALTER TABLE executions ADD COLUMN receipt_signature BLOB;
      ALTER TABLE denials ADD COLUMN receipt_signature BLOB;
    `,
  },
  {
    version: 4,
    name: "transparency log",
    sql: `
      -- One leaf per receipt, in issue order: leaf_hash = SHA-256(0x00 || receipt bytes).
      CREATE TABLE log_leaves (
        leaf_index INTEGER PRIMARY KEY CHECK (leaf_index >= 0),
        leaf_hash  BLOB NOT NULL CHECK (length(leaf_hash) = 32),
        entry_kind TEXT NOT NULL CHECK (entry_kind IN ('execution', 'denial')),
        entry_id   TEXT NOT NULL,
        UNIQUE (entry_kind, entry_id)
      );
      -- Signed checkpoints (C2SP signed-note text) of the tree at a size.
      CREATE TABLE checkpoints (
        tree_size     INTEGER PRIMARY KEY CHECK (tree_size >= 0),
        root_hash     BLOB NOT NULL CHECK (length(root_hash) = 32),
        note          TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
      );
    `,
  },
  {
    version: 5,
    name: "leases and tiles",
    sql: `
      -- A pending reservation belongs to one process instance until its lease runs out.
      ALTER TABLE executions ADD COLUMN lease_owner TEXT;
      ALTER TABLE executions ADD COLUMN lease_until_ms INTEGER;
      -- The log's tree as C2SP tiles of 256 hashes: the newest version of each tile.
      CREATE TABLE log_tiles (
        level      INTEGER NOT NULL CHECK (level >= 0),
        tile_index INTEGER NOT NULL CHECK (tile_index >= 0),
        hashes     BLOB NOT NULL CHECK (length(hashes) % 32 = 0 AND length(hashes) BETWEEN 32 AND 8192),
        PRIMARY KEY (level, tile_index)
      ) WITHOUT ROWID;
      -- The log's committed size: the next leaf index.
      CREATE TABLE log_state (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        size INTEGER NOT NULL CHECK (size >= 0)
      );
      INSERT INTO log_state (id, size) SELECT 1, coalesce(max(leaf_index) + 1, 0) FROM log_leaves;
    `,
  },
  {
    version: 6,
    name: "freezes",
    sql: `
      -- The operator's kill switch (openexec freeze): '*' freezes every action, otherwise one action's name.
      CREATE TABLE freezes (
        scope        TEXT PRIMARY KEY,
        reason       TEXT NOT NULL,
        frozen_at_ms INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 7,
    name: "ledger identity: mode, tenant, approval key ids",
    sql: `
      -- What the ledger serves (ledger-identity.ts), recorded by the first server
      -- to open it at this step (an older ledger adopts that server's values).
      -- Mode and tenant must match at every start; approval_key_ids (a sorted
      -- JSON array) is the key ring of the server started last, for information.
      -- (The receipt key is the file beside the ledger: no copy is kept here.)
      CREATE TABLE ledger_identity (
        id               INTEGER PRIMARY KEY CHECK (id = 1),
        mode             TEXT NOT NULL CHECK (mode IN ('demo', 'clawshield')),
        tenant_id        TEXT NOT NULL,
        approval_key_ids TEXT NOT NULL,
        created_at_ms    INTEGER NOT NULL
      );
    `,
  },
];

export const latestSqliteSchemaVersion = sqliteMigrations.reduce((max, m) => Math.max(max, m.version), 0);
